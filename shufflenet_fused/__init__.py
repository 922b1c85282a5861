"""shufflenet_fused: channel shuffle + depthwise conv + BatchNorm fused into one kernel.

The op lives in :mod:`shufflenet_fused.ops`, the ShuffleNetV1 models in
:mod:`shufflenet_fused.models`; their public names are re-exported here.
"""

from . import checkpoint, inference, models, ops
from ._version import __version__
from .inference import inference_pipeline
from .models import (
    CheckpointError,
    ShuffleNetV1,
    ShuffleV1Block,
    SyncBatchNorm,
    convert_sync_batchnorm,
    fuse,
    load_megvii_checkpoint,
)
from .ops import ValidationError, cuda_kernels_built, reference, shuffle_dwconv_bn, validating

__all__ = [
    "__version__",
    "checkpoint",
    "inference",
    "inference_pipeline",
    "cuda_kernels_built",
    "models",
    "ops",
    "reference",
    "shuffle_dwconv_bn",
    "ShuffleV1Block",
    "ShuffleNetV1",
    "fuse",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "load_megvii_checkpoint",
    "CheckpointError",
    "ValidationError",
    "validating",
]
