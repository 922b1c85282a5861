"""The CUDA kernels themselves, run on the CPU, against the float64 reference.

``torch.ops.shufflenet_fused._host_cuda_*`` (csrc/cuda/host/) compile csrc/cuda/kernels.cuh as
host C++ under a header that implements the CUDA execution model (cuda_on_host.h) and launch
them with the production launch shapes (cuda/launch_shape.h) through the production pass
sequence (tiled/pipeline.h): the kernels' thread indexing, ``__syncthreads``/``__syncwarp``,
warp shuffles, shared-memory slicing and grid loops all execute. Outputs, workspaces and
shared memory start poisoned (NaN), so a value read before it is written, or never written,
fails the comparison. By default each block's threads are fibers (a thread runs until it
waits at a barrier, so a missing barrier shows as a wrong result); ``threads`` mode (one OS
thread per CUDA thread) is what scripts/sanitize_host_runner.sh runs under ThreadSanitizer
and AddressSanitizer + UBSan.

``SHUFFLENET_FUSED_HOST_RUNNER_OPS`` names another op namespace: the sanitizer builds
register the same ops under their own.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from tiled_harness import make, run_case

import shufflenet_fused  # noqa: F401  (registers the ops)

if os.environ.get("SHUFFLENET_FUSED_HOST_RUNNER_LIB"):  # a sanitizer build
    torch.ops.load_library(os.environ["SHUFFLENET_FUSED_HOST_RUNNER_LIB"])
NAMESPACE = os.environ.get("SHUFFLENET_FUSED_HOST_RUNNER_OPS", "shufflenet_fused")
ops = getattr(torch.ops, NAMESPACE)
FAMILY = "_host_cuda"

pytestmark = pytest.mark.skipif(
    not hasattr(ops, "_host_cuda_eval"), reason="extension built without the test-only ops"
)

ORDERS = ("shuffle_first", "shuffle_last")
LAYOUTS = ("nchw", "channels_last")


def _run(*args, **kwargs):
    run_case(FAMILY, *args, namespace=ops, **kwargs)


# Every kernel size and stride in both layouts: C = 40 (channels_last groups of 32 channels
# with a partial second group), odd plane sizes, several warps and blocks.
@pytest.mark.parametrize("k,stride", list(itertools.product((3, 5, 7), (1, 2))))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float64_every_kernel_size_and_stride(k, stride, layout):
    order = ORDERS[(k + stride) % 2]
    _run(2, 40, 9, 7, k, stride, 8, order, layout)


# Planes smaller than the kernel, 1x1 planes, odd sizes with stride 2, C = 1 and C = 33,
# a plane wider than one output tile (NCHW tiles are at most 32 outputs wide), batch 1.
EDGE_SHAPES = [
    (1, 6, 2, 3, 5, 1, 3),
    (2, 6, 1, 1, 3, 1, 3),
    (1, 3, 3, 2, 7, 2, 3),
    (2, 33, 5, 9, 3, 2, 3),
    (1, 1, 4, 4, 3, 1, 1),
    (1, 6, 3, 70, 3, 1, 2),
    (1, 6, 37, 5, 5, 2, 6),
]


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "n{}c{}h{}w{}-k{}s{}-g{}".format(*s))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float64_edge_shapes(shape, layout):
    n, c, h, w, k, stride, groups = shape
    for order in ORDERS:
        _run(n, c, h, w, k, stride, groups, order, layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2), (7, 1)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_and_low_precision(dtype, k, stride, layout):
    _run(2, 40, 8, 9, k, stride, 4, ORDERS[k % 2], layout, dtype=dtype)


# NCHW units of several planes (tiled/tile_plan.h: a tile covering its whole plane stacks
# batch entries of one channel): 7 batch entries of 7x7 planes make blocks of 6 and a last
# block of 1 (the test executors plan blocks for any grid size). The eval output pass
# (tiled/walk_eval.h) packs (plane, column) lanes: 84 planes of 7 columns fill 18 warps and
# 12 lanes of a 19th, the warps straddling planes and channels.
@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_plane_blocks_with_a_partial_last_block(k, dtype):
    _run(7, 12, 7, 7, k, 1, 3, "shuffle_last", "nchw", dtype=dtype)


# The eval output pass's 64-bit offsets, which a GPU runs only for images of 2^31 elements
# and more, forced on small shapes: the same values, bit for bit, as the 32-bit kernels.
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2)])
def test_64_bit_offsets(monkeypatch, layout, k, stride):
    t = make(2, 40, 9, 37, k, torch.float32, layout, seed=3)
    args = (t["w"], t["rm"].float(), t["rv"].float(), t["gamma"].float(), t["beta"].float(), 4, stride, 1e-5, True)
    y32 = ops._host_cuda_eval(t["x"], *args)
    monkeypatch.setenv("SHUFFLENET_FUSED_HOST_RUNNER_INDEX64", "1")
    y64 = ops._host_cuda_eval(t["x"], *args)
    assert torch.equal(y32, y64)
    _run(2, 40, 9, 37, k, stride, 4, "shuffle_last", layout, dtype=torch.float64)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_without_affine(layout):
    _run(2, 12, 6, 7, 3, 2, 3, "shuffle_last", layout, affine=False)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_batch(layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.zeros(0, 6, 5, 5, dtype=torch.float64).contiguous(memory_format=fmt)
    w = torch.ones(6, 1, 3, 3, dtype=torch.float64)
    stats = torch.zeros(6, dtype=torch.float64)
    y = ops._host_cuda_eval(x, w, stats, stats + 1, None, None, 3, 1, 1e-5, False)
    assert y.shape == (0, 6, 5, 5)
    gx, gw, gg, gb = ops._host_cuda_backward(torch.zeros_like(x), x, w, None, stats, stats + 1, 3, 1, False, False)
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w))
    assert torch.equal(gg, torch.zeros(6, dtype=torch.float64)) and torch.equal(gb, gg)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bitwise_equal_to_the_emulator(layout):
    # The emulator runs the same lane work with the same reduction trees: any difference is
    # the CUDA layer (indexing, shuffles, barriers, shared memory).
    emu = torch.ops.shufflenet_fused
    if not hasattr(emu, "_debug_emulate_eval"):
        pytest.skip("extension built without the emulator")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 40, 11, 9, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(40, 1, 5, 5, generator=g)
    gamma, beta = torch.rand(40, generator=g) + 0.5, torch.randn(40, generator=g)
    y, mean, invstd = ops._host_cuda_train(x, w, gamma, beta, 8, 2, 1e-5, True)
    ye, me, ie = emu._debug_emulate_train(x, w, gamma, beta, 8, 2, 1e-5, True)
    assert torch.equal(y, ye) and torch.equal(mean, me) and torch.equal(invstd, ie)
    gy = torch.randn(y.shape, generator=g)
    got = ops._host_cuda_backward(gy, x, w, gamma, mean, invstd, 8, 2, True, True)
    want = emu._debug_emulate_backward(gy, x, w, gamma, mean, invstd, 8, 2, True, True)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k,stride", [(3, 1), (7, 2)])
def test_grid_stride_loops(monkeypatch, layout, k, stride):
    # One block for the warp-unit kernels: each of its 8 warps loops over many units.
    monkeypatch.setenv("SHUFFLENET_FUSED_HOST_RUNNER_GRID_CAP", "1")
    _run(2, 40, 9, 7, k, stride, 8, "shuffle_last", layout)


# The cases scripts/sanitize_host_runner.sh runs under ThreadSanitizer and ASan + UBSan
# (-m sanitizer), in threads mode: every kernel (prep, both conv passes, the three finalize
# kernels, both grad_input kernels) in every dtype and layout, small enough for CI.
SANITIZER_CASES = [
    (torch.float64, "nchw", 3, 1),
    (torch.float64, "channels_last", 5, 2),
    (torch.float32, "nchw", 5, 2),
    (torch.float32, "channels_last", 3, 1),
    (torch.float16, "nchw", 3, 2),
    (torch.bfloat16, "channels_last", 3, 2),
]


@pytest.mark.sanitizer
@pytest.mark.parametrize("dtype,layout,k,stride", SANITIZER_CASES, ids=str)
def test_sanitizer_cases(dtype, layout, k, stride):
    _run(1, 6, 5, 4, k, stride, 3, ORDERS[stride - 1], layout, dtype=dtype)


@pytest.mark.slow
def test_threads_mode(monkeypatch):
    # One OS thread per CUDA thread (the mode the sanitizers run); 1024-thread finalize
    # blocks make it slow, so one small case.
    monkeypatch.setenv("SHUFFLENET_FUSED_HOST_RUNNER", "threads")
    _run(1, 6, 5, 4, 3, 1, 3, "shuffle_last", "nchw")
