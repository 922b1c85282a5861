"""The CUDA kernels against the reference path, on a CUDA device (skipped without one).

Every fused call runs right after the caching allocator has been filled with NaN bytes
(``_poison``), so an output element that no thread writes shows up as a mismatch. The index
math itself is also checked on CPU by tests/test_index_math.py (the emulated kernels); here
the CUDA-only parts are covered: thread mapping, shared memory, shuffles, barriers, vector
loads, streams, autocast, torch.compile, CUDA graphs and determinism.
"""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
import torch.nn.functional as F

import shufflenet_fused as sf
from shufflenet_fused.ops import reference

ops = torch.ops.shufflenet_fused


def _cuda_kernels_built() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("shufflenet_fused::dwconv_bn_eval", "CUDA")


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not _cuda_kernels_built(), reason="extension built without CUDA kernels"),
]

DEV = "cuda"
ORDERS = ("shuffle_first", "shuffle_last")
LOW = (torch.float16, torch.bfloat16)


def _poison():
    """Fill the blocks the caching allocator will hand out next with 0xFF bytes (NaN in every
    float dtype), small pool and large pool."""
    blocks = [torch.full((n,), 255, dtype=torch.uint8, device=DEV) for n in (512, 4096, 65536, 1 << 20) * 8]
    blocks.append(torch.full((256 << 20,), 255, dtype=torch.uint8, device=DEV))
    del blocks


def _make(n, c, h, w, k, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    x = rand(n, c, h, w).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = rand(n, c, h, 2 * w).to(dtype)[..., ::2]
    return {
        "x": x.to(DEV),
        "w": rand(c, 1, k, k).to(dtype).to(DEV),
        "rm": rand(c, lo=-0.5, hi=0.5).to(DEV),
        "rv": rand(c, lo=0.5, hi=1.5).to(DEV),
        "gamma": rand(c, lo=0.5, hi=1.5).to(DEV),
        "beta": rand(c).to(DEV),
        "seed": seed,
    }


def _stat_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _run(fn, t, *, groups, stride, order, training, compute_dtype=None, affine=True, poison=False):
    """Forward + backward of fn (fused or reference); output, gradients, running stats.

    compute_dtype (reference only) upcasts x and w first: the reference of a half/bf16 run is
    the float64 computation on the same rounded inputs."""
    dtype = t["x"].dtype
    sdt = _stat_dtype(dtype)
    x = t["x"]
    w = t["w"]
    if compute_dtype is not None:
        x, w = x.to(compute_dtype), w.to(compute_dtype)
        sdt = compute_dtype
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    rm, rv = t["rm"].to(sdt).clone(), t["rv"].to(sdt).clone()
    gamma = t["gamma"].to(sdt).clone().requires_grad_() if affine else None
    beta = t["beta"].to(sdt).clone().requires_grad_() if affine else None
    if poison:
        _poison()
    y = fn(x, w, rm, rv, gamma, beta, groups=groups, stride=stride, training=training, order=order)
    gen = torch.Generator().manual_seed(t["seed"] + 1)
    gy = (torch.rand(y.shape, generator=gen, dtype=torch.float64) - 0.5).to(dtype).to(DEV)
    if poison:
        _poison()
    y.backward(gy.to(y.dtype))
    return {
        "output": y.detach(), "grad_input": x.grad, "grad_weight": w.grad,
        "grad_bn_weight": gamma.grad if affine else None, "grad_bn_bias": beta.grad if affine else None,
        "running_mean": rm, "running_var": rv,
    }  # fmt: skip


# (rtol, atol relative to the largest reference magnitude) per dtype.
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def _assert_close(got, exp, dtype, what, factor=1.0):
    rtol, atol = TOL[dtype]
    exp = exp.double()
    scale = max(exp.abs().max().item(), 1.0) if exp.numel() else 1.0
    torch.testing.assert_close(got.double(), exp, rtol=rtol * factor, atol=atol * factor * scale,
                               msg=lambda m: f"{what}: {m}")  # fmt: skip


def _compare(case, dtype, training, affine=True, factor=1.0):
    n, c, h, w, k, stride, groups, order, layout = case
    t = _make(n, c, h, w, k, dtype, layout, seed=zlib.crc32(repr(case).encode()) % 1000)
    low = dtype in LOW
    got = _run(sf.shuffle_dwconv_bn, t, groups=groups, stride=stride, order=order, training=training,
               affine=affine, poison=True)  # fmt: skip
    exp = _run(reference.shuffle_dwconv_bn, t, groups=groups, stride=stride, order=order, training=training,
               affine=affine, compute_dtype=torch.float64 if low or dtype == torch.float32 else None)  # fmt: skip
    cl = layout == "channels_last" and not t["x"].is_contiguous()
    fmt = torch.channels_last if cl else torch.contiguous_format
    assert got["output"].dtype == dtype and got["output"].is_contiguous(memory_format=fmt)
    assert got["grad_input"].is_contiguous(memory_format=fmt)
    # Gradients sum over N*H*W: allow a few more roundings than the elementwise output.
    grad_factor = factor * (4.0 if dtype != torch.float64 else 1.0)
    for key, value in got.items():
        if value is None:
            continue
        f = factor if key in ("output", "running_mean", "running_var") else grad_factor
        _assert_close(value, exp[key], dtype, f"{key} ({case}, {dtype}, training={training})", f)


# -------------------------------------------------------------- the matrix ----

SHAPES = [
    (1, 6, 1, 1),
    (2, 6, 1, 1),
    (1, 3, 2, 3),
    (2, 6, 5, 7),
    (4, 12, 14, 14),
    (2, 40, 9, 6),
    (2, 6, 37, 70),
    (1, 6, 131, 5),
    (2, 60, 28, 28),
    (3, 240, 7, 7),
]


def _groups_for(c):
    return {6: 3, 12: 4, 3: 3, 40: 8, 60: 20, 240: 80}[c]


def _matrix(layouts=("nchw", "channels_last")):
    cases = []
    for shape, k, stride, order, layout in itertools.product(SHAPES, (3, 5, 7), (1, 2), ORDERS, layouts):
        n, c, h, w = shape
        cases.append((n, c, h, w, k, stride, _groups_for(c), order, layout))
    return cases


def _id(case):
    return "n{}c{}h{}w{}-k{}s{}-g{}-{}-{}".format(*case)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", _matrix(), ids=_id)
def test_float64_matches_reference(case, training):
    n, c, h, w, k, stride = case[:6]
    if training and n * ((h - 1) // stride + 1) * ((w - 1) // stride + 1) <= 1:
        pytest.skip("training needs more than one value per channel")
    _compare(case, torch.float64, training)


FAST_CASES = [
    case
    for case in _matrix(("nchw", "channels_last", "strided"))
    if case[4] == 3 or (case[0], case[1]) in ((2, 40), (2, 60))
]


# float32 on every layout; bfloat16 (the training dtype) on both kernel layouts; float16 on
# channels_last (the autocast case). A strided input runs the NCHW kernel after one copy.
LOW_PRECISION_CASES = [
    (case, dtype)
    for case in FAST_CASES
    for dtype in (torch.float32, torch.bfloat16, torch.float16)
    if dtype == torch.float32
    or (dtype == torch.bfloat16 and case[-1] != "strided")
    or (dtype == torch.float16 and case[-1] == "channels_last")
]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case,dtype", LOW_PRECISION_CASES, ids=lambda v: _id(v) if isinstance(v, tuple) else str(v))
def test_float32_and_low_precision_match_reference(case, dtype, training):
    n, c, h, w, k, stride = case[:6]
    if training and n * ((h - 1) // stride + 1) * ((w - 1) // stride + 1) <= 1:
        pytest.skip("training needs more than one value per channel")
    _compare(case, dtype, training)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 6, 12])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_any_groups(groups, layout):
    for order, training in itertools.product(ORDERS, (False, True)):
        _compare((2, 12, 9, 10, 3, 1, groups, order, layout), torch.float64, training)
        _compare((2, 12, 9, 10, 5, 2, groups, order, layout), torch.float32, training)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_without_affine(layout):
    for training in (False, True):
        _compare((2, 6, 7, 9, 3, 1, 3, "shuffle_last", layout), torch.float64, training, affine=False)
        _compare((2, 6, 7, 9, 3, 2, 2, "shuffle_first", layout), torch.bfloat16, training, affine=False)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_shufflenet_layers_bf16_and_fp32(layout):
    # The depthwise layers of ShuffleNetV1 1.0x g3 (mid channels, input size, stride), batch 8.
    for c, h, s in ((60, 56, 2), (60, 28, 1), (120, 28, 2), (120, 14, 1), (240, 14, 2), (240, 7, 1)):
        for dtype, training in itertools.product((torch.float32, torch.bfloat16), (False, True)):
            _compare((8, c, h, h, 3, s, c // 3, "shuffle_last", layout), dtype, training)


def test_emulator_agrees_with_cuda():
    # The CPU emulation of the kernels (tests/test_index_math.py) and the kernels themselves.
    if not hasattr(ops, "_debug_emulate_eval"):
        pytest.skip("extension built without the debug ops")
    for layout, k, stride, order in itertools.product(("nchw", "channels_last"), (3, 7), (1, 2), ORDERS):
        t = _make(2, 40, 11, 13, k, torch.float64, layout, seed=5)
        sl = order == "shuffle_last"
        args = (t["w"], t["rm"], t["rv"], t["gamma"], t["beta"], 8, stride, 1e-5, sl)
        y = ops.dwconv_bn_eval(t["x"], *args)
        ye = ops._debug_emulate_eval(t["x"].cpu(), *(a.cpu() if torch.is_tensor(a) else a for a in args))
        torch.testing.assert_close(y.cpu(), ye, rtol=1e-12, atol=1e-12)
        y, m, i = ops.dwconv_bn_train(t["x"], t["w"], t["gamma"], t["beta"], 8, stride, 1e-5, sl)
        ye, me, ie = ops._debug_emulate_train(t["x"].cpu(), t["w"].cpu(), t["gamma"].cpu(), t["beta"].cpu(), 8,
                                              stride, 1e-5, sl)  # fmt: skip
        for a, b in ((y, ye), (m, me), (i, ie)):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-12, atol=1e-12)
        gy = torch.randn_like(y)
        for training in (False, True):
            got = ops.dwconv_bn_backward(gy, t["x"], t["w"], t["gamma"], m, i, 8, stride, sl, training)
            emu = ops._debug_emulate_backward(gy.cpu(), t["x"].cpu(), t["w"].cpu(), t["gamma"].cpu(), m.cpu(),
                                              i.cpu(), 8, stride, sl, training)  # fmt: skip
            for a, b in zip(got, emu, strict=True):
                torch.testing.assert_close(a.cpu(), b, rtol=1e-11, atol=1e-11)


# ------------------------------------------------------- autograd / opcheck ----


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("k,stride,order", [(3, 1, "shuffle_first"), (3, 2, "shuffle_last"), (5, 2, "shuffle_first")])
def test_gradcheck_float64(layout, training, k, stride, order):
    t = _make(2, 6, 5, 6, k, torch.float64, layout, seed=3)
    rm, rv = t["rm"].clone(), t["rv"].clone()

    def f(x, w, gamma, beta):
        return sf.shuffle_dwconv_bn(x, w, rm.clone(), rv.clone(), gamma, beta, groups=3, stride=stride,
                                    training=training, order=order)  # fmt: skip

    inputs = tuple(t[key].detach().clone().requires_grad_() for key in ("x", "w", "gamma", "beta"))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def _op_samples(dtype, layout):
    t = _make(2, 12, 9, 10, 3, dtype, layout, seed=4)
    sdt = _stat_dtype(dtype)
    gamma, beta = t["gamma"].to(sdt), t["beta"].to(sdt)
    rm, rv = t["rm"].to(sdt), t["rv"].to(sdt)
    y, mean, invstd = ops.dwconv_bn_train(t["x"], t["w"], gamma, beta, 4, 2, 1e-5, True)
    gy = torch.randn_like(y)
    rg = lambda v: v.detach().clone().requires_grad_()  # noqa: E731
    return {
        "dwconv_bn_eval": (rg(t["x"]), rg(t["w"]), rm, rv, rg(gamma), rg(beta), 4, 2, 1e-5, True),
        "dwconv_bn_train": (rg(t["x"]), rg(t["w"]), rg(gamma), None, 4, 1, 1e-5, False),
        "dwconv_bn_backward": (gy, t["x"], t["w"], gamma, mean, invstd, 4, 2, True, True),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("name", ["dwconv_bn_eval", "dwconv_bn_train", "dwconv_bn_backward"])
def test_opcheck(name, layout, dtype):
    args = _op_samples(dtype, layout)[name]
    # All of opcheck's checks in float32; bfloat16 skips the (slow) AOT-dispatch compile.
    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if dtype != torch.float32:
        tests = tests[:3]
    torch.library.opcheck(getattr(ops, name).default, args, test_utils=tests)


# ------------------------------------------------- compile, graphs, determinism ----


def _step(x, w, rm, rv, gamma, beta, training):
    y = sf.shuffle_dwconv_bn(x, w, rm, rv, gamma, beta, groups=20, stride=1, training=training,
                             order="shuffle_last")  # fmt: skip
    return (y.float() * torch.linspace(-1, 1, y.shape[-1], device=y.device)).sum()


def _leaves(dtype, layout, seed=0):
    t = _make(4, 60, 14, 14, 3, dtype, layout, seed)
    return [t["x"].requires_grad_(), t["w"].requires_grad_(), t["rm"].float().clone(), t["rv"].float().clone(),
            t["gamma"].float().requires_grad_(), t["beta"].float().requires_grad_()]  # fmt: skip


def _grads_of(fn, leaves, training):
    for v in leaves:
        v.grad = None
    loss = fn(*leaves, training)
    loss.backward()
    return (
        [loss.detach()] + [v.grad.clone() for v in leaves if v.requires_grad] + [leaves[2].clone(), leaves[3].clone()]
    )


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_fullgraph(mode):
    torch._dynamo.reset()
    compiled = torch.compile(_step, fullgraph=True, mode=mode)
    for training in (False, True):
        eager_leaves = _leaves(torch.float32, "channels_last")
        comp_leaves = _leaves(torch.float32, "channels_last")
        expected = _grads_of(_step, eager_leaves, training)
        for _ in range(3):  # reduce-overhead records a graph on a later call
            comp_leaves = _leaves(torch.float32, "channels_last")
            got = _grads_of(compiled, comp_leaves, training)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_graph_capture_and_replay(layout):
    t = _make(4, 60, 14, 14, 3, torch.float32, layout, seed=7)
    x = t["x"].clone()
    w = t["w"].clone().requires_grad_()
    gamma, beta = t["gamma"].float().clone().requires_grad_(), t["beta"].float().clone().requires_grad_()
    rm, rv = t["rm"].float().clone(), t["rv"].float().clone()
    xg = x.clone().requires_grad_()

    def step():
        y_eval = sf.shuffle_dwconv_bn(xg, w, rm, rv, gamma, beta, groups=20, training=False, order="shuffle_last")
        y_train = sf.shuffle_dwconv_bn(xg, w, rm, rv, gamma, beta, groups=20, training=True, order="shuffle_last")
        (y_eval.sum() + (y_train * y_train).sum()).backward()
        return y_eval, y_train

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up outside the graph, as CUDA graphs require
        for _ in range(2):
            step()
            for v in (xg, w, gamma, beta):
                v.grad = None
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y_eval, y_train = step()
    # Replay with new data in the captured input, compare with an eager run.
    x_new = _make(4, 60, 14, 14, 3, torch.float32, layout, seed=8)["x"]
    rm0, rv0 = rm.clone(), rv.clone()
    with torch.no_grad():
        xg.copy_(x_new)
    for v in (xg, w, gamma, beta):
        if v.grad is not None:
            v.grad.zero_()
    graph.replay()
    torch.cuda.synchronize()
    got = [y_eval.clone(), y_train.clone(), xg.grad.clone(), w.grad.clone(), gamma.grad.clone(), rm.clone()]

    rm.copy_(rm0)
    rv.copy_(rv0)
    xe = x_new.clone().requires_grad_()
    we, ge, be = (
        w.detach().clone().requires_grad_(),
        gamma.detach().clone().requires_grad_(),
        beta.detach().clone().requires_grad_(),
    )
    ye = sf.shuffle_dwconv_bn(xe, we, rm, rv, ge, be, groups=20, training=False, order="shuffle_last")
    yt = sf.shuffle_dwconv_bn(xe, we, rm, rv, ge, be, groups=20, training=True, order="shuffle_last")
    (ye.sum() + (yt * yt).sum()).backward()
    for a, b in zip(got, [ye, yt, xe.grad, we.grad, ge.grad, rm], strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bitwise_deterministic(dtype, layout):
    results = []
    for _ in range(3):
        t = _make(8, 60, 28, 28, 3, dtype, layout, seed=9)
        _poison()
        results.append(_run(sf.shuffle_dwconv_bn, t, groups=20, stride=1, order="shuffle_last", training=True))
        results.append(_run(sf.shuffle_dwconv_bn, t, groups=20, stride=2, order="shuffle_first", training=False))
    for key in results[0]:
        for r in results[2::2]:
            assert torch.equal(r[key], results[0][key]), key
        for r in results[3::2]:
            assert torch.equal(r[key], results[1][key]), key


# ------------------------------------------------------------------ autocast ----


@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_autocast(amp_dtype, layout):
    t = _make(4, 60, 14, 14, 3, torch.float32, layout, seed=11)
    for training in (False, True):
        leaves = {k: t[k].clone().requires_grad_() for k in ("x", "w", "gamma", "beta")}
        rm, rv = t["rm"].float().clone(), t["rv"].float().clone()
        with torch.autocast("cuda", dtype=amp_dtype):
            y = sf.shuffle_dwconv_bn(leaves["x"], leaves["w"], rm, rv, leaves["gamma"], leaves["beta"], groups=20,
                                     training=training, order="shuffle_last")  # fmt: skip
        assert y.dtype == amp_dtype
        assert rm.dtype == torch.float32 and rv.dtype == torch.float32
        y.float().square().sum().backward()
        for key, v in leaves.items():
            assert v.grad is not None and v.grad.dtype == torch.float32, key
        # Same as the fused op on inputs cast by hand.
        rm2, rv2 = t["rm"].float().clone(), t["rv"].float().clone()
        y2 = sf.shuffle_dwconv_bn(t["x"].to(amp_dtype), t["w"].to(amp_dtype), rm2, rv2, t["gamma"].float(),
                                  t["beta"].float(), groups=20, training=training, order="shuffle_last")  # fmt: skip
        assert torch.equal(y.detach(), y2)
        torch.testing.assert_close(rm, rm2)
        # And close to the reference under autocast.
        rm3, rv3 = t["rm"].float().clone(), t["rv"].float().clone()
        with torch.autocast("cuda", dtype=amp_dtype):
            y3 = reference.shuffle_dwconv_bn(t["x"], t["w"], rm3, rv3, t["gamma"].float(), t["beta"].float(),
                                             groups=20, training=training, order="shuffle_last")  # fmt: skip
        _assert_close(y.detach(), y3.float(), amp_dtype, "autocast output", factor=2.0)


def test_autocast_leaves_float64_alone():
    t = _make(2, 6, 5, 5, 3, torch.float64, "nchw")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = sf.shuffle_dwconv_bn(t["x"], t["w"], t["rm"], t["rv"], groups=3)
    assert y.dtype == torch.float64


# ------------------------------------------------------------- edge cases ----


def test_empty_batch():
    x = torch.zeros(0, 6, 5, 5, device=DEV)
    w = torch.ones(6, 1, 3, 3, device=DEV, requires_grad=True)
    rm, rv = torch.zeros(6, device=DEV), torch.ones(6, device=DEV)
    y = sf.shuffle_dwconv_bn(x.requires_grad_(), w, rm, rv, groups=3)
    assert y.shape == (0, 6, 5, 5)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_rejects_mixed_devices():
    x = torch.zeros(1, 6, 5, 5, device=DEV)
    w = torch.zeros(6, 1, 3, 3, device=DEV)
    s = torch.zeros(6, device=DEV)
    with pytest.raises(RuntimeError, match="running_mean is on"):
        ops.dwconv_bn_eval(x, w, s.cpu(), s, None, None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="weight is on"):
        ops.dwconv_bn_train(x, w.cpu(), None, None, 3, 1, 1e-5, False)
    if torch.cuda.device_count() > 1:
        with pytest.raises(RuntimeError, match="is on"):
            ops.dwconv_bn_eval(x, w.to("cuda:1"), s, s, None, None, 3, 1, 1e-5, False)


def test_non_default_stream_and_device_guard():
    t = _make(2, 12, 9, 10, 3, torch.float32, "channels_last", seed=12)
    expected = ops.dwconv_bn_eval(t["x"], t["w"], t["rm"].float(), t["rv"].float(), None, None, 4, 1, 1e-5, False)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = ops.dwconv_bn_eval(t["x"], t["w"], t["rm"].float(), t["rv"].float(), None, None, 4, 1, 1e-5, False)
    torch.cuda.current_stream().wait_stream(s)
    assert torch.equal(got, expected)


# --------------------------------------------------------------- big tensors ----


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_more_than_2_31_elements(layout):
    shape = (64, 32, 1024, 1025)  # 2,149,580,800 elements > 2**31
    numel = 64 * 32 * 1024 * 1025
    # x, y, grad_x in bf16 and the float32 dz workspace of the backward, plus slack.
    need = numel * (2 + 2 + 2 + 2 + 4) + (4 << 30)
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / 2**30:.0f} GiB of free GPU memory, {free / 2**30:.0f} GiB free")
    g = torch.Generator(device=DEV).manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.empty(shape, dtype=torch.bfloat16, device=DEV, memory_format=fmt)
    x.uniform_(-1, 1, generator=g)
    c = shape[1]
    w = torch.rand(c, 1, 3, 3, generator=g, device=DEV).to(torch.bfloat16)
    rm, rv = torch.zeros(c, device=DEV), torch.ones(c, device=DEV)
    gamma, beta = torch.rand(c, device=DEV) + 0.5, torch.rand(c, device=DEV)
    y = ops.dwconv_bn_eval(x, w, rm, rv, gamma, beta, 8, 1, 1e-5, True)
    # The last image lives past element 2**31.
    ref = reference.shuffle_dwconv_bn(x[-1:].float(), w.float(), rm, rv, gamma, beta, groups=8, order="shuffle_last")
    _assert_close(y[-1:], ref, torch.bfloat16, "output past 2**31")
    gy = torch.ones_like(y)
    del y
    gx, gw, gg, gb = ops.dwconv_bn_backward(gy, x, w, gamma, rm, torch.rsqrt(rv + 1e-5), 8, 1, True, False)
    xl = x[-1:].float().requires_grad_()
    reference.shuffle_dwconv_bn(xl, w.float(), rm, rv, gamma, beta, groups=8, order="shuffle_last").sum().backward()
    _assert_close(gx[-1:], xl.grad, torch.bfloat16, "grad_input past 2**31")
    del gx, gy
    _, mean, invstd = ops.dwconv_bn_train(x, w, gamma, beta, 8, 1, 1e-5, True)
    # Per-channel mean of the conv output, image by image in float32.
    total = torch.zeros(c, dtype=torch.float64, device=DEV)
    for i in range(shape[0]):
        total += F.conv2d(x[i : i + 1].float(), w.float(), None, 1, 1, 1, c).sum(dim=(0, 2, 3)).double()
    torch.testing.assert_close(mean.double(), total / (shape[0] * shape[2] * shape[3]), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(invstd).all()
