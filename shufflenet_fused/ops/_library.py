"""The ``shufflenet_fused`` operator library: loads the compiled kernels, registers their fake kernels.

The schemas live in csrc/ops.cpp; the CPU/CUDA kernels and the autograd
formulas (csrc/autograd.cpp) register themselves when ``shufflenet_fused._C``
is imported. What torch.compile needs beyond that, the fake (meta) kernels, is
registered here; their argument checks (_fake_checks.py) raise what csrc/common/checks.h
raises.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _fake_checks


def _load_extension() -> None:
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
    from .. import _C  # noqa: F401


_load_extension()

ops = torch.ops.shufflenet_fused


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of mean/invstd: float32, or float64 for float64 input."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _out_shape(input: Tensor, weight: Tensor, stride: int) -> tuple[int, int, int, int]:
    n, c, h, w = input.shape
    k = weight.shape[-1]
    pad = k // 2
    return (n, c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)


def _memory_format(input: Tensor) -> torch.memory_format:
    # Mirrors output_memory_format() in csrc/common/checks.h.
    if input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _new_output(input: Tensor, shape: tuple[int, ...]) -> Tensor:
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=_memory_format(input))


def _check_devices(input: Tensor, **tensors: Tensor | None) -> None:
    # A call that mixes meta tensors with real ones is dispatched to these fake
    # kernels (Meta outranks CPU and CUDA), not to the real kernels that check
    # devices with TORCH_CHECK: without this it would return an uninitialised
    # output instead of an error.
    for name, t in tensors.items():
        if t is not None and t.device != input.device:
            raise RuntimeError(f"shufflenet_fused: {name} is on {t.device} but input is on {input.device}")


# ------------------------------------------------------------ fake kernels ----


@torch.library.register_fake("shufflenet_fused::dwconv_bn_eval")
def _eval_fake(
    input: Tensor, weight: Tensor, running_mean: Tensor, running_var: Tensor, bn_weight: Tensor | None,
    bn_bias: Tensor | None, groups: int, stride: int, eps: float, shuffle_last: bool,
) -> Tensor:
    _fake_checks.conv_args(input, weight, groups, stride)
    _fake_checks.eps_arg(eps, training=False)
    _fake_checks.bn_tensor(running_mean, "running_mean", input, running=True)
    _fake_checks.bn_tensor(running_var, "running_var", input, running=True)
    _fake_checks.bn_tensor(bn_weight, "bn_weight", input)
    _fake_checks.bn_tensor(bn_bias, "bn_bias", input)
    return _new_output(input, _out_shape(input, weight, stride))


@torch.library.register_fake("shufflenet_fused::dwconv_bn_train")
def _train_fake(
    input: Tensor, weight: Tensor, bn_weight: Tensor | None, bn_bias: Tensor | None, groups: int, stride: int,
    eps: float, shuffle_last: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    _fake_checks.conv_args(input, weight, groups, stride)
    _fake_checks.eps_arg(eps, training=True)
    _fake_checks.bn_tensor(bn_weight, "bn_weight", input)
    _fake_checks.bn_tensor(bn_bias, "bn_bias", input)
    c = input.shape[1]
    stats = input.new_empty((c,), dtype=stat_dtype(input.dtype))
    return _new_output(input, _out_shape(input, weight, stride)), stats, torch.empty_like(stats)


@torch.library.register_fake("shufflenet_fused::dwconv_bn_backward")
def _backward_fake(
    grad_output: Tensor, input: Tensor, weight: Tensor, bn_weight: Tensor | None, mean: Tensor, invstd: Tensor,
    groups: int, stride: int, shuffle_last: bool, training: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _fake_checks.conv_args(input, weight, groups, stride)
    _check_devices(input, grad_output=grad_output)
    _fake_checks.bn_tensor(bn_weight, "bn_weight", input)
    _fake_checks.per_channel(mean, "mean", input)
    _fake_checks.per_channel(invstd, "invstd", input)
    c = input.shape[1]
    bn_dtype = bn_weight.dtype if bn_weight is not None else stat_dtype(input.dtype)
    grad_input = torch.empty(
        input.shape, dtype=input.dtype, device=input.device, memory_format=_memory_format(input)
    )
    grad_bn_weight = input.new_empty((c,), dtype=bn_dtype)
    return grad_input, torch.empty_like(weight, memory_format=torch.contiguous_format), grad_bn_weight, \
        torch.empty_like(grad_bn_weight)


@torch.library.register_fake("shufflenet_fused::update_running_stats")
def _update_running_stats_fake(
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    invstd: Tensor,
    momentum: float,
    eps: float,
    count: int | torch.SymInt,
) -> None:
    _check_devices(running_mean, running_var=running_var, mean=mean, invstd=invstd)
    return None


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
