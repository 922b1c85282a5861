"""Shared helpers for the op tests: make inputs, run fused and reference side by side."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import shufflenet_fused as sf
from shufflenet_fused.ops import reference


@dataclass(frozen=True)
class Case:
    n: int
    c: int
    h: int
    w: int
    k: int = 3
    stride: int = 1
    groups: int = 3
    order: str = "shuffle_first"
    layout: str = "nchw"  # "nchw", "channels_last" or "strided" (a non-contiguous view)

    def out_hw(self) -> tuple[int, int]:
        pad = self.k // 2
        return ((self.h + 2 * pad - self.k) // self.stride + 1, (self.w + 2 * pad - self.k) // self.stride + 1)

    def trainable(self) -> bool:
        ho, wo = self.out_hw()
        return self.n * ho * wo > 1


def make_inputs(case: Case, dtype: torch.dtype, seed: int = 0, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(device)

    x = rand(case.n, case.c, case.h, case.w)
    if case.layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif case.layout == "strided":
        # Every other column of a wider tensor: neither NCHW- nor NHWC-contiguous.
        wide = rand(case.n, case.c, case.h, 2 * case.w)
        x = wide[..., ::2]
    return {
        "input": x.to(dtype),
        "weight": rand(case.c, 1, case.k, case.k).to(dtype),
        "running_mean": rand(case.c, lo=-0.5, hi=0.5),
        "running_var": rand(case.c, lo=0.5, hi=1.5),
        "bn_weight": rand(case.c, lo=0.5, hi=1.5),
        "bn_bias": rand(case.c),
        "grad": rand(case.n, case.c, *case.out_hw()).to(dtype),
    }


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def run(fn, case: Case, inputs: dict, *, training: bool, dtype: torch.dtype, momentum: float = 0.1,
        affine: bool = True) -> dict:  # fmt: skip
    """Forward + backward of ``fn``; returns the output, every gradient and the running stats."""
    sdt = stats_dtype(dtype)
    x = inputs["input"].detach().clone().requires_grad_()
    if case.layout == "strided":  # keep the caller's non-contiguous strides
        x = inputs["input"].detach().requires_grad_()
    w = inputs["weight"].detach().clone().requires_grad_()
    rm = inputs["running_mean"].to(sdt).clone()
    rv = inputs["running_var"].to(sdt).clone()
    bw = inputs["bn_weight"].to(sdt).clone().requires_grad_() if affine else None
    bb = inputs["bn_bias"].to(sdt).clone().requires_grad_() if affine else None
    y = fn(x, w, rm, rv, bw, bb, groups=case.groups, stride=case.stride, training=training,
           momentum=momentum, order=case.order)  # fmt: skip
    y.backward(inputs["grad"])
    return {
        "output": y.detach(),
        "grad_input": x.grad,
        "grad_weight": w.grad,
        "grad_bn_weight": None if bw is None else bw.grad,
        "grad_bn_bias": None if bb is None else bb.grad,
        "running_mean": rm,
        "running_var": rv,
    }


def fused_and_reference(case: Case, dtype: torch.dtype, *, training: bool, **kw) -> tuple[dict, dict]:
    inputs = make_inputs(case, dtype)
    return (
        run(sf.shuffle_dwconv_bn, case, inputs, training=training, dtype=dtype, **kw),
        run(reference.shuffle_dwconv_bn, case, inputs, training=training, dtype=dtype, **kw),
    )


def assert_results_close(got: dict, expected: dict, *, rtol: float, atol: float) -> None:
    for key, e in expected.items():
        g = got[key]
        if e is None:
            assert g is None, key
            continue
        assert g is not None, key
        assert g.shape == e.shape and g.dtype == e.dtype, (key, g.shape, e.shape, g.dtype, e.dtype)
        torch.testing.assert_close(g, e, rtol=rtol, atol=atol, msg=lambda m, key=key: f"{key}: {m}")


LOW_PRECISION_TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3}


def assert_low_precision_matches_float64(case: Case, dtype: torch.dtype, *, training: bool) -> None:
    """The fused op in bfloat16/float16 (float32 accumulation) against the float64 reference on
    the same rounded inputs: output, every gradient and the running stats, to the dtype's
    precision (relative to each tensor's largest magnitude)."""
    inputs = make_inputs(case, dtype)
    got = run(sf.shuffle_dwconv_bn, case, inputs, training=training, dtype=dtype)
    inputs64 = {k: v.double() for k, v in inputs.items()}
    expected = run(reference.shuffle_dwconv_bn, case, inputs64, training=training, dtype=torch.float64)
    tol = LOW_PRECISION_TOL[dtype]
    assert got["output"].dtype == dtype and got["grad_input"].dtype == dtype
    fmt = torch.channels_last if case.layout == "channels_last" else torch.contiguous_format
    assert got["output"].is_contiguous(memory_format=fmt)
    for key, e in expected.items():
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(
            got[key].double(), e, rtol=tol, atol=tol * scale, msg=lambda m, key=key: f"{key}: {m}"
        )


# Fused against the reference run in the same dtype, where NaN/Inf patterns are compared: the
# half types' values differ by their rounding (the reference rounds its conv output before BN).
PATTERN_TOL = {torch.float64: 1e-4, torch.float32: 1e-4, torch.bfloat16: 6e-2, torch.float16: 1e-2}


def assert_same_nan_inf(got: torch.Tensor, want: torch.Tensor, what: str, tol: float | None = None) -> None:
    """got has NaN and +-Inf exactly where want has them, and want's finite values elsewhere
    (to `tol` of the largest, default PATTERN_TOL of want's dtype: sums' errors grow with them)."""
    for name, test in (("NaN", torch.isnan), ("+Inf", torch.isposinf), ("-Inf", torch.isneginf)):
        a, b = test(got), test(want)
        assert torch.equal(a, b), f"{what}: {name} at {int(a.sum())} places, reference {int(b.sum())}"
    finite = torch.isfinite(want)
    tol = PATTERN_TOL[want.dtype] if tol is None else tol
    scale = max(1.0, want[finite].abs().max().item()) if finite.any() else 1.0
    torch.testing.assert_close(got[finite], want[finite], rtol=tol, atol=tol * scale, msg=what)
