"""ShuffleV1Block (fused and not) against the seed's Megvii block, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shufflenet_fused as sf
from shufflenet_fused.models.batch_norm import batch_norm_arguments
from shufflenet_fused.ops import functional

# (inp, oup, group, first_group, stride): mid_channels = oup // 4, as the network builds them.
SHAPES = {
    "g3-s1": (48, 48, 3, False, 1),
    "g3-s2-first": (12, 60, 3, True, 2),
    "g3-s2": (24, 48, 3, False, 2),
    "g8-s1": (64, 64, 8, False, 1),
    "g8-s2-first": (16, 64, 8, True, 2),
    "g8-s2": (32, 64, 8, False, 2),
    "g1-s1": (16, 16, 1, False, 1),
}
CONFIGS = [pytest.param(v, id=k) for k, v in SHAPES.items()]
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _kwargs(inp, oup, group, first_group, stride, ksize=3):
    return {
        "group": group,
        "first_group": first_group,
        "mid_channels": oup // 4,
        "ksize": ksize,
        "stride": stride,
    }


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    # Non-trivial statistics and affine parameters, so eval mode and the updates are tested.
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 0.1)
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)


def make_pair(megvii, config, *, ksize=3, fused=True, dtype=torch.float64):
    """The seed's block and ours, with the same (randomised) state."""
    inp, oup = config[:2]
    kwargs = _kwargs(*config, ksize=ksize)
    torch.manual_seed(0)
    seed_block = megvii.ShuffleV1Block(inp, oup, **kwargs).to(dtype)
    _randomise_bn(seed_block, torch.Generator().manual_seed(1))
    ours = sf.ShuffleV1Block(inp, oup, **kwargs, fused=fused).to(dtype)
    ours.load_state_dict(seed_block.state_dict(), strict=True)
    return seed_block, ours


def _inputs(config, dtype=torch.float64, n=2, h=9, w=10):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, config[0], h, w, generator=gen, dtype=torch.float64).to(dtype)
    return x


def _step(block: nn.Module, x: torch.Tensor):
    """One forward + backward with a fixed upstream gradient: (output, input grad, param grads)."""
    block.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = block(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(y.dtype)
    y.backward(gy)
    grads = {name: p.grad for name, p in block.named_parameters()}
    return y.detach(), x.grad, grads


def _assert_same(a, b, exact: bool, **tol):
    if exact:
        assert torch.equal(a, b), (a - b).abs().max()
    else:
        torch.testing.assert_close(a, b, **(tol or TOL))


def assert_blocks_agree(seed_block, ours, x, *, steps=2, exact=False, **tol):
    """Outputs, input and parameter gradients agree after each step; so do all buffers."""
    for _ in range(steps):
        y0, gx0, g0 = _step(seed_block, x)
        y1, gx1, g1 = _step(ours, x)
        _assert_same(y1, y0, exact, **tol)
        _assert_same(gx1, gx0, exact, **tol)
        assert g0.keys() == g1.keys()
        for name in g0:
            assert g1[name] is not None, name
            _assert_same(g1[name], g0[name], exact, **tol)
    b0, b1 = dict(seed_block.named_buffers()), dict(ours.named_buffers())
    assert b0.keys() == b1.keys()
    for name in b0:
        if name.endswith("num_batches_tracked"):
            assert torch.equal(b1[name], b0[name]), name
        else:
            _assert_same(b1[name], b0[name], exact, **tol)


@pytest.mark.parametrize("ksize", [3, 5, 7])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_matches_megvii_train_then_eval(megvii, config, ksize, fused):
    seed_block, ours = make_pair(megvii, config, ksize=ksize, fused=fused)
    x = _inputs(config)
    seed_block.train()
    ours.train()
    assert_blocks_agree(seed_block, ours, x, exact=not fused)
    assert int(ours.branch_main_1[4].num_batches_tracked) == 2
    seed_block.eval()
    ours.eval()
    assert_blocks_agree(seed_block, ours, x, exact=not fused)


@pytest.mark.parametrize("config", [SHAPES["g3-s1"], SHAPES["g8-s2-first"]], ids=["g3-s1", "g8-s2-first"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_momentum_none_cumulative_average(megvii, config, fused):
    seed_block, ours = make_pair(megvii, config, fused=fused)
    for m in [*seed_block.modules(), *ours.modules()]:
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    x = _inputs(config)
    assert_blocks_agree(seed_block.train(), ours.train(), x, steps=3, exact=not fused)
    assert int(ours.branch_main_1[4].num_batches_tracked) == 3


def test_custom_momentum_and_eps(megvii):
    seed_block, ours = make_pair(megvii, SHAPES["g3-s2-first"])
    for m in [*seed_block.modules(), *ours.modules()]:
        if isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = 0.3, 1e-3
    assert_blocks_agree(seed_block.train(), ours.train(), _inputs(SHAPES["g3-s2-first"]))
    assert_blocks_agree(seed_block.eval(), ours.eval(), _inputs(SHAPES["g3-s2-first"]))


@pytest.mark.parametrize("affine", [True, False])
def test_bn_without_running_stats(megvii, affine):
    """track_running_stats=False: batch statistics in train and eval, no running stats."""
    config = SHAPES["g3-s1"]
    seed_block, ours = make_pair(megvii, config)
    mid = config[1] // 4
    bn0 = nn.BatchNorm2d(mid, track_running_stats=False, affine=affine).double()
    _randomise_bn(bn0, torch.Generator().manual_seed(5))
    bn1 = nn.BatchNorm2d(mid, track_running_stats=False, affine=affine).double()
    bn1.load_state_dict(bn0.state_dict())
    seed_block.branch_main_1[4] = bn0
    ours.branch_main_1[4] = bn1
    x = _inputs(config)
    assert_blocks_agree(seed_block.train(), ours.train(), x)
    assert_blocks_agree(seed_block.eval(), ours.eval(), x)


def test_running_stats_frozen_after_construction(megvii):
    """track_running_stats switched off after construction: nn.BatchNorm2d then uses batch
    statistics in training (without updating the buffers) and the buffers in eval."""
    seed_block, ours = make_pair(megvii, SHAPES["g3-s2"])
    seed_block.branch_main_1[4].track_running_stats = False
    ours.branch_main_1[4].track_running_stats = False
    x = _inputs(SHAPES["g3-s2"])
    assert_blocks_agree(seed_block.train(), ours.train(), x)
    assert int(ours.branch_main_1[4].num_batches_tracked) == 0
    assert_blocks_agree(seed_block.eval(), ours.eval(), x)


def test_channels_last_input(megvii):
    seed_block, ours = make_pair(megvii, SHAPES["g8-s1"])
    x = _inputs(SHAPES["g8-s1"]).to(memory_format=torch.channels_last)
    assert_blocks_agree(seed_block.train(), ours.train(), x, steps=1)
    assert_blocks_agree(seed_block.eval(), ours.eval(), x, steps=1)


@pytest.mark.parametrize("config", [SHAPES["g3-s1"], SHAPES["g8-s2"]], ids=["g3-s1", "g8-s2"])
def test_float32_matches_megvii(megvii, config):
    seed_block, ours = make_pair(megvii, config, dtype=torch.float32)
    x = _inputs(config, dtype=torch.float32)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    assert_blocks_agree(seed_block.train(), ours.train(), x, **tol)
    assert_blocks_agree(seed_block.eval(), ours.eval(), x, **tol)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("ksize", [3, 7])
def test_same_submodules_keys_and_init(megvii, config, ksize):
    inp, oup = config[:2]
    kwargs = _kwargs(*config, ksize=ksize)
    torch.manual_seed(123)
    seed_block = megvii.ShuffleV1Block(inp, oup, **kwargs)
    torch.manual_seed(123)
    ours = sf.ShuffleV1Block(inp, oup, **kwargs)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in seed_block.named_modules()]
    for (_, a), (_, b) in zip(ours.named_modules(), seed_block.named_modules(), strict=True):
        assert type(a) is type(b) or isinstance(a, sf.ShuffleV1Block)
    s0, s1 = seed_block.state_dict(), ours.state_dict()
    assert list(s1) == list(s0)
    for k in s0:
        assert torch.equal(s1[k], s0[k]), k
    seed_block.load_state_dict(s1, strict=True)
    for attr in ("stride", "mid_channels", "ksize", "pad", "inp", "group"):
        assert getattr(ours, attr) == getattr(seed_block, attr)


def test_fused_block_calls_the_fused_op_once(monkeypatch):
    # Every fused call reaches one of the two ops, whichever path of the
    # functional API (eval fast path, checked path) it takes.
    calls = []
    original_eval, original_train = functional._eval_op, functional._train_op

    def counting_eval(input, weight, rm, rv, bn_w, bn_b, groups, stride, eps, shuffle_last):
        calls.append({"groups": groups, "stride": stride, "shuffle_last": shuffle_last, "training": False})
        return original_eval(input, weight, rm, rv, bn_w, bn_b, groups, stride, eps, shuffle_last)

    def counting_train(input, weight, bn_w, bn_b, groups, stride, eps, shuffle_last):
        calls.append({"groups": groups, "stride": stride, "shuffle_last": shuffle_last, "training": True})
        return original_train(input, weight, bn_w, bn_b, groups, stride, eps, shuffle_last)

    monkeypatch.setattr(functional, "_eval_op", counting_eval)
    monkeypatch.setattr(functional, "_train_op", counting_train)
    block = sf.ShuffleV1Block(24, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=2)
    x = torch.randn(2, 24, 8, 8)
    block(x)
    block.eval()(x)
    assert len(calls) == 2
    assert calls[0] == {"groups": 12 // 3, "stride": 2, "shuffle_last": True, "training": True}
    assert calls[1] == {"groups": 12 // 3, "stride": 2, "shuffle_last": True, "training": False}
    unfused = sf.ShuffleV1Block(
        24, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=2, fused=False
    )
    unfused(x)
    assert len(calls) == 2


def test_group_one_does_not_shuffle():
    block = sf.ShuffleV1Block(16, 16, group=1, first_group=False, mid_channels=4, ksize=3, stride=1)
    assert block.shuffle_groups == 1
    block = sf.ShuffleV1Block(48, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=1)
    assert block.shuffle_groups == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 3}, "stride"),
        ({"ksize": 4}, "ksize"),
        ({"ksize": 9}, "ksize"),
        ({"group": 5}, "group"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"group": 3, "first_group": False, "mid_channels": 12, "ksize": 3, "stride": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        sf.ShuffleV1Block(48, 48, **args)


def test_unfused_block_accepts_any_kernel_size(megvii):
    kwargs = {"group": 3, "first_group": False, "mid_channels": 12, "ksize": 9, "stride": 1}
    torch.manual_seed(0)
    seed_block = megvii.ShuffleV1Block(48, 48, **kwargs).double()
    ours = sf.ShuffleV1Block(48, 48, **kwargs, fused=False).double()
    ours.load_state_dict(seed_block.state_dict())
    x = _inputs((48,))
    assert_blocks_agree(seed_block, ours, x, steps=1, exact=True)


def test_batch_norm_arguments_follow_nn_batchnorm():
    bn = nn.BatchNorm2d(4, momentum=None)
    assert batch_norm_arguments(bn)[2:] == (True, 1.0)
    assert batch_norm_arguments(bn)[2:] == (True, 0.5)
    assert int(bn.num_batches_tracked) == 2
    bn.eval()
    mean, var, training, momentum = batch_norm_arguments(bn)
    assert mean is bn.running_mean and var is bn.running_var and not training and momentum == 0.0
    assert int(bn.num_batches_tracked) == 2
    bn = nn.BatchNorm2d(4, momentum=0.2, track_running_stats=False)
    assert batch_norm_arguments(bn) == (None, None, True, 0.2)
    assert batch_norm_arguments(bn.eval()) == (None, None, True, 0.2)


@pytest.mark.parametrize("config", [SHAPES["g3-s1"], SHAPES["g8-s2"]], ids=["g3-s1", "g8-s2"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_cpu_autocast_bfloat16(config, training):
    """Under autocast the depthwise weight is cast like nn.Conv2d's; BN stays float32."""
    inp, oup = config[:2]
    torch.manual_seed(0)
    ours = sf.ShuffleV1Block(inp, oup, **_kwargs(*config)).train(training)
    unfused = sf.ShuffleV1Block(inp, oup, **_kwargs(*config), fused=False).train(training)
    unfused.load_state_dict(ours.state_dict())
    x = _inputs(config, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
        y_ref = unfused(x)
    assert y.dtype == y_ref.dtype
    torch.testing.assert_close(
        y.float(), y_ref.float(), rtol=5e-2, atol=5e-2 * y_ref.detach().abs().max().item()
    )
    y.float().sum().backward()
    dw, bn = ours.branch_main_1[3], ours.branch_main_1[4]
    assert dw.weight.grad.dtype == torch.float32 and bn.running_mean.dtype == torch.float32
    if training:
        torch.testing.assert_close(
            bn.running_mean, unfused.branch_main_1[4].running_mean, rtol=2e-2, atol=2e-2
        )
