"""Every CPU dispatch level this machine can run gives the reference's answer.

The kernels are compiled for baseline x86-64, AVX2 and AVX-512 and picked at
run time; widths are chosen so every vector tail (1..33 columns) is hit.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import CPU_ISAS
from op_cases import (
    Case,
    assert_low_precision_matches_float64,
    assert_results_close,
    fused_and_reference,
    make_inputs,
    run,
)

import shufflenet_fused as sf
from shufflenet_fused.ops import reference
from shufflenet_fused.ops._library import ops

CASES = [
    Case(2, 6, h, w, k=k, stride=s, groups=3, order=o)
    for (h, w), k, s, o in itertools.product(
        [(1, 1), (3, 17), (5, 33), (7, 7), (14, 14), (9, 31)], (3, 5, 7), (1, 2), ("shuffle_first", "shuffle_last")
    )
]
# channels_last: the eval kernel's vector loops run over C, so C is what hits
# the vector tails (6, 24 = 16 + 8, 51 = 3 * 16 + 3); groups 1 and C take the
# identity-map path.
CASES += [
    Case(2, c, h, w, k=k, stride=s, groups=gr, order=o, layout="channels_last")
    for c, (h, w), k, s, o, gr in itertools.product(
        (6, 24, 51), [(1, 1), (5, 9), (7, 7)], (3, 7), (1, 2), ("shuffle_first", "shuffle_last"), (3, 1)
    )
] + [Case(1, 51, 4, 6, groups=51, layout="channels_last")]
# channels_last 3x3 on AVX-512: blocks of 4 output pixels between the border
# pixels (W = 20 fits several blocks at stride 1 and 2), and the shuffle as
# per-16-lane permutes (C = 40 and 240: groups that scatter a chunk's sources
# over 3 to 6 blocks; 40 = 2 * 16 + 8 ends on an overlapping chunk).
CASES += [
    Case(2, c, h, w, k=3, stride=s, groups=gr, order=o, layout="channels_last")
    for (c, gr), (h, w), s, o in itertools.product(
        [(40, 5), (40, 8), (240, 80), (240, 3)], [(3, 20), (6, 13)], (1, 2), ("shuffle_first", "shuffle_last")
    )
]
# The in-place (AVX-512, stride 1) weight gradient flushes its float lanes to
# double every 16384 // (H*W) planes: 16 planes of 33x33 flush twice.
CASES += [Case(16, 3, 33, 33, k=3, groups=3, order="shuffle_last")]
# AVX-512, stride 1, windows built in registers (direct_plane.h). Span 1, every
# tap offset within +-15 (k = 3: 2 <= W <= 14; k = 5: 3 <= W <= 6; k = 7:
# W = 4), 4 planes of a channel at a time, then single planes (N = 6: one block
# of 4 + 2 more; N = 9: two blocks + 1); span 2 (k = 3, 18 <= W <= 30), 2 planes
# at a time. The widths include both ends of each range and the widths just
# past them (15, 17, 31); H = 1 and 2 have no interior row. 7x7 planes take
# compile-time vectors (unrolled, constant masks, the last vector's unused taps
# dropped); other heights of width 7 (9x7) take vpermt2ps windows.
WINDOWED_CASES = [
    Case(n, 6, h, w, k=k, stride=1, groups=3, order=o)
    for n, (k, h, w), o in itertools.product(
        (6, 9),
        [(3, 7, 7), (3, 14, 14), (3, 9, 7), (3, 6, 14), (3, 2, 2), (3, 1, 14), (3, 13, 3), (3, 2, 9), (3, 5, 15)]
        + [(5, 4, 3), (5, 6, 6), (5, 3, 7), (5, 2, 2), (7, 4, 4), (7, 5, 3), (7, 3, 5)]
        + [(3, 28, 28), (3, 3, 18), (3, 2, 30), (3, 1, 31), (3, 3, 17), (5, 4, 18)],
        ("shuffle_first", "shuffle_last"),
    )
]
# Eval with fewer than 4 batch entries groups 4 output channels (each with its
# own taps) per windowed block instead: C = 9 is two blocks and a single
# plane, C = 5 one block and one, at span 1 and 2.
WINDOWED_CASES += [
    Case(n, c, h, w, k=3, stride=1, groups=g, order="shuffle_last")
    for n, c, g, (h, w) in [(1, 9, 3, (7, 7)), (3, 5, 5, (14, 14)), (1, 9, 9, (28, 28)), (2, 9, 3, (5, 13))]
]
CASES += WINDOWED_CASES
# Stride-2 3x3 rows (AVX-512): 16-pixel output chunks, the second one partial
# (W = 50) or full (W = 64), odd heights.
CASES += [
    Case(2, 6, h, w, k=3, stride=2, groups=3, order=o)
    for (h, w), o in itertools.product([(5, 64), (7, 50), (3, 2)], ("shuffle_first", "shuffle_last"))
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_every_isa_matches_reference(cpu_isa: str, dtype: torch.dtype) -> None:
    assert ops._cpu_isa("") == cpu_isa
    # float32: both sides round; the weight gradient sums up to 2*7*9 products per tap.
    tol = 1e-10 if dtype == torch.float64 else 5e-5
    for case in CASES:
        for training in (False, True):
            got, expected = fused_and_reference(case, dtype, training=training)
            assert_results_close(got, expected, rtol=tol, atol=tol)


# bfloat16/float16 rows are widened/narrowed in registers on AVX-512 (rows of
# 1..16 elements and longer ones in 16-element chunks), element by element elsewhere.
LOW_PRECISION_CASES = [
    Case(2, 6, h, w, k=3, stride=s, groups=3, order="shuffle_last", layout=lay)
    for (h, w), s, lay in itertools.product([(7, 7), (5, 16), (6, 33)], (1, 2), ("nchw", "channels_last"))
] + [Case(5, 6, h, w, k=3, groups=3, order="shuffle_last") for h, w in [(7, 7), (14, 14), (3, 10), (5, 28)]]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_every_isa_low_precision_matches_float64_reference(cpu_isa: str, dtype: torch.dtype) -> None:
    assert ops._cpu_isa("") == cpu_isa
    for case in LOW_PRECISION_CASES:
        for training in (False, True):
            assert_low_precision_matches_float64(case, dtype, training=training)


def test_unknown_or_unsupported_isa_is_rejected() -> None:
    with pytest.raises(RuntimeError, match="unknown CPU ISA"):
        ops._cpu_isa("sse9")
    assert ops._cpu_isa("") in CPU_ISAS


# A non-finite input reaches exactly the outputs whose window holds it, as in the
# reference. The in-register windows of the AVX-512 path wrap across rows and
# planes; the wrapped lanes are masked out of the FMA, not multiplied by zero
# (Inf * 0 would be NaN), so an Inf in a plane's last column must not leak into
# the next row's first column, the neighbouring plane or another batch entry.
@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (9, 28), (9, 33)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_every_isa_keeps_non_finite_values_in_their_windows(cpu_isa: str, hw: tuple[int, int]) -> None:
    h, w = hw
    case = Case(6, 6, h, w, k=3, groups=3, order="shuffle_first")
    inputs = make_inputs(case, torch.float32)
    x = inputs["input"].clone()
    x[1, 2, 3, w - 1] = float("inf")  # last column
    x[2, 4, 0, 0] = float("-inf")  # first element of a plane
    x[4, 0, h - 1, w - 1] = float("nan")  # last element of a plane
    inputs["input"] = x
    got = run(sf.shuffle_dwconv_bn, case, inputs, training=False, dtype=torch.float32)["output"]
    expected = run(reference.shuffle_dwconv_bn, case, inputs, training=False, dtype=torch.float32)["output"]
    assert got.isnan().any() and got.isinf().any()
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.isposinf(), expected.isposinf()) and torch.equal(got.isneginf(), expected.isneginf())
    finite = expected.isfinite()
    torch.testing.assert_close(got[finite], expected[finite], rtol=5e-5, atol=5e-5)
