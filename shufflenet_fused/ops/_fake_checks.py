"""The argument checks of the fake (meta) kernels: csrc/common/checks.h, for what a fake tensor knows.

``torch.compile``/``torch.export`` trace the ops through their fake kernels, which see shapes
(possibly symbolic), dtypes and devices but no data; a call with meta tensors lands there too.
These raise what the C++ checks raise (``RuntimeError`` starting ``shufflenet_fused:``, the
same wording), so a bad call fails at trace time as it would at run time;
tests/test_errors.py runs every case through both and compares the messages. Checks that
need the batch size (more than one value per channel in training) are left to the kernels:
on a symbolic batch they would add a guard on it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_REDUCED = (torch.float16, torch.bfloat16)
# c10's names for the dtypes, as TORCH_CHECK prints them.
_C10_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16"}


def _fail(message: str) -> None:
    raise RuntimeError(f"shufflenet_fused: {message}")


def _name(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def conv_args(input: Tensor, weight: Tensor, groups: int, stride: int) -> None:
    if input.dim() != 4:
        _fail(f"input must be 4-D (N, C, H, W), got {input.dim()}-D")
    if input.dtype not in _FLOATS:
        _fail(f"input must be float32, float64, float16 or bfloat16, got {_name(input.dtype)}")
    c = input.shape[1]
    if c < 1:
        _fail("input must have at least one channel")
    if weight.dim() != 4 or weight.shape[0] != c or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        _fail(f"weight must have shape (C, 1, k, k) with C={c}")
    if weight.shape[2] not in (3, 5, 7):
        _fail(f"weight kernel size must be 3, 5 or 7, got {weight.shape[2]}")
    if weight.dtype != input.dtype:
        _fail(f"weight dtype {_name(weight.dtype)} does not match input dtype {_name(input.dtype)}")
    if weight.device != input.device:
        _fail(f"weight is on {weight.device} but input is on {input.device}")
    if groups < 1 or c % groups != 0:
        _fail(f"groups={groups} must be >= 1 and divide the channel count C={c}")
    if stride not in (1, 2):
        _fail(f"stride must be 1 or 2, got {stride}")


def eps_arg(eps: float, training: bool) -> None:
    if not math.isfinite(eps) or eps < 0:
        _fail(f"eps must be a finite number >= 0, got {eps}")
    if training and eps == 0:
        _fail(f"eps must be positive when training (batch statistics), got {eps}")


def per_channel(t: Tensor, name: str, input: Tensor) -> None:
    if t.dim() != 1 or t.shape[0] != input.shape[1]:
        _fail(f"{name} must be 1-D with C={input.shape[1]} elements")
    if not t.is_floating_point():
        _fail(f"{name} must be a floating-point tensor, got {_name(t.dtype)}")
    if t.device != input.device:
        _fail(f"{name} is on {t.device} but input is on {input.device}")


def bn_tensor(t: Tensor | None, name: str, input: Tensor, running: bool = False) -> None:
    if t is None:
        return
    per_channel(t, name, input)
    reduced = input.dtype in _REDUCED
    if t.dtype != input.dtype and not (reduced and t.dtype == torch.float32):
        also = " or float32" if reduced else ""
        _fail(f"{name} must be {_name(input.dtype)}{also} for {_name(input.dtype)} input (as F.batch_norm), "
              f"got {_name(t.dtype)}")  # fmt: skip
    if running and t.requires_grad:
        _fail(f"{name} must not require grad (running statistics are buffers, updated in place)")
