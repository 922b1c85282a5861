"""Validation mode: every fused call also runs the reference path and compares.

    with shufflenet_fused.validating(model):
        model(x)          # raises ValidationError naming the layer on a mismatch

Meant for debugging a model in eager mode; it roughly doubles the cost of each
fused call. Running statistics are compared too: the reference runs on copies.

Outside a ``validating`` block nothing here runs: the fused modules test
:func:`is_active` (a plain module-level counter, which ``torch.compile`` guards on)
and skip the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from . import reference

# Module-level state (not a contextvar) so torch.compile can guard on it.
_active_depth = 0
_tolerances: list[tuple[float | None, float | None]] = []
_layer_names: list[str] = []
# One {module: qualified name} map per ``validating(model)`` block, innermost last.
_module_names: list[dict[nn.Module, str]] = []

# Default (rtol, atol) per dtype: a few ulps of the kernel's accumulation.
DEFAULT_TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}

_UNNAMED = "shuffle_dwconv_bn"


class ValidationError(RuntimeError):
    """A fused result differs from the reference path beyond the dtype's tolerance."""


def is_active() -> bool:
    """True inside a :func:`validating` block."""
    return _active_depth > 0


@contextlib.contextmanager
def validating(
    model: nn.Module | None = None, *, rtol: float | None = None, atol: float | None = None
) -> Iterator[None]:
    """Check every fused call against the reference while the block runs.

    With ``model`` given, its submodules are known by their qualified names while the
    block runs, so a mismatch names the layer (``features.3``); the model itself is not
    modified. ``rtol``/``atol`` override the per-dtype defaults in
    :data:`DEFAULT_TOLERANCES`.
    """
    global _active_depth
    names = {} if model is None else {module: name for name, module in model.named_modules()}
    _module_names.append(names)
    _tolerances.append((rtol, atol))
    _active_depth += 1
    try:
        yield
    finally:
        _active_depth -= 1
        _tolerances.pop()
        _module_names.pop()


def name_of(module: nn.Module) -> str:
    """The qualified name of ``module`` in the model given to the innermost enclosing
    :func:`validating` that knows it (``features.3``); the class name otherwise (also for
    the model itself, whose qualified name is empty)."""
    for names in reversed(_module_names):
        name = names.get(module)
        if name:
            return name
    return type(module).__name__


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


def checked_call(
    fused_fn: Callable[..., Tensor],
    input: Tensor,
    weight: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    bn_weight: Tensor | None,
    bn_bias: Tensor | None,
    **kwargs,
) -> Tensor:
    """Runs ``fused_fn`` and the reference on the same inputs; raises on disagreement."""
    ref_mean, ref_var = _copy(running_mean), _copy(running_var)
    with torch.no_grad():
        expected = reference.shuffle_dwconv_bn(
            input.detach(), weight.detach(), ref_mean, ref_var, _copy(bn_weight), _copy(bn_bias), **kwargs
        )
    out = fused_fn(input, weight, running_mean, running_var, bn_weight, bn_bias, **kwargs)
    where = _layer_names[-1] if _layer_names else _UNNAMED
    _compare(where, "output", out, expected)
    if kwargs.get("training") and running_mean is not None:
        _compare(where, "running_mean", running_mean, ref_mean)
        _compare(where, "running_var", running_var, ref_var)
    return out


def check_output(where: str, got: Tensor, expected: Tensor) -> None:
    """Raises :class:`ValidationError` naming ``where`` unless ``got`` matches ``expected``
    (the whole-block inference path checks itself with it)."""
    _compare(where, "output", got, expected)


def _compare(where: str, what: str, got: Tensor, expected: Tensor) -> None:
    """Raises ValidationError unless ``got`` is close to ``expected`` (both compared in
    float64, with the tolerance of ``got``'s dtype; NaN matches NaN)."""
    if got.shape != expected.shape:
        raise ValidationError(
            f"{where}: fused {what} has shape {tuple(got.shape)}, reference {tuple(expected.shape)}"
        )
    rtol, atol = _tolerance(got.dtype)
    got64, expected64 = got.detach().double(), expected.detach().double()
    bad = ~torch.isclose(got64, expected64, rtol=rtol, atol=atol, equal_nan=True)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        err = (got64 - expected64).abs().nan_to_num(nan=float("inf")).max().item()
        raise ValidationError(
            f"{where}: fused {what} differs from the reference path: max abs error {err:.3e}, "
            f"{int(bad.sum())} of {bad.numel()} values out of tolerance, first at {idx} "
            f"(fused {got64[idx].item():.6g}, reference {expected64[idx].item():.6g}); "
            f"rtol={rtol:g}, atol={atol:g}, dtype {got.dtype}"
        )
