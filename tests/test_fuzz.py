"""Property test: the fused op against the float64 reference on inputs hypothesis draws.

Shapes (N including 0, 1x1 planes, planes smaller than k, odd sizes with stride 2), k, stride,
groups (every divisor of C), both orders, eval and training, four dtypes, and the memory
layout of the input: NCHW, channels_last, a strided view (every other column), a storage
offset (a slice of a larger batch), a batch broadcast from one image (stride 0). Outputs, the
gradients of the input, the conv weight and the BN parameters, and the running statistics
are compared with the reference on the same values in float64.

CI runs a fixed budget (deterministic: derandomized); SHUFFLENET_FUSED_FUZZ_EXAMPLES=N runs
N examples with fresh randomness, e.g. 5000 for a long run.
"""

from __future__ import annotations

import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import shufflenet_fused as sf  # noqa: E402
from shufflenet_fused.ops import reference  # noqa: E402

LONG = int(os.environ.get("SHUFFLENET_FUSED_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=LONG or 150,
    derandomize=not LONG,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Error allowed relative to the largest reference value of each result (half and bfloat16
# round inputs, outputs and gradients to 11 and 8 bits).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}
LAYOUTS = ("nchw", "channels_last", "strided", "offset", "broadcast")


@st.composite
def cases(draw):
    c = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24, 33, 40]))
    return {
        "n": draw(st.integers(0, 3)),
        "c": c,
        "h": draw(st.integers(1, 17)),
        "w": draw(st.integers(1, 17)),
        "k": draw(st.sampled_from([3, 5, 7])),
        "stride": draw(st.sampled_from([1, 2])),
        "groups": draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0])),
        "order": draw(st.sampled_from(["shuffle_first", "shuffle_last"])),
        "training": draw(st.booleans()),
        "affine": draw(st.booleans()),
        "dtype": draw(st.sampled_from([torch.float64, torch.float32, torch.float16, torch.bfloat16])),
        "layout": draw(st.sampled_from(LAYOUTS)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def _input(case, g):
    n, c, h, w = case["n"], case["c"], case["h"], case["w"]
    layout = case["layout"]
    if layout == "strided":
        x = torch.randn(n, c, h, 2 * w, generator=g, dtype=torch.float64)[..., ::2]
    elif layout == "offset":
        x = torch.randn(n + 2, c, h, w, generator=g, dtype=torch.float64)[2:]
    elif layout == "broadcast":
        x = torch.randn(1, c, h, w, generator=g, dtype=torch.float64).expand(n, c, h, w)
    else:
        x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    x = x.to(case["dtype"])
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _run(fn, case, x, w, gamma, beta, stats, gy):
    x = x.detach().requires_grad_()
    leaves = [w.detach().requires_grad_()] + [t.detach().requires_grad_() if t is not None else None
                                              for t in (gamma, beta)]  # fmt: skip
    running = [t.clone() for t in stats]
    y = fn(x, leaves[0], *running, leaves[1], leaves[2], groups=case["groups"], stride=case["stride"],
           training=case["training"], momentum=0.2, eps=1e-3, order=case["order"])  # fmt: skip
    y.backward(gy.to(y.dtype))
    grads = [x.grad] + [t.grad if t is not None else None for t in leaves]
    return y.detach(), grads, running


def _close(got, want, dtype, what):
    assert got.shape == want.shape, what
    got, want = got.double(), want.double()
    assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: NaN pattern"
    scale = max(want.abs().max().item(), 1.0) if want.numel() else 1.0
    err = (got - want).abs().max().item() if want.numel() else 0.0
    assert err <= TOLERANCE[dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@SETTINGS
@given(case=cases())
def test_fused_matches_reference(case):
    k, stride = case["k"], case["stride"]
    ho = (case["h"] - 1) // stride + 1
    wo = (case["w"] - 1) // stride + 1
    if case["training"] and case["n"] * ho * wo <= 1:
        return  # BN needs more than one value per channel (tests/test_errors.py)
    g = torch.Generator().manual_seed(case["seed"])
    dtype, c = case["dtype"], case["c"]
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    x = _input(case, g)
    w = torch.randn(c, 1, k, k, generator=g, dtype=torch.float64).to(dtype)
    gamma = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(sdt) if case["affine"] else None
    beta = torch.randn(c, generator=g, dtype=torch.float64).to(sdt) if case["affine"] else None
    stats = (torch.randn(c, generator=g, dtype=torch.float64).to(sdt),
             (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(sdt))  # fmt: skip
    gy = torch.randn(case["n"], c, ho, wo, generator=g, dtype=torch.float64).to(dtype)

    y, grads, running = _run(sf.shuffle_dwconv_bn, case, x, w, gamma, beta, stats, gy)
    as64 = [t.double() if t is not None else None for t in (x, w, gamma, beta)]
    y_ref, grads_ref, running_ref = _run(reference.shuffle_dwconv_bn, case, as64[0], as64[1], as64[2], as64[3],
                                         [t.double() for t in stats], gy.double())  # fmt: skip
    assert y.dtype == dtype
    _close(y, y_ref, dtype, "output")
    for name, got, want in zip(("input", "weight", "bn_weight", "bn_bias"), grads, grads_ref, strict=True):
        if want is None:
            assert got is None, name
            continue
        _close(got, want, dtype, f"grad {name}")
    for name, got, want in zip(("running_mean", "running_var"), running, running_ref, strict=True):
        _close(got, want, sdt, name)
