"""One case of the CUDA backend run on the CPU, against the float64 reference.

Two op families run the CUDA backend without a GPU, with the schemas of the real ops:
``_debug_emulate_*`` (csrc/tiled/emulator_test_ops.cpp: the lane work, lane after lane) and
``_host_cuda_*`` (csrc/cuda/host/: the CUDA kernels themselves on host threads or fibers).
:func:`run_case` runs the eval forward, the eval backward, the training forward (output,
mean, invstd) and the training backward of one family and compares each result with the
reference path in float64.
"""

from __future__ import annotations

import torch

from shufflenet_fused.ops import reference

ops = torch.ops.shufflenet_fused

# A few units in the last place of each dtype's output (inputs are rounded to the dtype
# first, so the reference sees the same values).
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=2e-5, atol=2e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}


def make(n, c, h, w, k, dtype, layout, seed):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    x = rand(n, c, h, w)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = rand(n, c, h, 2 * w)[..., ::2]
    return {
        "x": x.to(dtype),
        "w": rand(c, 1, k, k).to(dtype),
        "rm": rand(c, lo=-0.5, hi=0.5),
        "rv": rand(c, lo=0.5, hi=1.5),
        "gamma": rand(c, lo=0.5, hi=1.5),
        "beta": rand(c),
    }


def _reference(t, *, groups, stride, order, training, affine, grad_seed=1):
    """Reference output, running stats after one step and all gradients, in float64."""
    x = t["x"].double().detach().requires_grad_()
    w = t["w"].double().detach().requires_grad_()
    gamma = t["gamma"].clone().requires_grad_() if affine else None
    beta = t["beta"].clone().requires_grad_() if affine else None
    rm, rv = t["rm"].clone(), t["rv"].clone()
    y = reference.shuffle_dwconv_bn(x, w, rm, rv, gamma, beta, groups=groups, stride=stride,
                                    training=training, order=order)  # fmt: skip
    gy = torch.rand(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64) - 0.5
    gy = gy.to(t["x"].dtype).double()  # what the op under test receives
    y.backward(gy)
    return {
        "y": y.detach(), "gy": gy, "gx": x.grad, "gw": w.grad,
        "ggamma": None if gamma is None else gamma.grad, "gbeta": None if beta is None else beta.grad,
    }  # fmt: skip


def check(got, expected, dtype, what):
    torch.testing.assert_close(got.double(), expected.double(), **TOLERANCES[dtype], msg=lambda m: f"{what}: {m}")


def _check_grads(grads, ref, dtype, mode, affine):
    gx, gw, gg, gb = grads
    check(gx, ref["gx"], dtype, f"{mode} grad_input")
    check(gw, ref["gw"], dtype, f"{mode} grad_weight")
    if affine:
        check(gg, ref["ggamma"], dtype, f"{mode} grad_bn_weight")
        check(gb, ref["gbeta"], dtype, f"{mode} grad_bn_bias")


def run_case(
    family, n, c, h, w, k, stride, groups, order, layout, dtype=torch.float64, affine=True, seed=0, namespace=ops
):
    """``family``: ``"_debug_emulate"`` or ``"_host_cuda"``, looked up in ``namespace``."""
    op_eval = getattr(namespace, f"{family}_eval")
    op_train = getattr(namespace, f"{family}_train")
    op_backward = getattr(namespace, f"{family}_backward")
    t = make(n, c, h, w, k, dtype, layout, seed)
    sl = order == "shuffle_last"
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    gamma = t["gamma"].to(sdt) if affine else None
    beta = t["beta"].to(sdt) if affine else None
    eps = 1e-5
    cl_in = layout == "channels_last" and not t["x"].is_contiguous()
    out_format = torch.channels_last if cl_in else torch.contiguous_format

    # Eval forward and backward (frozen statistics).
    ref = _reference(t, groups=groups, stride=stride, order=order, training=False, affine=affine)
    y = op_eval(t["x"], t["w"], t["rm"].to(sdt), t["rv"].to(sdt), gamma, beta, groups, stride, eps, sl)
    check(y, ref["y"], dtype, "eval output")
    assert y.dtype == dtype and y.is_contiguous(memory_format=out_format)
    mean = t["rm"].to(sdt)
    invstd = torch.rsqrt(t["rv"].to(sdt) + eps)
    grads = op_backward(ref["gy"].to(dtype), t["x"], t["w"], gamma, mean, invstd, groups, stride, sl, False)
    _check_grads(grads, ref, dtype, "eval", affine)

    # Training forward and backward (batch statistics).
    ho = (h + 2 * (k // 2) - k) // stride + 1
    wo = (w + 2 * (k // 2) - k) // stride + 1
    if n * ho * wo <= 1:
        return
    ref = _reference(t, groups=groups, stride=stride, order=order, training=True, affine=affine)
    y, mean, invstd = op_train(t["x"], t["w"], gamma, beta, groups, stride, eps, sl)
    check(y, ref["y"], dtype, "train output")
    assert mean.dtype == sdt and invstd.dtype == sdt
    # mean/invstd are per parameter channel: those of the conv output before (shuffle_last)
    # or after (shuffle_first) the shuffle, i.e. of the BN input.
    x64 = t["x"].double()
    xin = reference.channel_shuffle(x64, groups) if order == "shuffle_first" else x64
    z = torch.nn.functional.conv2d(xin, t["w"].double(), None, stride, k // 2, 1, c)
    var, m = torch.var_mean(z, dim=(0, 2, 3), unbiased=False)
    stat_dtype = dtype if dtype in (torch.float64, torch.float32) else torch.float32
    check(mean, m, stat_dtype, "train mean")
    check(invstd, torch.rsqrt(var + eps), stat_dtype, "train invstd")
    grads = op_backward(ref["gy"].to(dtype), t["x"], t["w"], gamma, mean, invstd, groups, stride, sl, True)
    _check_grads(grads, ref, dtype, "train", affine)
    assert grads[0].is_contiguous(memory_format=out_format)
