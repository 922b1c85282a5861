"""``shufflenet_fused.checkpoint``, the path the README gives for :func:`preprocess_like_megvii`.

The code lives in :mod:`shufflenet_fused.models.checkpoint`.
"""

from .models.checkpoint import CheckpointError, load_megvii_checkpoint, preprocess_like_megvii

__all__ = ["CheckpointError", "load_megvii_checkpoint", "preprocess_like_megvii"]
