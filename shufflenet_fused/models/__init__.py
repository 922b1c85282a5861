"""Megvii's ShuffleNetV1 (megvii-model/ShuffleNet-Series), built on the fused op.

* :class:`ShuffleV1Block`, :class:`ShuffleNetV1`: drop-in replacements for Megvii's classes
  (same submodules and state_dict keys), fused or not;
* :func:`fuse`: switch the blocks of an existing model to the fused op, in place;
* :class:`SyncBatchNorm`, :func:`convert_sync_batchnorm`: synchronized BatchNorm that also
  runs on CPU (gloo), recognized by the fused block;
* :func:`load_megvii_checkpoint`, :class:`CheckpointError`, :func:`preprocess_like_megvii`:
  the released weights and the input they expect.
"""

from .batch_norm import SyncBatchNorm, convert_sync_batchnorm
from .blocks import ShuffleV1Block
from .checkpoint import CheckpointError, load_megvii_checkpoint, preprocess_like_megvii
from .fuse import fuse
from .network import ShuffleNetV1

__all__ = [
    "ShuffleV1Block",
    "ShuffleNetV1",
    "fuse",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "load_megvii_checkpoint",
    "CheckpointError",
    "preprocess_like_megvii",
]
