"""BatchNorm with degenerate parameters keeps the reference's NaN/Inf pattern.

With eps = 0 and a zero running variance (scale = gamma / 0), or an infinite or NaN gamma,
beta or running mean, folding BN into the convolution taps (conv(x, w * scale)) would give
another NaN/Inf pattern than the reference's conv(x, w) * scale + shift: the op then
applies BN after the convolution. In training (batch statistics) gamma and beta can be
degenerate: the backward applies gamma * invstd after the bracket, as the reference. Every CPU
ISA this machine runs, both layouts, every dtype (against the reference in the same dtype),
both orders, both strides.
"""

from __future__ import annotations

import pytest
import torch
from op_cases import assert_same_nan_inf

import shufflenet_fused as sf

C = 12
INF, NAN = float("inf"), float("nan")


def _bn(dtype):
    g = torch.Generator().manual_seed(3)
    gamma = torch.rand(C, generator=g, dtype=dtype) + 0.5
    beta = torch.randn(C, generator=g, dtype=dtype)
    rm = torch.randn(C, generator=g, dtype=dtype)
    rv = torch.rand(C, generator=g, dtype=dtype) + 0.5
    rv[0] = 0.0  # with eps = 0: scale = gamma / 0 = inf, shift = beta - mean * inf
    rv[1], rm[1] = 0.0, 0.0  # shift = beta - 0 * inf = NaN
    rv[2], gamma[2] = 0.0, 0.0  # scale = 0 / 0 = NaN
    gamma[3] = INF
    gamma[4] = -INF
    gamma[5] = NAN
    beta[6] = INF
    rm[7] = NAN
    rm[8] = -INF
    return gamma, beta, rm, rv


def _input_and_weight(seed, dtype, layout, zero_taps=()):
    """x (2, C, 9, 11) in `layout` and 3x3 weights, with the centre tap of `zero_taps` zeroed
    (0 * inf = NaN if an infinite scale were folded into it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, C, 9, 11, generator=g, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, 3, 3, generator=g, dtype=dtype)
    for c in zero_taps:
        w[c, 0, 1, 1] = 0.0
    return x, w


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("order", ["shuffle_first", "shuffle_last"])
def test_eval_output_with_degenerate_bn_matches_the_reference(cpu_isa, dtype, layout, stride, order):
    x, w = _input_and_weight(0, dtype, layout, zero_taps=(9,))
    gamma, beta, rm, rv = _bn(dtype)
    kw = dict(groups=3, stride=stride, training=False, eps=0.0, order=order)
    got = sf.shuffle_dwconv_bn(x, w, rm, rv, gamma, beta, **kw)
    want = sf.reference.shuffle_dwconv_bn(x, w, rm, rv, gamma, beta, **kw)
    assert_same_nan_inf(got, want, "output")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_eval_gradients_with_degenerate_bn_match_the_reference(cpu_isa, dtype, layout, stride):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, C, 9, 11, generator=g, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, 3, 3, generator=g, dtype=dtype)
    gamma, beta, rm, rv = _bn(dtype)
    gy = torch.randn(2, C, (9 - 1) // stride + 1, (11 - 1) // stride + 1, generator=g, dtype=dtype)
    grads = []
    for fn in (sf.shuffle_dwconv_bn, sf.reference.shuffle_dwconv_bn):
        leaves = [t.clone().requires_grad_() for t in (x, w, gamma, beta)]
        y = fn(leaves[0], leaves[1], rm, rv, leaves[2], leaves[3], groups=3, stride=stride, training=False,
               eps=0.0, order="shuffle_last")  # fmt: skip
        y.backward(gy)
        grads.append([t.grad for t in leaves])
    for name, a, b in zip(("input", "weight", "bn_weight", "bn_bias"), *grads, strict=True):
        assert_same_nan_inf(a, b, f"grad {name}")


def _training_bn(dtype):
    # Training normalises with batch statistics, so only gamma and beta can be degenerate
    # (eps = 0 is rejected in training).
    gamma, beta, _, _ = _bn(dtype)
    return gamma, beta


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_training_output_with_degenerate_bn_matches_the_reference(cpu_isa, dtype, layout, stride):
    x, w = _input_and_weight(2, dtype, layout, zero_taps=(3,))  # channel 3: gamma = inf
    gamma, beta = _training_bn(dtype)
    kw = dict(groups=3, stride=stride, training=True, order="shuffle_last")
    got = sf.shuffle_dwconv_bn(x, w, None, None, gamma, beta, **kw)
    want = sf.reference.shuffle_dwconv_bn(x, w, None, None, gamma, beta, **kw)
    assert_same_nan_inf(got, want, "output")


def _training_grads(fn, x, w, gamma, beta, gy, stride):
    leaves = [t.clone().requires_grad_() for t in (x, w, gamma, beta)]
    y = fn(leaves[0], leaves[1], None, None, leaves[2], leaves[3], groups=3, stride=stride, training=True,
           order="shuffle_last")  # fmt: skip
    y.backward(gy)
    return [t.grad for t in leaves]


def _output_grad(seed, dtype, stride):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, C, (9 - 1) // stride + 1, (11 - 1) // stride + 1, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_training_gradients_with_degenerate_bn_match_the_reference(cpu_isa, dtype, layout, stride):
    """An infinite gamma makes dz = gamma * invstd * (g - mean(g) - ...) +-Inf, NaN only
    where the bracket is zero, as the reference: the factor is applied last."""
    x, w = _input_and_weight(5, dtype, layout)
    gamma, beta = _training_bn(dtype)
    gy = _output_grad(6, dtype, stride)
    got = _training_grads(sf.shuffle_dwconv_bn, x, w, gamma, beta, gy, stride)
    want = _training_grads(sf.reference.shuffle_dwconv_bn, x, w, gamma, beta, gy, stride)
    for name, a, b in zip(("input", "weight", "bn_weight", "bn_bias"), got, want, strict=True):
        assert_same_nan_inf(a, b, f"grad {name}")


# The CUDA backend's passes (csrc/tiled/), run on the CPU by the emulator (lane work, lane
# after lane) and, where built, the host runner (csrc/cuda/kernels.cuh on host threads).
FAMILIES = [f for f in ("_debug_emulate", "_host_cuda") if hasattr(torch.ops.shufflenet_fused, f + "_eval")]


@pytest.mark.skipif(not FAMILIES, reason="extension built without the test-only ops")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_cuda_backend_keeps_the_reference_pattern_with_degenerate_bn(family, dtype, layout, stride):
    ops = torch.ops.shufflenet_fused
    x, w = _input_and_weight(4, dtype, layout, zero_taps=(3, 9))
    gamma, beta, rm, rv = _bn(dtype)
    got = getattr(ops, family + "_eval")(x, w, rm, rv, gamma, beta, 3, stride, 0.0, True)
    want = sf.reference.shuffle_dwconv_bn(x, w, rm, rv, gamma, beta, groups=3, stride=stride, training=False,
                                          eps=0.0, order="shuffle_last")  # fmt: skip
    assert_same_nan_inf(got, want, "eval output")
    tg, tb = _training_bn(dtype)
    got, _, _ = getattr(ops, family + "_train")(x, w, tg, tb, 3, stride, 1e-5, True)
    want = sf.reference.shuffle_dwconv_bn(x, w, None, None, tg, tb, groups=3, stride=stride, training=True,
                                          order="shuffle_last")  # fmt: skip
    assert_same_nan_inf(got, want, "training output")
    gy = _output_grad(7, dtype, stride)
    _, mean, invstd = getattr(ops, family + "_train")(x, w, tg, tb, 3, stride, 1e-5, True)
    got = getattr(ops, family + "_backward")(gy, x, w, tg, mean, invstd, 3, stride, True, True)
    want = _training_grads(sf.reference.shuffle_dwconv_bn, x, w, tg, tb, gy, stride)
    for name, a, b in zip(("input", "weight", "bn_weight", "bn_bias"), got, want, strict=True):
        assert_same_nan_inf(a, b, f"training grad {name}")
