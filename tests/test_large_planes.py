"""Large NCHW planes: the eval op, the training forward and the backward run them in tiles
(csrc/cpu/plane_tiles.h) with bounded memory.

Planes of more than 2^19 input pixels (eval) or 2^21 (training, backward) are computed tile
by tile, each tile the conv of the input window it reads (halo included); rows wider than
2^14 outputs are cut into columns too. The training forward computes each channel's conv
twice that way (statistics, output); the backward twice in training (sums, dz), with a
stride-1 conv of the (dilated) dz for the input's gradient. Checked here: the tiles give the
reference's values, statistics, gradients and NaN/Inf pattern at every ISA level, kernel
size, stride, dtype and order, across row and column tile borders; and what a call needs
beyond its inputs and outputs, at its peak and kept after it returns, stays within the bound
the README states (a fresh process per case, reading its RSS and peak RSS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import shufflenet_fused as sf

TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}

# (N, C, H, W): row bands (730 x 731 > 2^19 pixels), and rows wider than 2^14 outputs (column tiles).
SHAPES = [(1, 3, 730, 731), (1, 2, 33, 16390)]


def _case(shape, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    wt = torch.randn(c, 1, k, k, generator=g, dtype=torch.float64).to(dtype)
    rm = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    rv = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    gamma = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    beta = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    return x, wt, rm, rv, gamma, beta


def _reference(x, wt, rm, rv, gamma, beta, **kw):
    args = [t.double() for t in (x, wt, rm, rv, gamma, beta)]
    return sf.reference.shuffle_dwconv_bn(*args, training=False, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=["row_bands", "column_tiles"])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2)])
def test_tiled_eval_matches_the_reference(cpu_isa, shape, k, stride):
    x, wt, rm, rv, gamma, beta = _case(shape, k, torch.float32, seed=k + stride)
    kw = dict(groups=shape[1], stride=stride, order="shuffle_last")
    got = sf.shuffle_dwconv_bn(x, wt, rm, rv, gamma, beta, training=False, **kw)
    torch.testing.assert_close(got.double(), _reference(x, wt, rm, rv, gamma, beta, **kw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("order", ["shuffle_first", "shuffle_last"])
def test_tiled_eval_dtypes_and_orders(cpu_isa, dtype, order):
    shape = (2, 3, 512, 1030)
    x, wt, rm, rv, gamma, beta = _case(shape, 3, dtype, seed=5)
    kw = dict(groups=3, stride=1, order=order)
    got = sf.shuffle_dwconv_bn(x, wt, rm, rv, gamma, beta, training=False, **kw)
    want = _reference(x, wt, rm, rv, gamma, beta, **kw)
    torch.testing.assert_close(got.double(), want, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("stride", [1, 2])
def test_tiled_eval_keeps_the_nan_inf_pattern_at_tile_borders(cpu_isa, stride):
    shape = (1, 2, 33, 16390)
    x, wt, rm, rv, gamma, beta = _case(shape, 3, torch.float32, seed=9)
    # Around the column tile borders (every 4096 outputs) and the first/last rows and columns.
    for col in (0, 4095 * stride, 4096 * stride, 4096 * stride + 1, 8192 * stride - 1, 16389):
        x[0, 0, 5, col] = float("nan")
        x[0, 1, 32, col] = float("inf")
        x[0, 1, 0, col] = -float("inf")
    kw = dict(groups=1, stride=stride, order="shuffle_last")
    got = sf.shuffle_dwconv_bn(x, wt, rm, rv, gamma, beta, training=False, **kw)
    want = _reference(x, wt, rm, rv, gamma, beta, **kw)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.isinf(), want.isinf())
    finite = want.isfinite()
    torch.testing.assert_close(got.double()[finite], want[finite], rtol=1e-4, atol=1e-4)


def _train_reference(x, wt, gamma, beta, stride, eps=1e-5):
    """Output, batch mean and invstd of conv + batch-statistics BN in float64 (groups = C,
    shuffle_last: the conv's channels are the output's)."""
    k = wt.shape[-1]
    z = torch.nn.functional.conv2d(x.double(), wt.double(), stride=stride, padding=k // 2, groups=x.shape[1])
    mean = z.mean(dim=(0, 2, 3))
    invstd = (z.var(dim=(0, 2, 3), unbiased=False) + eps).rsqrt()
    y = (z - mean[:, None, None]) * invstd[:, None, None] * gamma.double()[:, None, None] + beta.double()[:, None, None]
    return y, mean, invstd


# The training forward tiles planes above 2^21 pixels, and half-type batches whose channel's
# conv output (float32) would pass 16 MB: row bands, column tiles, many images of 2 tiles.
TRAIN_CASES = [
    ((1, 2, 1500, 1500), torch.float32),
    ((1, 2, 1500, 1500), torch.bfloat16),
    ((1, 2, 129, 16390), torch.float64),
    ((20, 2, 460, 460), torch.bfloat16),
]


@pytest.mark.parametrize("shape,dtype", TRAIN_CASES, ids=["bands-f32", "bands-bf16", "columns-f64", "images-bf16"])
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2), (7, 1)])
def test_tiled_train_forward_matches_the_reference(cpu_isa, shape, k, stride, dtype):
    from shufflenet_fused.ops._library import ops

    x, wt, _, _, gamma, beta = _case(shape, k, dtype, seed=3 * k + stride)
    y, mean, invstd = ops.dwconv_bn_train(x, wt, gamma, beta, shape[1], stride, 1e-5, True)
    want_y, want_mean, want_invstd = _train_reference(x, wt, gamma, beta, stride)
    stat_tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(mean.double(), want_mean, rtol=stat_tol, atol=stat_tol)
    torch.testing.assert_close(invstd.double(), want_invstd, rtol=stat_tol, atol=stat_tol)
    torch.testing.assert_close(y.double(), want_y, rtol=TOL[dtype], atol=TOL[dtype])


def test_tiled_train_forward_nan_inf_pattern(cpu_isa):
    """A NaN in a plane makes its channel's statistics and output NaN, as the reference; an
    Inf in another channel makes its mean Inf and its output NaN; the other channel is finite."""
    from shufflenet_fused.ops._library import ops

    x, wt, _, _, gamma, beta = _case((1, 3, 1500, 1500), 3, torch.float32, seed=4)
    x[0, 0, 300, 1499] = float("nan")
    x[0, 1, 1499, 5] = float("inf")
    y, mean, invstd = ops.dwconv_bn_train(x, wt, gamma, beta, 3, 1, 1e-5, True)
    want_y, want_mean, _ = _train_reference(x, wt, gamma, beta, 1)
    assert torch.equal(y.isnan(), want_y.isnan()) and torch.equal(y.isinf(), want_y.isinf())
    assert torch.equal(mean.isnan(), want_mean.isnan()) and torch.equal(mean.isinf(), want_mean.isinf())
    assert want_y[0, 2].isfinite().all()
    torch.testing.assert_close(y[0, 2].double(), want_y[0, 2], rtol=1e-4, atol=1e-4)


def _on_1_and_2_threads(call):
    """[call() on 1 thread, call() on 2 threads]; torch's thread count restored."""
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(call())
        return results
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_train_forward_is_the_same_on_any_thread_count(channels):
    """Each channel's statistics are reduced by one thread in a fixed order, tiles included:
    bitwise the same output and statistics on 1 and 2 threads (also with one channel, where
    the tasks run outside a parallel region)."""
    from shufflenet_fused.ops._library import ops

    x, wt, _, _, gamma, beta = _case((1, channels, 1500, 1500), 3, torch.float32, seed=6)
    outputs = _on_1_and_2_threads(lambda: ops.dwconv_bn_train(x, wt, gamma, beta, channels, 1, 1e-5, True))
    for a, b in zip(*outputs, strict=True):
        assert torch.equal(a, b)


# The backward runs in tiles on the same planes, and on batches whose channel's z and dz
# would pass 64 MB (csrc/cpu/backward_tiles.cpp). Gradients through the public API (its
# forward tiled too) against float64 autograd of the reference; each reference is computed
# once for every ISA.
BACKWARD_CASES = [
    ((1, 2, 1500, 1500), torch.float32, True),
    ((1, 2, 1500, 1500), torch.bfloat16, True),
    ((1, 2, 129, 16390), torch.float64, True),
    ((40, 1, 460, 460), torch.bfloat16, True),
    ((1, 2, 1500, 1500), torch.float32, False),
    ((1, 2, 129, 16390), torch.float64, False),
]
GRAD_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2}
_backward_references: dict = {}


def _grads(fn, args, gy, training, **kw):
    leaves = [t.detach().clone().requires_grad_(i in (0, 1, 4, 5)) for i, t in enumerate(args)]
    y = fn(*leaves, training=training, **kw)
    y.backward(gy.to(y.dtype))
    return [leaves[i].grad for i in (0, 1, 4, 5)]


def _backward_case(shape, dtype, k, stride, seed):
    args = _case(shape, k, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    n, c, h, w = shape
    gy = torch.randn(n, c, (h - 1) // stride + 1, (w - 1) // stride + 1, generator=g, dtype=torch.float64).to(dtype)
    return args, gy


@pytest.mark.parametrize(
    "shape,dtype,training",
    BACKWARD_CASES,
    ids=["bands-f32", "bands-bf16", "columns-f64", "images-bf16", "bands-f32-eval", "columns-f64-eval"],
)
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2), (7, 1)])
def test_tiled_backward_matches_the_reference(cpu_isa, shape, dtype, training, k, stride):
    args, gy = _backward_case(shape, dtype, k, stride, seed=5 * k + stride)
    kw = dict(groups=shape[1], stride=stride, order="shuffle_last")
    key = (shape, dtype, training, k, stride)
    if key not in _backward_references:
        _backward_references[key] = _grads(sf.reference.shuffle_dwconv_bn, [t.double() for t in args],
                                           gy.double(), training, **kw)  # fmt: skip
    got = _grads(sf.shuffle_dwconv_bn, args, gy, training, **kw)
    for name, a, b in zip(("x", "weight", "bn_weight", "bn_bias"), got, _backward_references[key], strict=True):
        err = ((a.double() - b).abs().max() / b.abs().max()).item()
        assert err <= GRAD_TOL[dtype], f"{name}.grad: max error {err:.1e} of its largest value"


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_tiled_backward_keeps_the_nan_inf_pattern_at_tile_borders(cpu_isa, stride, training):
    """NaN/Inf in the input and in the output's gradient around the column tile borders:
    with frozen statistics x's NaN/Inf stays out of x.grad (as the reference), in training it
    spreads over its channel; gy's spreads as the reference's."""
    shape = (1, 3, 129, 16390)
    args, gy = _backward_case(shape, torch.float32, 3, stride, seed=11)
    x = args[0]
    for col in (0, 4095 * stride, 4096 * stride, 4096 * stride + 1, 8192 * stride - 1, 16389):
        x[0, 0, 5, col] = float("nan")
        x[0, 0, 128, col] = float("inf")
        gy[0, 1, 0, col // stride] = float("inf")
        gy[0, 1, 64 // stride, col // stride] = -float("inf")
    kw = dict(groups=3, stride=stride, order="shuffle_first")
    got = _grads(sf.shuffle_dwconv_bn, args, gy, training, **kw)
    want = _grads(sf.reference.shuffle_dwconv_bn, [t.double() for t in args], gy.double(), training, **kw)
    for name, a, b in zip(("x", "weight", "bn_weight", "bn_bias"), got, want, strict=True):
        assert torch.equal(a.isnan(), b.isnan()), f"{name}.grad: NaN pattern"
        assert torch.equal(a.isinf(), b.isinf()), f"{name}.grad: Inf pattern"
        finite = b.isfinite()
        torch.testing.assert_close(a.double()[finite], b[finite], rtol=1e-4, atol=1e-4 * b[finite].abs().max().item())
    assert want[0][0, 2].isfinite().all()  # a channel that neither reaches


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_backward_is_the_same_on_any_thread_count(channels):
    """Each channel's sums are reduced by one thread in a fixed order: bitwise the same
    gradients on 1 and 2 threads."""
    from shufflenet_fused.ops._library import ops

    args, gy = _backward_case((1, channels, 1500, 1500), torch.float32, 3, 1, seed=6)
    x, wt, _, _, gamma, beta = args

    def forward_and_backward():
        _, mean, invstd = ops.dwconv_bn_train(x, wt, gamma, beta, channels, 1, 1e-5, True)
        return ops.dwconv_bn_backward(gy, x, wt, gamma, mean, invstd, channels, 1, True, True)

    grads = _on_1_and_2_threads(forward_and_backward)
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


# Per worker thread, what an eval call, a training forward or a backward may use beyond its
# inputs and outputs, at its peak and kept after it returns (README "Memory"): 16 MB of kept
# windowed plans plus a few tile buffers.
BOUND_MB_PER_THREAD = 24
THREADS = 2

PROBE = textwrap.dedent(
    """
    import json, sys
    import torch
    import shufflenet_fused  # noqa: F401

    def status(field):  # bytes
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

    n, c, h, w, k, stride = map(int, sys.argv[1:7])
    dtype = getattr(torch, sys.argv[7])
    torch.set_num_threads(int(sys.argv[8]))
    mode = sys.argv[9]
    ops = torch.ops.shufflenet_fused
    x = torch.empty(n, c, h, w, dtype=dtype).uniform_(-1, 1)
    wt = torch.empty(c, 1, k, k, dtype=dtype).uniform_(-1, 1)
    rm, rv = torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype)

    def prepare(x):  # the backward's other inputs, made before the measured call
        if mode != "backward":
            return (x,)
        y, mean, invstd = ops.dwconv_bn_train(x, wt, None, None, 1, stride, 1e-5, False)
        return x, y.uniform_(-1, 1), mean, invstd

    def call(x, *extra):
        if mode == "train":
            return ops.dwconv_bn_train(x, wt, None, None, 1, stride, 1e-5, False)
        if mode == "backward":
            gy, mean, invstd = extra
            return ops.dwconv_bn_backward(gy, x, wt, None, mean, invstd, 1, stride, False, True)
        return (ops.dwconv_bn_eval(x, wt, rm, rv, None, None, 1, stride, 1e-5, False),)

    call(*prepare(x[:, :, :8, :8].contiguous()))
    args = prepare(x)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    outputs = call(*args)
    out = sum(t.numel() * t.element_size() for t in outputs)
    print(json.dumps(dict(peak=(status("VmHWM") - before - out) / 2**20,
                          kept=(status("VmRSS") - before - out) / 2**20)))
    """
)


NO_ASAN = pytest.mark.skipif(
    "asan" in os.environ.get("LD_PRELOAD", ""), reason="AddressSanitizer's shadow memory is in the RSS"
)


def _probe_mb(case, isa, mode):
    """(peak, kept) MB of one call beyond its inputs and outputs, in a fresh process."""
    from conftest import CPU_ISAS

    from shufflenet_fused.ops._library import ops

    if CPU_ISAS.index(isa) > CPU_ISAS.index(ops._cpu_isa("auto")):
        pytest.skip(f"this CPU does not support {isa}")
    env = dict(os.environ, SHUFFLENET_FUSED_CPU_ISA=isa)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, case), str(THREADS), mode],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    mb = json.loads(proc.stdout.strip().splitlines()[-1])
    return mb["peak"], mb["kept"]


@NO_ASAN
@pytest.mark.parametrize(
    "case",
    [
        (1, 2, 4500, 4500, 3, 1, "float32"),  # AVX-512: windowed, stride 1
        (1, 2, 4500, 4500, 7, 1, "float32"),  # kept lane masks: 6 bytes per pixel, untiled
        (1, 2, 4500, 4500, 5, 2, "float32"),  # staged (flat stack) on every ISA
        (1, 2, 4500, 4500, 3, 1, "bfloat16"),
        (1, 1, 40, 300000, 3, 1, "float32"),  # column tiles
    ],
    ids=lambda c: "x".join(map(str, c)),
)
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("mode", ["eval", "train", "backward"])
def test_memory_is_bounded_per_thread(case, isa, mode):
    peak, kept = _probe_mb(case, isa, mode)
    bound = BOUND_MB_PER_THREAD * THREADS
    assert peak <= bound, f"peak {peak:.1f} MB beyond inputs and outputs (bound {bound} MB)"
    assert kept <= bound, f"{kept:.1f} MB kept after the call (bound {bound} MB)"


# Just below the sizes that run in tiles the untiled backward keeps z and dz of a channel (up
# to 64 MB together) and stages planes of up to 2^21 pixels: its own, larger bound (README
# "Memory"), freed when the call returns.
UNTILED_BACKWARD_BOUND_MB_PER_THREAD = 96


@NO_ASAN
@pytest.mark.parametrize(
    "case",
    [(1, 2, 1448, 1448, 3, 1, "float32"), (8, 2, 1024, 1024, 3, 1, "float32")],
    ids=lambda c: "x".join(map(str, c)),
)
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_untiled_backward_memory_is_bounded_per_thread(case, isa):
    peak, kept = _probe_mb(case, isa, "backward")
    bound = UNTILED_BACKWARD_BOUND_MB_PER_THREAD * THREADS
    assert peak <= bound, f"peak {peak:.1f} MB beyond inputs and outputs (bound {bound} MB)"
    assert kept <= BOUND_MB_PER_THREAD * THREADS, f"{kept:.1f} MB kept after the call"
