"""shufflenet_fused: channel shuffle + depthwise conv + BatchNorm fused into one kernel."""

from . import reference
from ._ops import cuda_kernels_built
from .blocks import ShuffleV1Block
from .checkpoint import CheckpointError, load_megvii_checkpoint
from .functional import shuffle_dwconv_bn
from .fuse import fuse
from .network import ShuffleNetV1
from .validation import ValidationError, validating

__all__ = [
    "cuda_kernels_built",
    "reference",
    "shuffle_dwconv_bn",
    "ShuffleV1Block",
    "ShuffleNetV1",
    "fuse",
    "load_megvii_checkpoint",
    "CheckpointError",
    "ValidationError",
    "validating",
]
__version__ = "0.1.0"
