"""Argument checks shared by the fused and the reference paths.

They raise ValueError naming the argument, before any kernel runs, so both
paths reject exactly the same inputs with the same message.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ORDERS = ("shuffle_first", "shuffle_last")
KERNEL_SIZES = (3, 5, 7)
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCED_DTYPES = (torch.float16, torch.bfloat16)


def check_args(
    input: Tensor,
    weight: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    bn_weight: Tensor | None,
    bn_bias: Tensor | None,
    groups: int,
    stride: int,
    training: bool,
    order: str,
    eps: float,
    *,
    synchronized: bool = False,
) -> None:
    """Raises ValueError naming the first bad argument. ``synchronized``: the batch
    statistics pool several processes' batches, so this one's may hold a single value (the
    pooled count is checked once the processes have exchanged theirs)."""
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise ValueError(f"input must be a 4-D tensor (N, C, H, W), got {_describe(input)}")
    if input.dtype not in FLOAT_DTYPES:
        raise ValueError(f"input must be float32, float64, float16 or bfloat16, got {input.dtype}")
    n, c, h, w = input.shape
    if c < 1:
        raise ValueError(f"input must have at least one channel, got shape {tuple(input.shape)}")
    if h < 1 or w < 1:
        raise ValueError(f"input spatial size must be at least 1x1, got {h}x{w}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or c % groups != 0:
        raise ValueError(f"groups={groups!r} must be a positive int dividing the channel count C={c}")
    if type(stride) is not int or stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2 (an int), got {stride!r}")
    if type(training) is not bool:
        raise ValueError(f"training must be a bool, got {training!r}")
    # As F.batch_norm: eps inside the square root, >= 0, and > 0 with batch statistics.
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if training and eps == 0:
        raise ValueError("eps must be positive when training (batch statistics), got 0")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if not isinstance(weight, Tensor) or weight.dim() != 4:
        raise ValueError(f"weight must be a 4-D tensor (C, 1, k, k), got {_describe(weight)}")
    if weight.shape[0] != c or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"weight must have shape ({c}, 1, k, k) for C={c}, got {tuple(weight.shape)}")
    if weight.shape[2] not in KERNEL_SIZES:
        raise ValueError(f"weight kernel size must be one of {KERNEL_SIZES}, got {weight.shape[2]}")
    if weight.dtype != input.dtype:
        raise ValueError(f"weight dtype {weight.dtype} does not match input dtype {input.dtype}")
    device = input.device  # fetched once: this runs on every call of the fused op
    if weight.device != device:
        raise ValueError(f"weight is on {weight.device} but input is on {device}")
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("bn_weight", bn_weight),
        ("bn_bias", bn_bias),
    ):
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.shape != (c,):
            raise ValueError(f"{name} must be a 1-D tensor with C={c} elements, got {_describe(t)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
        # As F.batch_norm: the input's dtype, or float32 with a half or bfloat16 input
        # (BN layers stay float32 under autocast).
        if t.dtype != input.dtype and not (t.dtype == torch.float32 and input.dtype in REDUCED_DTYPES):
            also = " or torch.float32" if input.dtype in REDUCED_DTYPES else ""
            raise ValueError(f"{name} must be {input.dtype}{also} for {input.dtype} input (as F.batch_norm), "
                             f"got {t.dtype}")  # fmt: skip
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but input is on {device}")
        if name.startswith("running") and t.requires_grad:
            raise ValueError(f"{name} must not require grad (running statistics are buffers, updated in place)")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are required when training=False")
    if training and not synchronized:
        k = weight.shape[2]
        ho = (h + 2 * (k // 2) - k) // stride + 1
        wo = (w + 2 * (k // 2) - k) // stride + 1
        if n * ho * wo <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {tuple(input.shape)}"
            )


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"shape {tuple(t.shape)}"
    return type(t).__name__
