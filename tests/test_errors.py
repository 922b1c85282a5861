"""Every error a caller can cause is a clear ValueError/RuntimeError naming the argument."""

from __future__ import annotations

import pytest
import torch

import shufflenet_fused as sf
from shufflenet_fused.ops import reference
from shufflenet_fused.ops._library import ops

C = 6


def _args(**over):
    a = {
        "input": torch.randn(2, C, 5, 5),
        "weight": torch.randn(C, 1, 3, 3),
        "running_mean": torch.zeros(C),
        "running_var": torch.ones(C),
        "bn_weight": torch.ones(C),
        "bn_bias": torch.zeros(C),
    }
    kw = {"groups": 3}
    for k, v in over.items():
        (a if k in a else kw)[k] = v
    return a, kw


BAD = [
    ({"input": torch.randn(C, 5, 5)}, "input must be a 4-D"),
    ({"input": torch.randn(2, C, 5, 5).int()}, "input must be float32"),
    ({"groups": 4}, "groups=4"),
    ({"groups": 0}, "groups=0"),
    ({"stride": 3}, "stride must be 1 or 2"),
    ({"order": "sideways"}, "order must be one of"),
    ({"weight": torch.randn(C, 1, 3)}, "weight must be a 4-D"),
    ({"weight": torch.randn(C + 1, 1, 3, 3)}, "weight must have shape"),
    ({"weight": torch.randn(C, 2, 3, 3)}, "weight must have shape"),
    ({"weight": torch.randn(C, 1, 3, 5)}, "weight must have shape"),
    ({"weight": torch.randn(C, 1, 4, 4)}, "weight kernel size"),
    ({"weight": torch.randn(C, 1, 3, 3).double()}, "weight dtype"),
    ({"weight": torch.randn(C, 1, 3, 3, device="meta")}, "weight is on meta"),
    ({"running_mean": torch.zeros(C + 1)}, "running_mean must be a 1-D"),
    ({"running_var": torch.ones(C, 1)}, "running_var must be a 1-D"),
    ({"running_var": torch.ones(C, dtype=torch.int64)}, "running_var must be floating"),
    ({"bn_weight": torch.ones(C - 1)}, "bn_weight must be a 1-D"),
    ({"bn_bias": torch.zeros(C, device="meta")}, "bn_bias is on meta"),
    ({"running_mean": None}, "running_mean and running_var must be given together"),
    ({"running_mean": None, "running_var": None}, "required when training=False"),
    ({"input": torch.randn(1, C, 1, 1), "training": True}, "more than 1 value per channel"),
    ({"input": torch.randn(2, 0, 5, 5)}, "at least one channel"),
    ({"stride": True}, "stride must be 1 or 2"),
    ({"training": None}, "training must be a bool"),
    ({"eps": -1.0}, "eps must be a finite number >= 0"),
    ({"eps": float("nan")}, "eps must be a finite number >= 0"),
    ({"eps": 0.0, "training": True}, "eps must be positive when training"),
    # What F.batch_norm accepts: BN tensors in the input's dtype (float32 also for half/bf16).
    ({"running_mean": torch.zeros(C, dtype=torch.float64)}, "running_mean must be torch.float32"),
    ({"running_var": torch.ones(C, dtype=torch.float16), "training": True}, "running_var must be torch.float32"),
    ({"bn_weight": torch.ones(C, dtype=torch.bfloat16)}, "bn_weight must be torch.float32"),
    ({"bn_bias": torch.zeros(C, dtype=torch.float64), "training": True}, "bn_bias must be torch.float32"),
    # A running statistic that requires grad is a parameter by mistake (the op writes it).
    ({"running_mean": torch.zeros(C, requires_grad=True)}, "running_mean must not require grad"),
    ({"running_var": torch.ones(C, requires_grad=True), "training": True}, "running_var must not require grad"),
]


@pytest.mark.parametrize("fn", [sf.shuffle_dwconv_bn, reference.shuffle_dwconv_bn], ids=["fused", "reference"])
@pytest.mark.parametrize("over,message", BAD, ids=[m for _, m in BAD])
def test_bad_argument_raises_value_error(fn, over, message) -> None:
    a, kw = _args(**over)
    with pytest.raises(ValueError, match=message):
        fn(*a.values(), **kw)


# The ops themselves check their arguments too (TORCH_CHECK -> RuntimeError),
# for callers that use torch.ops.shufflenet_fused.* directly.
OP_BAD = [
    ((torch.randn(C, 5, 5), torch.randn(C, 1, 3, 3), 3, 1), "input must be 4-D"),
    ((torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3), 4, 1), "groups=4"),
    ((torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3), 3, 3), "stride must be 1 or 2"),
    ((torch.randn(2, C, 5, 5), torch.randn(C, 1, 4, 4), 3, 1), "kernel size must be 3, 5 or 7"),
    ((torch.randn(2, C, 5, 5), torch.randn(C, 2, 3, 3), 3, 1), "weight must have shape"),
    ((torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3).double(), 3, 1), "weight dtype"),
    ((torch.randn(2, C, 5, 5).int(), torch.randn(C, 1, 3, 3).int(), 3, 1), "input must be float32"),
]


@pytest.mark.parametrize("args,message", OP_BAD, ids=[m for _, m in OP_BAD])
def test_op_rejects_bad_arguments(args, message) -> None:
    x, w, groups, stride = args
    with pytest.raises(RuntimeError, match=message):
        ops.dwconv_bn_eval(x, w, torch.zeros(C), torch.ones(C), None, None, groups, stride, 1e-5, False)
    with pytest.raises(RuntimeError, match=message):
        ops.dwconv_bn_train(x, w, None, None, groups, stride, 1e-5, False)


def test_op_rejects_bad_per_channel_tensors() -> None:
    x, w = torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3)
    with pytest.raises(RuntimeError, match="running_var must be 1-D"):
        ops.dwconv_bn_eval(x, w, torch.zeros(C), torch.ones(C + 2), None, None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="bn_bias must be 1-D"):
        ops.dwconv_bn_train(x, w, None, torch.zeros(2), 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="more than 1 value per channel"):
        ops.dwconv_bn_train(torch.randn(1, C, 1, 1), w, None, None, 3, 1, 1e-5, False)


def test_op_backward_rejects_bad_grad_output() -> None:
    x, w = torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3)
    mean, invstd = torch.zeros(C), torch.ones(C)
    with pytest.raises(RuntimeError, match="grad_output must have shape"):
        ops.dwconv_bn_backward(torch.randn(2, C, 4, 5), x, w, None, mean, invstd, 3, 1, False, True)
    with pytest.raises(RuntimeError, match="invstd must be 1-D"):
        ops.dwconv_bn_backward(torch.randn(2, C, 5, 5), x, w, None, mean, torch.ones(1), 3, 1, False, True)


def test_op_rejects_a_meta_tensor_among_cpu_ones() -> None:
    # The dispatcher sends such a call to the Meta kernel, not to the CPU
    # kernel; it must fail there too (the same checks), not return garbage.
    x, w, mean, ones = torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3), torch.zeros(C), torch.ones(C)
    meta = torch.ones(C, device="meta")
    with pytest.raises(RuntimeError, match="weight is on meta but input is on cpu"):
        ops.dwconv_bn_eval(x, w.to("meta"), mean, ones, None, None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="bn_bias is on meta"):
        ops.dwconv_bn_eval(x, w, mean, ones, ones, meta, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="bn_weight is on meta"):
        ops.dwconv_bn_train(x, w, meta, None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="invstd is on meta"):
        ops.dwconv_bn_backward(torch.randn(2, C, 5, 5), x, w, None, mean, meta, 3, 1, False, True)
    with pytest.raises(RuntimeError, match="statistics are on different devices"):
        ops.update_running_stats(mean.clone(), ones.clone(), meta, ones, 0.1, 1e-5, 50)
    # All on meta is a shape computation, which is allowed.
    assert ops.dwconv_bn_eval(x.to("meta"), w.to("meta"), meta, meta, None, None, 3, 1, 1e-5, False).is_meta


# The eval fast path of the functional API (no Python checks before the op)
# must reject the same calls as the checked path, with the same ValueError.
def test_fused_eval_error_is_the_checked_paths_value_error() -> None:
    a, kw = _args(weight=torch.randn(C, 1, 3, 3, device="meta"))
    with pytest.raises(ValueError, match="weight is on meta") as fast:
        sf.shuffle_dwconv_bn(*a.values(), **kw)
    with pytest.raises(ValueError, match="weight is on meta") as checked, sf.validating():
        sf.shuffle_dwconv_bn(*a.values(), **kw)
    assert str(fast.value) == str(checked.value)
    assert fast.value.__context__ is None  # not raised while handling the op's error


def test_double_backward_is_an_error_not_a_wrong_answer() -> None:
    x = torch.randn(2, C, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = sf.shuffle_dwconv_bn(x, w, None, None, groups=3, training=True)
    with pytest.raises(RuntimeError, match="double backward"):
        # Raised as soon as a graph of the backward is asked for.
        (gx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        gx.sum().backward()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda a: ops.dwconv_bn_eval(*a, None, None, 3, 1, -1.0, False), "eps must be a finite number >= 0"),
        (lambda a: ops.dwconv_bn_eval(*a, None, None, 3, 1, float("nan"), False), "eps must be a finite number"),
        (lambda a: ops.dwconv_bn_train(a[0], a[1], None, None, 3, 1, 0.0, False), "eps must be positive when training"),
    ],
    ids=["eval eps<0", "eval eps nan", "train eps=0"],
)
def test_raw_ops_reject_bad_eps(call, message) -> None:
    a = (torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3), torch.zeros(C), torch.ones(C))
    with pytest.raises(RuntimeError, match=message):
        call(a)


def test_raw_op_rejects_no_channels() -> None:
    with pytest.raises(RuntimeError, match="at least one channel"):
        ops.dwconv_bn_eval(torch.randn(2, 0, 5, 5), torch.randn(0, 1, 3, 3), torch.zeros(0), torch.ones(0), None,
                           None, 1, 1, 1e-5, False)  # fmt: skip


def test_op_rejects_bn_tensors_of_a_dtype_batch_norm_rejects() -> None:
    x, w = torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3)
    with pytest.raises(RuntimeError, match="running_mean must be Float for Float input"):
        ops.dwconv_bn_eval(x, w, torch.zeros(C).double(), torch.ones(C), None, None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="bn_weight must be Float for Float input"):
        ops.dwconv_bn_train(x, w, torch.ones(C).half(), None, 3, 1, 1e-5, False)
    with pytest.raises(RuntimeError, match="running_var must not require grad"):
        ops.dwconv_bn_eval(x, w, torch.zeros(C), torch.ones(C, requires_grad=True), None, None, 3, 1, 1e-5, False)
    # Half/bfloat16 input: float32 BN tensors (autocast) and the input's own dtype are both fine.
    for dtype in (torch.float16, torch.bfloat16):
        for bn_dtype in (torch.float32, dtype):
            stats = torch.zeros(C, dtype=bn_dtype), torch.ones(C, dtype=bn_dtype)
            ops.dwconv_bn_eval(x.to(dtype), w.to(dtype), *stats, stats[1], stats[0], 3, 1, 1e-5, False)
        with pytest.raises(RuntimeError, match="or float32"):
            ops.dwconv_bn_eval(x.to(dtype), w.to(dtype), torch.zeros(C).double(), torch.ones(C), None, None, 3, 1,
                               1e-5, False)  # fmt: skip


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"running_var": torch.ones(C, dtype=torch.int64)}, "running_var must be float32"),
        ({"invstd": torch.ones(C, dtype=torch.int32)}, "invstd must be float32"),
        ({"running_var": torch.ones(C, requires_grad=True)}, "running_var must not require grad"),
    ],
    ids=["int64 running_var", "int32 invstd", "running_var requiring grad"],
)
def test_update_running_stats_checks_everything_before_writing(bad, message) -> None:
    args = {"running_mean": torch.zeros(C), "running_var": torch.ones(C), "mean": torch.full((C,), 2.0),
            "invstd": torch.ones(C)}  # fmt: skip
    args.update(bad)
    before = {k: v.detach().clone() for k, v in args.items()}
    with pytest.raises(RuntimeError, match=message):
        ops.update_running_stats(*args.values(), 0.5, 1e-5, 10)
    for k, v in args.items():  # nothing written, running_mean included
        assert torch.equal(v.detach(), before[k]), k


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0]


_x, _w, _s = torch.randn(2, C, 5, 5), torch.randn(C, 1, 3, 3), torch.zeros(C)
FAKE_PARITY = [
    ("eval", (_x, torch.randn(C, 1, 4, 4), _s, _s + 1, None, None, 3, 1, 1e-5, False)),
    ("eval", (_x, torch.randn(C + 1, 1, 3, 3), _s, _s + 1, None, None, 3, 1, 1e-5, False)),
    ("eval", (_x, _w.double(), _s, _s + 1, None, None, 3, 1, 1e-5, False)),
    ("eval", (_x, _w, _s, _s + 1, None, None, 4, 1, 1e-5, False)),
    ("eval", (_x, _w, _s, _s + 1, None, None, 3, 0, 1e-5, False)),
    ("eval", (_x, _w, _s, _s + 1, None, None, 3, 1, -1.0, False)),
    ("eval", (_x, _w, _s.double(), _s + 1, None, None, 3, 1, 1e-5, False)),
    ("eval", (_x, _w, _s, torch.ones(C + 1), None, None, 3, 1, 1e-5, False)),
    ("eval", (_x, _w, _s, (_s + 1).requires_grad_(), None, None, 3, 1, 1e-5, False)),
    ("eval", (_x.int(), _w.int(), _s, _s + 1, None, None, 3, 1, 1e-5, False)),
    ("train", (_x, _w, torch.ones(C).half(), None, 3, 1, 1e-5, False)),
    ("train", (_x, _w, None, None, 3, 1, 0.0, False)),
    ("train", (_x, _w, None, None, 3, 2 + 1, 1e-5, False)),
    ("backward", (torch.randn(2, C, 5, 5), _x, _w, None, _s.long(), _s + 1, 3, 1, False, False)),
]


@pytest.mark.parametrize("op,args", FAKE_PARITY, ids=[f"{o}-{i}" for i, (o, _) in enumerate(FAKE_PARITY)])
def test_fake_kernels_reject_what_the_kernels_reject(op, args) -> None:
    # Meta tensors run the fake kernels (what torch.compile and torch.export trace with).
    fn = {"eval": ops.dwconv_bn_eval, "train": ops.dwconv_bn_train, "backward": ops.dwconv_bn_backward}[op]
    with pytest.raises(RuntimeError) as real:
        fn(*args)

    def meta(a):
        if not isinstance(a, torch.Tensor):
            return a
        return a.detach().to("meta").requires_grad_(a.requires_grad)

    with pytest.raises(RuntimeError) as fake:
        fn(*(meta(a) for a in args))
    # One implementation of the checks (csrc/common/checks.h): the same message, word for word.
    assert _first_line(fake.value) == _first_line(real.value)
