"""The ops as torch sees them: gradcheck, opcheck, torch.compile."""

from __future__ import annotations

import pytest
import torch
from op_cases import Case, make_inputs

import shufflenet_fused as sf
from shufflenet_fused.ops._library import ops


@pytest.mark.parametrize("order", ["shuffle_first", "shuffle_last"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2), (7, 1)])
def test_gradcheck(order: str, training: bool, k: int, stride: int) -> None:
    case = Case(2, 6, 5, 4, k=k, stride=stride, groups=3, order=order)
    inputs = make_inputs(case, torch.float64)
    x = inputs["input"].requires_grad_()
    w = inputs["weight"].requires_grad_()
    bw = inputs["bn_weight"].requires_grad_()
    bb = inputs["bn_bias"].requires_grad_()

    def f(x, w, bw, bb):
        # Fresh running stats each call: gradcheck calls f many times.
        rm, rv = inputs["running_mean"].clone(), inputs["running_var"].clone()
        return sf.shuffle_dwconv_bn(x, w, rm, rv, bw, bb, groups=3, stride=stride, training=training, order=order)

    assert torch.autograd.gradcheck(f, (x, w, bw, bb))


def _op_samples():
    for layout in ("nchw", "channels_last"):
        for training in (False, True):
            case = Case(2, 6, 5, 5, k=3, stride=2 if training else 1, groups=3, layout=layout)
            yield case, training, make_inputs(case, torch.float64)


@pytest.mark.parametrize("shuffle_last", [False, True])
def test_opcheck_eval(shuffle_last: bool) -> None:
    for case, _, t in _op_samples():
        for requires_grad in (False, True):
            x = t["input"].clone().requires_grad_(requires_grad)
            bw = t["bn_weight"].clone().requires_grad_(requires_grad)
            args = (x, t["weight"], t["running_mean"], t["running_var"], bw, t["bn_bias"], case.groups,
                    case.stride, 1e-5, shuffle_last)  # fmt: skip
            torch.library.opcheck(ops.dwconv_bn_eval, args)


@pytest.mark.parametrize("shuffle_last", [False, True])
def test_opcheck_train(shuffle_last: bool) -> None:
    for case, _, t in _op_samples():
        x = t["input"].clone().requires_grad_()
        w = t["weight"].clone().requires_grad_()
        args = (x, w, t["bn_weight"], None, case.groups, case.stride, 1e-5, shuffle_last)
        torch.library.opcheck(ops.dwconv_bn_train, args)


@pytest.mark.parametrize("training", [False, True])
def test_opcheck_backward(training: bool) -> None:
    for case, _, t in _op_samples():
        mean = t["running_mean"]
        invstd = torch.rsqrt(t["running_var"] + 1e-5)
        args = (t["grad"], t["input"], t["weight"], t["bn_weight"], mean, invstd, case.groups, case.stride,
                True, training)  # fmt: skip
        torch.library.opcheck(ops.dwconv_bn_backward, args)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_torch_compile_fullgraph_matches_eager(training: bool) -> None:
    case = Case(2, 12, 8, 8, groups=4, order="shuffle_last")
    t = make_inputs(case, torch.float32)

    def step(x, w, rm, rv, bw, bb):
        y = sf.shuffle_dwconv_bn(x, w, rm, rv, bw, bb, groups=4, training=training, order="shuffle_last")
        return torch.relu(y) * 2

    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="inductor")):
        x = t["input"].clone().requires_grad_()
        w = t["weight"].clone().requires_grad_()
        rm, rv = t["running_mean"].float().clone(), t["running_var"].float().clone()
        bw, bb = t["bn_weight"].float(), t["bn_bias"].float()
        y = fn(x, w, rm, rv, bw, bb)
        y.sum().backward()
        results.append((y.detach(), x.grad, w.grad, rm, rv))
    for eager, compiled in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_meta_kernels_on_symbolic_sizes() -> None:
    """The Meta kernels (csrc/meta/) check and shape fake tensors whose sizes are symbols,
    as torch.compile(dynamic=True) and torch.export trace them: outputs carry the symbolic
    sizes, and a bad argument raises the kernels' own error at trace time."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    mode = FakeTensorMode(shape_env=ShapeEnv())
    dynamic = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] * 4)
    x = mode.from_tensor(torch.randn(4, 6, 9, 11), symbolic_context=dynamic)
    w, mean, var = (mode.from_tensor(t) for t in (torch.randn(6, 1, 5, 5), torch.zeros(6), torch.ones(6)))
    with mode:
        y = ops.dwconv_bn_eval(x, w, mean, var, None, None, 3, 2, 1e-5, False)
        out, m, s = ops.dwconv_bn_train(x, w, None, None, 3, 2, 1e-5, True)
        assert all(isinstance(d, torch.SymInt) for d in (y.shape[0], y.shape[2], y.shape[3]))
        assert y.shape[2] == (x.shape[2] - 1) // 2 + 1 and out.shape == y.shape and m.dtype == torch.float32
        with pytest.raises(RuntimeError, match="weight kernel size must be 3, 5 or 7, got 4"):
            ops.dwconv_bn_eval(x, mode.from_tensor(torch.randn(6, 1, 4, 4)), mean, var, None, None, 3, 1, 1e-5,
                               False)  # fmt: skip
        with pytest.raises(RuntimeError, match="groups=4 must be >= 1 and divide the channel count"):
            ops.dwconv_bn_eval(x, w, mean, var, None, None, 4, 1, 1e-5, False)
        with pytest.raises(RuntimeError, match="grad_output must have shape"):
            ops.dwconv_bn_backward(x, x, w, None, m, s, 3, 2, False, True)
