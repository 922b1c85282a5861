"""Validation mode: every fused call also runs the reference path and compares.

    with shufflenet_fused.validating(model):
        model(x)          # raises ValidationError naming the layer on a mismatch

Meant for debugging a model in eager mode; it roughly doubles the cost of each
fused call. Running statistics are compared too: the reference runs on copies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from . import reference

# Module-level state (not a contextvar) so torch.compile can guard on it.
_active_depth = 0
_tolerances: list[tuple[float | None, float | None]] = []
_layer_names: list[str] = []

# Default (rtol, atol) per dtype: a few ulps of the kernel's accumulation.
DEFAULT_TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}

LAYER_NAME_ATTR = "_shufflenet_fused_name"


class ValidationError(RuntimeError):
    """A fused result differs from the reference path beyond the dtype's tolerance."""


def is_active() -> bool:
    return _active_depth > 0


@contextlib.contextmanager
def validating(
    model: nn.Module | None = None, *, rtol: float | None = None, atol: float | None = None
) -> Iterator[None]:
    """Check every fused call against the reference while the block runs.

    With ``model`` given, its submodules are labelled with their qualified names so a
    mismatch names the layer (``features.3``); ``rtol``/``atol`` override the per-dtype
    defaults in :data:`DEFAULT_TOLERANCES`.
    """
    global _active_depth
    if model is not None:
        for name, module in model.named_modules():
            setattr(module, LAYER_NAME_ATTR, name or type(module).__name__)
    _active_depth += 1
    _tolerances.append((rtol, atol))
    try:
        yield
    finally:
        _tolerances.pop()
        _active_depth -= 1


@contextlib.contextmanager
def layer(name: str) -> Iterator[None]:
    """Names the fused calls made inside (used by the fused modules)."""
    _layer_names.append(name)
    try:
        yield
    finally:
        _layer_names.pop()


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    rtol, atol = _tolerances[-1] if _tolerances else (None, None)
    default_rtol, default_atol = DEFAULT_TOLERANCES[dtype]
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def _copy(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().clone()


def checked_call(fused_fn, input, weight, running_mean, running_var, bn_weight, bn_bias, **kwargs) -> Tensor:
    """Runs ``fused_fn`` and the reference on the same inputs; raises on disagreement."""
    ref_mean, ref_var = _copy(running_mean), _copy(running_var)
    with torch.no_grad():
        expected = reference.shuffle_dwconv_bn(
            input.detach(), weight.detach(), ref_mean, ref_var, _copy(bn_weight), _copy(bn_bias), **kwargs
        )
    out = fused_fn(input, weight, running_mean, running_var, bn_weight, bn_bias, **kwargs)
    where = _layer_names[-1] if _layer_names else "shuffle_dwconv_bn"
    _compare(where, "output", out.detach(), expected)
    if kwargs.get("training") and running_mean is not None:
        _compare(where, "running_mean", running_mean.detach(), ref_mean)
        _compare(where, "running_var", running_var.detach(), ref_var)
    return out


def _compare(where: str, what: str, got: Tensor, expected: Tensor) -> None:
    rtol, atol = _tolerance(expected.dtype)
    if got.shape != expected.shape:
        raise ValidationError(f"{where}: fused {what} has shape {tuple(got.shape)}, "
                              f"reference {tuple(expected.shape)}")  # fmt: skip
    ok = torch.isclose(got.float() if got.dtype in (torch.float16, torch.bfloat16) else got,
                       expected.to(got.dtype if got.dtype == torch.float64 else torch.float32)
                       if got.dtype != expected.dtype else expected,
                       rtol=rtol, atol=atol)  # fmt: skip
    if not bool(ok.all()):
        diff = (got.double() - expected.double()).abs()
        idx = tuple(int(i) for i in torch.nonzero(~ok)[0])
        raise ValidationError(
            f"{where}: fused {what} differs from the reference path: max abs error "
            f"{diff.max().item():.3e}, first mismatch at {idx} (fused {got[idx].item():.6g}, "
            f"reference {expected[idx].item():.6g}); tolerance rtol={rtol:g}, atol={atol:g}, "
            f"dtype {got.dtype}"
        )
