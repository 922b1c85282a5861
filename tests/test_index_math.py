"""The CUDA backend's index math and algorithm, checked on the CPU.

``torch.ops.shufflenet_fused._debug_emulate_*`` (csrc/tiled/emulator_test_ops.cpp) run the
CUDA kernels' lane work (csrc/tiled/: tile_plan.h, lane_table.h, lane_work.h, finalize.h,
conv_window.h) unit by unit and lane by lane through the same pass sequence as the CUDA
executor (csrc/tiled/pipeline.h): the same tiles, halos, border checks, channel map, partial
slots and reduction orders, BN folding and backward coefficients. Outputs and workspaces start
as NaN, so an element that no work unit writes fails the comparison. Only the CUDA syntax
around those functions is left for tests/test_cuda.py. The channel map and window helpers
(``_debug_channel_map``, ``_debug_windows``) come from csrc/common/index_math_test_ops.cpp.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from tiled_harness import make, run_case

from shufflenet_fused.ops import reference

ops = torch.ops.shufflenet_fused

pytestmark = pytest.mark.skipif(not hasattr(ops, "_debug_emulate_eval"), reason="extension built without the debug ops")

ORDERS = ("shuffle_first", "shuffle_last")
EMULATED = "_debug_emulate"


# --------------------------------------------------------------- index math ----


@pytest.mark.parametrize("c,groups", [(1, 1), (12, 1), (12, 3), (12, 4), (12, 12), (60, 20), (240, 80), (7, 7)])
def test_channel_map_matches_channel_shuffle(c, groups):
    src, dst, param_first, param_last = ops._debug_channel_map(c, groups)
    # src is torch's ChannelShuffle: output o reads input src[o].
    x = torch.arange(c, dtype=torch.float64).view(1, c, 1, 1)
    shuffled = reference.channel_shuffle(x, groups).view(-1).long()
    assert torch.equal(src, shuffled)
    # dst is its inverse.
    assert torch.equal(dst[src], torch.arange(c))
    assert torch.equal(src[dst], torch.arange(c))
    # Lane (input channel) c: shuffle_first uses the parameters of its output channel
    # dst(c); shuffle_last those of channel c itself.
    assert torch.equal(param_first, dst)
    assert torch.equal(param_last, torch.arange(c))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 28, 29, 56])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_windows_match_brute_force(size, k, stride):
    taps, cover = ops._debug_windows(size, k, stride)
    pad = k // 2
    out = (size + 2 * pad - k) // stride + 1
    assert taps.shape == (out, 2)
    for o in range(out):
        inside = [t for t in range(k) if 0 <= o * stride - pad + t < size]
        assert (taps[o, 0].item(), taps[o, 1].item()) == (inside[0], inside[-1] + 1), o
    for i in range(size):
        covering = [o for o in range(out) if o * stride - pad <= i <= o * stride - pad + k - 1]
        assert (cover[i, 0].item(), cover[i, 1].item()) == (covering[0], covering[-1] + 1), i
        unclamped = [o for o in range(-k, out + k) if o * stride - pad <= i <= o * stride - pad + k - 1]
        assert (cover[i, 2].item(), cover[i, 3].item()) == (unclamped[0], unclamped[-1]), i


# ------------------------------------------------------------ emulated ops ----


# Shapes chosen to hit the planners' edges: 1x1 and tiny planes, odd sizes, outputs not a
# multiple of the 4-wide chunk, several tiles per row/column (NCHW output tiles are at most
# 32 wide, grad_input tiles 64), C above and not a multiple of 32 (channels_last groups
# of 32 channels), batch 1 and > 1.
SHAPES = [
    (1, 6, 1, 1),
    (2, 6, 1, 1),
    (1, 3, 2, 3),
    (2, 6, 5, 7),
    (3, 12, 8, 8),
    (2, 12, 14, 14),
    (1, 40, 9, 6),
    (2, 6, 37, 70),
    (1, 6, 131, 5),
    (1, 3, 6, 133),
]


def _cases():
    cases = []
    for shape, k, stride, order in itertools.product(SHAPES, (3, 5, 7), (1, 2), ORDERS):
        n, c, h, w = shape
        groups = {6: 3, 12: 4, 3: 3, 40: 8}[c]
        for layout in ("nchw", "channels_last"):
            cases.append((n, c, h, w, k, stride, groups, order, layout))
    return cases


@pytest.mark.parametrize("case", _cases(), ids=lambda c: "n{}c{}h{}w{}-k{}s{}-g{}-{}-{}".format(*c))
def test_emulated_ops_match_reference_float64(case):
    run_case(EMULATED, *case)


@pytest.mark.parametrize("groups", [1, 2, 3, 6, 12])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_emulated_ops_groups_and_layouts(groups, layout):
    for order in ORDERS:
        run_case(EMULATED, 2, 12, 9, 10, 3, 1, groups, order, layout)
        run_case(EMULATED, 2, 12, 9, 10, 5, 2, groups, order, layout)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_ops_without_affine(layout):
    run_case(EMULATED, 2, 6, 7, 9, 3, 1, 3, "shuffle_last", layout, affine=False)
    run_case(EMULATED, 2, 6, 7, 9, 3, 2, 2, "shuffle_first", layout, affine=False)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (7, 2)])
def test_emulated_ops_float32(layout, k, stride):
    for order in ORDERS:
        run_case(EMULATED, 3, 40, 15, 17, k, stride, 8, order, layout, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2), (7, 2)])
def test_emulated_ops_half_and_bfloat16(dtype, layout, k, stride):
    for order in ORDERS:
        run_case(EMULATED, 2, 40, 9, 11, k, stride, 8, order, layout, dtype=dtype)


def test_emulated_ops_random_shapes():
    rng = random.Random(1234)
    for _ in range(40):
        c = rng.choice([1, 2, 3, 6, 9, 33, 48])
        groups = rng.choice([g for g in range(1, c + 1) if c % g == 0])
        run_case(
            EMULATED, rng.randint(1, 3), c, rng.randint(1, 40), rng.randint(1, 40), rng.choice([3, 5, 7]),
            rng.choice([1, 2]),
            groups, rng.choice(ORDERS), rng.choice(["nchw", "channels_last", "strided"]), seed=rng.randint(0, 99),
        )  # fmt: skip


def test_emulated_training_stats_are_accurate_with_a_large_offset():
    # The per-lane shifted sums and the pooled two-sweep variance must not cancel when the
    # channel mean is far from zero relative to its spread.
    t = make(2, 6, 20, 20, 3, torch.float32, "nchw", 3)
    x = (t["x"].double() * 1e-2 + 100.0).float()
    w = t["w"]
    for layout in ("nchw", "channels_last"):
        xl = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
        _, mean, invstd = ops._debug_emulate_train(xl, w, None, None, 3, 1, 1e-5, False)
        z = torch.nn.functional.conv2d(reference.channel_shuffle(x.double(), 3), w.double(), None, 1, 1, 1, 6)
        var, m = torch.var_mean(z, dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean.double(), m, rtol=1e-6, atol=0)
        torch.testing.assert_close(invstd.double(), torch.rsqrt(var + 1e-5), rtol=2e-3, atol=0)


def test_emulated_empty_batch():
    x = torch.zeros(0, 6, 5, 5, dtype=torch.float64)
    w = torch.ones(6, 1, 3, 3, dtype=torch.float64)
    stats = torch.zeros(6, dtype=torch.float64)
    y = ops._debug_emulate_eval(x, w, stats, stats + 1, None, None, 3, 1, 1e-5, False)
    assert y.shape == (0, 6, 5, 5)
    gx, gw, gg, gb = ops._debug_emulate_backward(torch.zeros(0, 6, 5, 5, dtype=torch.float64), x, w, None, stats,
                                                 stats + 1, 3, 1, False, False)  # fmt: skip
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w))
    assert torch.equal(gg, torch.zeros(6, dtype=torch.float64)) and torch.equal(gb, gg)


def test_emulated_ops_reject_bad_arguments_like_the_real_ops():
    x = torch.zeros(1, 6, 5, 5, dtype=torch.float64)
    w = torch.zeros(6, 1, 3, 3, dtype=torch.float64)
    s = torch.zeros(6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="groups=4"):
        ops._debug_emulate_eval(x, w, s, s, None, None, 4, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="stride"):
        ops._debug_emulate_eval(x, w, s, s, None, None, 3, 3, 1e-5, False)
    with pytest.raises(RuntimeError, match="more than 1 value"):
        ops._debug_emulate_train(x[:, :, :1, :1], w, None, None, 3, 1, 1e-5, False)


# The tile plans a GPU runs (_debug_tile_plan: [TH, TW, chunks_w, in_rows, pitch, tiles_h,
# tiles_w, units, planes]): NCHW plane blocks only where one tile covers the plane, never more planes
# than the batch, within the 6 KiB of shared memory per warp, and only while the grid keeps
# 2048 units where the problem has that many.
@pytest.mark.skipif(not hasattr(ops, "_debug_tile_plan"), reason="extension built without the debug ops")
@pytest.mark.parametrize("n,c,h,k,s", [(64, 240, 7, 3, 1), (64, 240, 7, 7, 1), (64, 240, 14, 3, 1),
                                       (64, 120, 28, 3, 1), (64, 60, 56, 3, 2), (3, 24, 7, 3, 1),
                                       (256, 960, 7, 5, 1), (1, 240, 7, 3, 1)])  # fmt: skip
@pytest.mark.parametrize("acc_bytes", [4, 8])
def test_plane_blocks_in_gpu_tile_plans(n, c, h, k, s, acc_bytes):
    plan = ops._debug_tile_plan(n, c, h, h, k, s, False, acc_bytes)
    th, tw, chunks_w, in_rows, pitch, tiles_h, tiles_w, units, planes = plan
    assert units == -(-n // planes) * tiles_h * tiles_w * c
    assert 1 <= planes <= n
    assert planes * in_rows * pitch * acc_bytes <= 6 * 1024 or planes == 1
    if planes > 1:
        assert tiles_h * tiles_w == 1 and units >= 2048
    if n * c >= 2 * 2048 and tiles_h * tiles_w == 1 and th * chunks_w <= 16:
        assert planes > 1, "small planes of a large batch should share units"


# The eval walk plans a GPU runs (_debug_walk_plan: [rows, strip, blocks, row_chunks, strips,
# index32], tiled/walk_eval.h): they cover every output once, NCHW warps pack (plane, column)
# lanes of strips at most 32 wide, and units are split (rows halved down to 4 for NCHW and 1
# for channels_last, then channels_last columns down to 8) only while the grid has fewer than
# 2048 warps.
@pytest.mark.skipif(not hasattr(ops, "_debug_walk_plan"), reason="extension built without the debug ops")
@pytest.mark.parametrize("n,c,h,w,k,s", [(64, 240, 7, 7, 3, 1), (64, 120, 28, 28, 5, 1), (64, 60, 56, 56, 3, 2),
                                         (1, 24, 7, 7, 3, 1), (2, 40, 300, 70, 7, 2),
                                         (1, 3, 2, 100000, 3, 1)])  # fmt: skip
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gpu_walk_plans(n, c, h, w, k, s, channels_last):
    rows, strip, blocks, row_chunks, strips, index32 = ops._debug_walk_plan(n, c, h, w, k, s, channels_last)
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    assert row_chunks == -(-ho // rows) and strips == -(-wo // strip) and index32
    first_strip = wo if channels_last else min(wo, 32)
    if channels_last:
        assert blocks == n * -(-c // 32)
    else:
        assert strip == first_strip and blocks == -(-(n * c * strip) // 32)
    units = blocks * row_chunks * strips
    min_rows = 1 if channels_last else 4
    if units < 2048:  # split as far as allowed
        assert rows < 2 * min_rows and (not channels_last or strip < 16)
    if strip < first_strip:  # columns split only once rows could not be
        assert rows < 2 * min_rows and blocks * row_chunks * -(-wo // (2 * strip)) < 2048
    elif rows < ho:  # the last halving was needed
        assert blocks * -(-ho // (2 * rows)) * strips < 2048
