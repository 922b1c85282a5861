"""Loads the compiled kernels and registers fake kernels and autograd for them.

The schemas live in csrc/ops.cpp; the CPU/CUDA kernels register themselves
when ``_C`` is imported. What torch.compile and autograd need beyond that is
registered here with ``torch.library``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loading it registers torch.ops.shufflenet_fused.*)

ops = torch.ops.shufflenet_fused


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of mean/invstd: float32, or float64 for float64 input."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _out_shape(input: Tensor, weight: Tensor, stride: int) -> tuple:
    n, c, h, w = input.shape
    k = weight.shape[-1]
    pad = k // 2
    return (n, c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)


def _memory_format(input: Tensor) -> torch.memory_format:
    # Mirrors output_memory_format() in csrc/op_checks.h.
    if input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _new_output(input: Tensor, shape: tuple) -> Tensor:
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=_memory_format(input))


# ------------------------------------------------------------ fake kernels ----


@torch.library.register_fake("shufflenet_fused::dwconv_bn_eval")
def _eval_fake(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps, shuffle_last):
    return _new_output(input, _out_shape(input, weight, stride))


@torch.library.register_fake("shufflenet_fused::dwconv_bn_train")
def _train_fake(input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last):
    c = input.shape[1]
    stats = input.new_empty((c,), dtype=stat_dtype(input.dtype))
    return _new_output(input, _out_shape(input, weight, stride)), stats, torch.empty_like(stats)


@torch.library.register_fake("shufflenet_fused::dwconv_bn_backward")
def _backward_fake(grad_output, input, weight, bn_weight, mean, invstd, groups, stride, shuffle_last, training):
    c = input.shape[1]
    bn_dtype = bn_weight.dtype if bn_weight is not None else stat_dtype(input.dtype)
    grad_input = torch.empty(
        input.shape, dtype=input.dtype, device=input.device, memory_format=_memory_format(input)
    )
    grad_bn_weight = input.new_empty((c,), dtype=bn_dtype)
    return grad_input, torch.empty_like(weight, memory_format=torch.contiguous_format), grad_bn_weight, \
        torch.empty_like(grad_bn_weight)


# ---------------------------------------------------------------- autograd ----


def _bn_grads(ctx, grad_bn_weight: Tensor, grad_bn_bias: Tensor):
    return (
        grad_bn_weight if ctx.needs_input_grad[ctx.bn_weight_index] else None,
        grad_bn_bias if ctx.needs_input_grad[ctx.bn_weight_index + 1] else None,
    )


def _as_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    # Tensor.to returns `t` itself when the dtype matches; opcheck (rightly)
    # rejects ops that hand back their inputs, so only convert when needed.
    return t if t.dtype == dtype else t.to(dtype)


def _eval_setup_context(ctx, inputs, output):
    input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps, shuffle_last = inputs
    sdt = stat_dtype(input.dtype)
    # Frozen statistics: the backward sees them as constants.
    mean = _as_dtype(running_mean.detach(), sdt)
    invstd = torch.rsqrt(_as_dtype(running_var.detach(), sdt) + eps)
    ctx.save_for_backward(input, weight, bn_weight, mean, invstd)
    ctx.conv = (groups, stride, shuffle_last)
    ctx.bn_weight_index = 4


def _eval_backward(ctx, grad_output):
    input, weight, bn_weight, mean, invstd = ctx.saved_tensors
    groups, stride, shuffle_last = ctx.conv
    gx, gw, gg, gb = ops.dwconv_bn_backward(
        grad_output, input, weight, bn_weight, mean, invstd, groups, stride, shuffle_last, False
    )
    return (gx, gw, None, None, *_bn_grads(ctx, gg, gb), None, None, None, None)


def _train_setup_context(ctx, inputs, output):
    input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last = inputs
    _, mean, invstd = output
    ctx.mark_non_differentiable(mean, invstd)
    ctx.save_for_backward(input, weight, bn_weight, mean, invstd)
    ctx.conv = (groups, stride, shuffle_last)
    ctx.bn_weight_index = 2


def _train_backward(ctx, grad_output, _grad_mean, _grad_invstd):
    input, weight, bn_weight, mean, invstd = ctx.saved_tensors
    groups, stride, shuffle_last = ctx.conv
    gx, gw, gg, gb = ops.dwconv_bn_backward(
        grad_output, input, weight, bn_weight, mean, invstd, groups, stride, shuffle_last, True
    )
    return (gx, gw, *_bn_grads(ctx, gg, gb), None, None, None, None)


torch.library.register_autograd(
    "shufflenet_fused::dwconv_bn_eval", _eval_backward, setup_context=_eval_setup_context
)
torch.library.register_autograd(
    "shufflenet_fused::dwconv_bn_train", _train_backward, setup_context=_train_setup_context
)


def _backward_backward(ctx, *grads):
    raise RuntimeError(
        "shufflenet_fused: double backward (gradient of a gradient) through shuffle_dwconv_bn is not "
        "supported; use shufflenet_fused.reference for higher-order gradients"
    )


# Without this, autograd would treat the backward op as constant and a double
# backward would silently give wrong (missing) terms.
torch.library.register_autograd(
    "shufflenet_fused::dwconv_bn_backward", _backward_backward, setup_context=lambda ctx, inputs, output: None
)


def cuda_kernels_built() -> bool:
    """Whether this build of the extension contains the CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("shufflenet_fused::dwconv_bn_eval", "CUDA")
