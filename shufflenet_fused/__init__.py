"""shufflenet_fused: channel shuffle + depthwise conv + BatchNorm fused into one kernel."""

from . import reference
from .functional import shuffle_dwconv_bn
from .validation import ValidationError, validating

__all__ = [
    "reference",
    "shuffle_dwconv_bn",
    "ValidationError",
    "validating",
]
__version__ = "0.1.0"
