"""The ``shufflenet_fused`` operator library: loads the compiled kernels.

The schemas live in csrc/ops.cpp; the CPU/CUDA kernels, the Meta kernels that
torch.compile and torch.export trace the depthwise-conv + BN ops with
(csrc/meta/meta_kernels.cpp, checking the arguments with the kernels' own
rules, csrc/common/checks.h) and the autograd formulas (csrc/autograd.cpp)
register themselves when ``shufflenet_fused._C`` is imported. The fake kernel
of the whole-network inference op is registered here.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor


def _load_extension() -> ModuleType:
    """Imports ``_C`` (which registers ``torch.ops.shufflenet_fused.*``), first checking that
    it was compiled against the torch that is running: a C++ extension built against another
    torch fails with undefined symbols, or worse, loads and misbehaves."""
    try:
        from .._build_info import TORCH_VERSION as built_with
    except ImportError:  # built by a setup.py that did not record it
        built_with = None
    if built_with is not None and built_with != torch.__version__:
        raise ImportError(
            f"shufflenet_fused was compiled against torch {built_with}, but torch {torch.__version__} "
            "is installed; rebuild it against this torch: pip install --no-build-isolation --force-reinstall ."
        )
    from .. import _C

    return _C


_C = _load_extension()

# The extension's one Python function: dicts[i].get(keys[i]) is values[i] for every i
# (the inference pipeline's per-call check, shufflenet_fused/inference/pipeline.py).
all_identical = _C.all_identical

ops = torch.ops.shufflenet_fused


# ------------------------------------------------------------ fake kernels ----


@torch.library.register_fake("shufflenet_fused::shufflenet_v1_infer")
def _shufflenet_v1_infer_fake(input: Tensor, params: list[Tensor | None], eps: list[float], plan: list[int]) -> Tensor:
    # The output shape as csrc/cpu/inference/inference_cpu.cpp computes it (which
    # also checks every argument when the op runs).
    if input.dim() != 4 or input.dtype != torch.float32 or input.device.type != "cpu":
        raise ValueError("shufflenet_v1_infer: input must be a 4-D float32 CPU tensor")
    if len(plan) < 3 or len(plan) != 3 + 7 * plan[2]:
        raise ValueError(f"shufflenet_v1_infer: plan has {len(plan)} ints, expected 3 + 7 per block")
    n, c, h, w = input.shape
    if plan[0]:  # the stem: 3x3/2 conv, 3x3/2 max pool
        c = params[0].shape[0]
        for _ in range(2):
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    for b in range(plan[2]):
        oup, stride = plan[3 + 7 * b + 1], plan[3 + 7 * b + 5]
        c, h, w = oup, (h - 1) // stride + 1, (w - 1) // stride + 1
    if plan[1]:
        return input.new_empty((n, params[-2].shape[0]))
    return input.new_empty((n, c, h, w))


# Autograd for the three ops is registered in C++ (csrc/autograd.cpp): a
# Python formula costs tens of microseconds per call, as much as the kernel
# at batch 1.


def cuda_kernels_built() -> bool:
    """Whether this build of the extension contains the CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("shufflenet_fused::dwconv_bn_eval", "CUDA")
