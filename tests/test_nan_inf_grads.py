"""NaN and Inf in the input or the conv weights: outputs and gradients keep the reference's
NaN/Inf pattern.

With eval BatchNorm (frozen statistics) the input's gradient does not depend on the input,
so a NaN or Inf in x must not reach x.grad; the weight gradient correlates dz with x, so it
has NaN/Inf exactly where the reference has them. Every CPU ISA this machine runs, both
layouts, every dtype (against the reference in the same dtype).
"""

from __future__ import annotations

import pytest
import torch
from op_cases import assert_same_nan_inf

import shufflenet_fused as sf
from shufflenet_fused.ops._library import ops


def _grads(fn, x, w, gamma, beta, rm, rv, gy, stride, order):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    gamma, beta = gamma.clone().requires_grad_(True), beta.clone().requires_grad_(True)
    y = fn(x, w, rm.clone(), rv.clone(), gamma, beta, groups=3, stride=stride, order=order)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, gamma.grad, beta.grad


def _case(value, dtype, layout, stride):
    g = torch.Generator().manual_seed(0)
    n, c, h, w_ = 2, 12, 9, 11
    x = torch.randn(n, c, h, w_, generator=g, dtype=dtype)
    x[1, 4, 3, 5] = value
    x[0, 7, 0, 0] = value
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, 3, 3, generator=g, dtype=dtype)
    gamma, beta = torch.rand(c, generator=g, dtype=dtype) + 0.5, torch.randn(c, generator=g, dtype=dtype)
    rm, rv = torch.randn(c, generator=g, dtype=dtype), torch.rand(c, generator=g, dtype=dtype) + 0.5
    ho, wo = (h - 1) // stride + 1, (w_ - 1) // stride + 1
    gy = torch.randn(n, c, ho, wo, generator=g, dtype=dtype)
    return x, w, gamma, beta, rm, rv, gy


NAMES = ("y", "x.grad", "weight.grad", "bn_weight.grad", "bn_bias.grad")
PARAMS = [
    pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"]),
    pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    pytest.mark.parametrize("layout", ["nchw", "channels_last"]),
    pytest.mark.parametrize("stride", [1, 2]),
]


def _check(cpu_isa, value, dtype, layout, stride, names):
    x, w, gamma, beta, rm, rv, gy = _case(value, dtype, layout, stride)
    for order in ("shuffle_first", "shuffle_last"):
        fused = _grads(sf.shuffle_dwconv_bn, x, w, gamma, beta, rm, rv, gy, stride, order)
        ref = _grads(sf.reference.shuffle_dwconv_bn, x, w, gamma, beta, rm, rv, gy, stride, order)
        for name, a, b in zip(NAMES, fused, ref, strict=True):
            if name in names:
                assert_same_nan_inf(a, b, f"{order} {name}")
        if "x.grad" in names:
            assert torch.isfinite(fused[1]).all()  # eval BN: x.grad is independent of x


def _parametrized(f):
    for mark in reversed(PARAMS):
        f = mark(f)
    return f


@_parametrized
def test_eval_output_input_and_bn_gradients_keep_the_reference_pattern(cpu_isa, value, dtype, layout, stride):
    _check(cpu_isa, value, dtype, layout, stride, {"y", "x.grad", "bn_weight.grad", "bn_bias.grad"})


@_parametrized
def test_eval_weight_gradient_keeps_the_reference_pattern(cpu_isa, value, dtype, layout, stride):
    _check(cpu_isa, value, dtype, layout, stride, {"weight.grad"})


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_emulated_cuda_eval_input_gradient_ignores_nan_inf_in_the_input(value, layout, stride):
    # The CUDA pipeline's dz (tiled/lane_work.h), run by its CPU emulator.
    if not hasattr(ops, "_debug_emulate_backward"):
        pytest.skip("extension built without the test ops (SHUFFLENET_FUSED_TEST_OPS=1)")
    x, w, gamma, beta, rm, rv, gy = _case(value, torch.float64, layout, stride)
    mean, invstd = rm, torch.rsqrt(rv + 1e-5)
    for shuffle_last in (False, True):
        gx, *_ = ops._debug_emulate_backward(gy, x, w, gamma, mean, invstd, 3, stride, shuffle_last, False)
        assert torch.isfinite(gx).all()
        order = "shuffle_last" if shuffle_last else "shuffle_first"
        ref = _grads(sf.reference.shuffle_dwconv_bn, x, w, gamma, beta, rm, rv, gy, stride, order)[1]
        torch.testing.assert_close(gx, ref, rtol=1e-10, atol=1e-10)


def _weight_case(value, dtype, layout, stride, k):
    """Finite x, BN and gy; a NaN or +-Inf in the centre tap of channel 1 and a corner tap of
    channel 6 (the corner falls on the zero padding at the border: 0 * inf = NaN there)."""
    g = torch.Generator().manual_seed(2)
    n, c, h, w_ = 2, 12, 9, 11
    x = torch.randn(n, c, h, w_, generator=g, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, k, k, generator=g, dtype=dtype)
    w[1, 0, k // 2, k // 2] = value
    w[6, 0, 0, k - 1] = value
    gamma, beta = torch.rand(c, generator=g, dtype=dtype) + 0.5, torch.randn(c, generator=g, dtype=dtype)
    rm, rv = torch.randn(c, generator=g, dtype=dtype), torch.rand(c, generator=g, dtype=dtype) + 0.5
    gy = torch.randn(n, c, (h - 1) // stride + 1, (w_ - 1) // stride + 1, generator=g, dtype=dtype)
    return x, w, gamma, beta, rm, rv, gy


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("k", [3, 5])
@_parametrized
def test_nonfinite_conv_weights_keep_the_reference_pattern(cpu_isa, value, dtype, layout, stride, k, training):
    """The kernels skip the taps on the zero padding; the reference multiplies the padding's
    zeros by them (0 * inf = NaN): with a non-finite tap the op computes as the reference."""
    x, w, gamma, beta, rm, rv, gy = _weight_case(value, dtype, layout, stride, k)
    results = []
    for fn in (sf.shuffle_dwconv_bn, sf.reference.shuffle_dwconv_bn):
        leaves = [t.clone().requires_grad_() for t in (x, w, gamma, beta)]
        y = fn(leaves[0], leaves[1], rm.clone(), rv.clone(), leaves[2], leaves[3], groups=3, stride=stride,
               training=training, order="shuffle_first")  # fmt: skip
        y.backward(gy)
        results.append([y.detach()] + [t.grad for t in leaves])
    for name, a, b in zip(NAMES, *results, strict=True):
        assert_same_nan_inf(a, b, name)
    assert results[0][0][:, 0].isfinite().all()  # a channel without a non-finite tap


# The CUDA backend's passes (csrc/tiled/) stage zero-padded tiles and multiply the padding's
# zeros by every tap, as the reference: no fallback there. Run on the CPU by the emulator and,
# where built, the host runner (csrc/cuda/kernels.cuh on host threads).
CUDA_FAMILIES = [f for f in ("_debug_emulate", "_host_cuda") if hasattr(ops, f + "_backward")]


@pytest.mark.skipif(not CUDA_FAMILIES, reason="extension built without the test ops (SHUFFLENET_FUSED_TEST_OPS=1)")
@pytest.mark.parametrize("family", CUDA_FAMILIES)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_backend_keeps_the_reference_pattern_with_nonfinite_weights(family, value, stride, k, training, layout):
    x, w, gamma, beta, rm, rv, gy = _weight_case(value, torch.float64, layout, stride, k)
    if training:
        y, mean, invstd = getattr(ops, family + "_train")(x, w, gamma, beta, 3, stride, 1e-5, True)
    else:
        y = getattr(ops, family + "_eval")(x, w, rm, rv, gamma, beta, 3, stride, 1e-5, True)
        mean, invstd = rm, torch.rsqrt(rv + 1e-5)
    got = [y, *getattr(ops, family + "_backward")(gy, x, w, gamma, mean, invstd, 3, stride, True, training)]
    leaves = [t.clone().requires_grad_() for t in (x, w, gamma, beta)]
    ref = sf.reference.shuffle_dwconv_bn(leaves[0], leaves[1], rm.clone(), rv.clone(), leaves[2], leaves[3], groups=3,
                                         stride=stride, training=training, order="shuffle_last")  # fmt: skip
    ref.backward(gy)
    want = [ref.detach()] + [t.grad for t in leaves]
    for name, a, b in zip(NAMES, got, want, strict=True):
        assert_same_nan_inf(a, b, name, tol=1e-9)
