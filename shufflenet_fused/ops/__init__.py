"""The fused op: channel shuffle + depthwise conv + BatchNorm in one kernel.

* :func:`shuffle_dwconv_bn`: the functional API (``torch.ops.shufflenet_fused.*`` underneath);
* :mod:`~shufflenet_fused.ops.reference`: the same function written with plain torch ops,
  the oracle every fused result is tested against;
* :func:`validating` / :class:`ValidationError`: run the reference next to every fused call
  and raise on a mismatch;
* :func:`cuda_kernels_built`: whether this build of the extension has the CUDA kernels.

Importing this package loads the compiled extension (``shufflenet_fused._C``).
"""

from . import reference
from ._library import cuda_kernels_built
from .functional import shuffle_dwconv_bn
from .validation import ValidationError, validating

__all__ = [
    "cuda_kernels_built",
    "reference",
    "shuffle_dwconv_bn",
    "ValidationError",
    "validating",
]
