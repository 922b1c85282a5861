"""The whole-network / whole-block inference op (shufflenet_fused/inference, csrc/cpu/inference).

Every output is compared with the unfused model (Megvii's sequence of modules) on random
weights and random BatchNorm statistics, at every CPU ISA level this machine runs.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shufflenet_fused as sf
from shufflenet_fused.inference import pipeline

CONFIGS = [(size, group) for group in (3, 8) for size in ("0.5x", "1.0x", "1.5x", "2.0x")]


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that no fold is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model


def pair(size: str, group: int, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    ref = randomize(sf.ShuffleNetV1(model_size=size, group=group, fused=False), seed).eval()
    fused = sf.ShuffleNetV1(model_size=size, group=group, fused=True).eval()
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to n inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the inference op made through the models: "n" for whole
    networks, "blocks" for single blocks (a network that cannot run as one op runs its
    blocks through it)."""
    counter = {"n": 0, "blocks": 0}
    original = pipeline._run

    def counted(module, x, *rest):
        out = original(module, x, *rest)
        counter["blocks" if isinstance(module, sf.ShuffleV1Block) else "n"] += out is not None
        return out

    monkeypatch.setattr(pipeline, "_run", counted)
    return counter


@pytest.mark.parametrize("size,group", CONFIGS)
def test_network_matches_reference(size, group, calls):
    ref, fused = pair(size, group)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = ref(x), fused(x)
    assert calls["n"] == 1
    assert rel_l2(got, expected) < 1e-5


def test_every_isa_and_batch_split(cpu_isa, calls):
    ref, fused = pair("0.5x", 3, seed=1)
    for n in (1, 3):  # batch 1 splits layers across threads, 3 splits images
        x = torch.randn(n, 3, 224, 224)
        with torch.no_grad():
            assert rel_l2(fused(x), ref(x)) < 1e-5
    assert calls["n"] == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_image_groups(threads, calls):
    """N above the group size (8 images per thread): full and partial groups, spans of
    several images in the later stages."""
    ref, fused = pair("0.5x", 8, seed=13)
    with torch_threads(threads):
        x = torch.randn(19, 3, 224, 224)
        with torch.no_grad():
            assert rel_l2(fused(x), ref(x)) < 1e-5
    assert calls["n"] == 1


@pytest.mark.parametrize("threads", [3, 4])
def test_batch_below_threads_on_wider_teams(threads, calls):
    """Batch below the thread count with more threads than two: one team runs every layer of
    each image in turn, members sit out the splits too small for all of them, and the
    stride-2 blocks share their pool and pw2 channels out by member."""
    ref, fused = pair("0.5x", 3, seed=17)
    with torch_threads(threads):
        for n in (1, threads - 1):
            x = torch.randn(n, 3, 224, 224)
            with torch.no_grad():
                assert rel_l2(fused(x), ref(x)) < 1e-5
    assert calls["n"] == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_classifier_with_bias_and_odd_classes(cpu_isa, threads, calls):
    """The head's Linear, computed in the op with its classes split across the threads: per
    image below the thread count (batch 1 on two threads), over the batch above it (tiles of
    4 images: 6 is one tile and two single images); with a bias, 1001 classes (not a
    multiple of the op's 4 rows) and a NaN weight row, whose logit alone must be NaN."""
    torch.manual_seed(21)
    ref = randomize(sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=1001, fused=False), 21).eval()
    with torch.no_grad():
        ref.classifier[0] = nn.Linear(ref.classifier[0].in_features, 1001, bias=True)
        ref.classifier[0].weight[5, 7] = float("nan")
    fused = sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=1001, fused=True).eval()
    fused.classifier[0] = nn.Linear(fused.classifier[0].in_features, 1001, bias=True)
    fused.load_state_dict(ref.state_dict())
    with torch_threads(threads):
        for n in (1, 3, 6):
            x = torch.randn(n, 3, 224, 224)
            with torch.no_grad():
                got, expected = fused(x), ref(x)
            assert torch.equal(got.isnan(), expected.isnan()) and bool(got[:, 5].isnan().all())
            keep = torch.arange(1001) != 5
            assert rel_l2(got[:, keep], expected[:, keep]) < 1e-5
    assert calls["n"] == 3


@pytest.mark.parametrize("threads", [1, 2])
def test_odd_input_sizes(threads, calls):
    ref, fused = pair("1.0x", 8, seed=2)
    with torch_threads(threads):
        for h, w in ((200, 230), (193, 207)):  # odd maps at every stride-2 layer
            x = torch.randn(1, 3, h, w)
            with torch.no_grad():
                assert rel_l2(fused(x), ref(x)) < 1e-5
    assert calls["n"] == 2


def test_head_that_does_not_pool_to_one_falls_back(calls):
    ref, fused = pair("0.5x", 3)
    x = torch.randn(1, 3, 448, 448)  # 14x14 last map: AvgPool2d(7) gives 2x2
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-5)
    assert calls["n"] == 0 and calls["blocks"] == 16


BLOCKS = [
    # inp, oup, group, first_group, mid, stride, H, W
    (24, 240, 3, True, 60, 2, 56, 56),
    (240, 240, 3, False, 60, 1, 28, 28),
    (48, 96, 8, False, 24, 2, 13, 11),
    (96, 96, 8, False, 24, 1, 9, 7),
    (30, 30, 1, False, 12, 1, 5, 6),
    (64, 64, 4, False, 20, 1, 10, 10),  # 100 pixels: a full tile and a 3-vector one
    (16, 40, 2, False, 8, 2, 1, 3),
    # Planes a few pixels past whole vectors, whose last pixels pointwise layers with
    # enough input channels compute as dot products (AVX-512; `tail_pays`):
    (240, 240, 3, False, 120, 1, 7, 7),  # 48 + 1: 3-vector tiles and a tail, pw2's with the residual
    (120, 480, 3, False, 120, 2, 14, 14),  # pw2 at 7x7 with a tail, after the pooled channels
    (336, 336, 3, False, 84, 1, 14, 14),  # 192 + 4: pw1 (112 in a group) tall tiles and 4 tail pixels
    (96, 96, 2, False, 24, 1, 3, 6),  # 16 + 2
    (160, 160, 2, False, 40, 1, 5, 7),  # 32 + 3
]


@pytest.mark.parametrize("inp,oup,group,first_group,mid,stride,H,W", BLOCKS)
def test_block_matches_reference(cpu_isa, inp, oup, group, first_group, mid, stride, H, W, calls):
    torch.manual_seed(3)
    kwargs = dict(group=group, first_group=first_group, mid_channels=mid, ksize=3, stride=stride)
    ref = randomize(sf.ShuffleV1Block(inp, oup, fused=False, **kwargs), seed=3).eval()
    fused = sf.ShuffleV1Block(inp, oup, fused=True, **kwargs).eval()
    fused.load_state_dict(ref.state_dict())
    for n in (1, 4):
        x = torch.randn(n, inp, H, W)
        with torch.no_grad():
            got, expected = fused(x), ref(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert calls["blocks"] == 2


@pytest.mark.parametrize("inp,oup,group,mid,stride,H,W", [(240, 240, 3, 120, 1, 7, 7), (336, 336, 3, 84, 1, 14, 14)])
def test_tail_pixels_carry_nan_and_inf(cpu_isa, inp, oup, group, mid, stride, H, W, calls):
    """NaN and Inf reach the reference's positions in a plane's last pixels (the
    dot-product tail): from the input there, and from a NaN BatchNorm statistic of pw2
    through the tail's epilogue (its ReLU must keep NaN)."""
    kwargs = dict(group=group, first_group=False, mid_channels=mid, ksize=3, stride=stride)
    ref = randomize(sf.ShuffleV1Block(inp, oup, fused=False, **kwargs), seed=5).eval()
    fused = sf.ShuffleV1Block(inp, oup, fused=True, **kwargs).eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(1, inp, H, W)
    x[0, 1, H - 1, W - 1] = float("nan")
    x[0, inp // 2, H - 1, W - 2] = float("-inf")
    with torch.no_grad():
        got, expected = fused(x), ref(x)
        assert expected[..., H - 1, W - 1].isnan().any() and expected.isinf().any()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
        for block in (ref, fused):
            block.branch_main_2[1].running_mean[5] = float("nan")
        x = torch.randn(1, inp, H, W)
        got, expected = fused(x), ref(x)
        assert expected[0, 5].isnan().all()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert calls["blocks"] == 2


@pytest.mark.parametrize("channels", [1, 3, 7, 16, 27, 48])
def test_stem_matches_reference(cpu_isa, channels):
    """The stem alone (plan [1, 0, 0]): conv 3x3/2 + BN + ReLU + max pool 3x3/2, odd sizes."""
    torch.manual_seed(12)
    conv, bn = nn.Conv2d(3, channels, 3, 2, 1, bias=False), randomize(nn.BatchNorm2d(channels), seed=12).eval()
    from shufflenet_fused.inference.arguments import _conv_bn

    params, eps = [], []
    _conv_bn(conv, bn, kernel=3, stride=2, params=params, eps=eps)
    for n, h, w in ((1, 224, 224), (2, 37, 29), (1, 3, 2)):
        x = torch.randn(n, 3, h, w)
        with torch.no_grad():
            got = torch.ops.shufflenet_fused.shufflenet_v1_infer(x, params, eps, [1, 0, 0])
            expected = F.max_pool2d(F.relu(bn(conv(x))), 3, 2, 1)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        # NaN and Inf through the max pool's vertical and horizontal maxima: a NaN in the
        # top row (a two-row window), one in the middle, +Inf in the last row and column.
        x[0, 0, 0, w // 2] = float("nan")
        x[-1, 1, h // 2, w // 3] = float("nan")
        x[0, 2, h - 1, w - 1] = float("inf")
        with torch.no_grad():
            got = torch.ops.shufflenet_fused.shufflenet_v1_infer(x, params, eps, [1, 0, 0])
            expected = F.max_pool2d(F.relu(bn(conv(x))), 3, 2, 1)
        assert expected.isnan().any()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("features", [1, 27, 33])
def test_classifier_features_past_whole_vectors(cpu_isa, features):
    """The op's own classifier (batch 1 on two threads) when the pooled features are not a
    whole number of 16-lane vectors: the op on stem + head only (plan [1, 1, 0]), the stem
    giving `features` channels of 10x10, whose top-left 7x7 window the head pools."""
    torch.manual_seed(31)
    conv, bn = nn.Conv2d(3, features, 3, 2, 1, bias=False), randomize(nn.BatchNorm2d(features), seed=31).eval()
    linear = nn.Linear(features, 11)
    from shufflenet_fused.inference.arguments import _conv_bn

    params, eps = [], []
    _conv_bn(conv, bn, kernel=3, stride=2, params=params, eps=eps)
    params += [linear.weight, linear.bias]
    x = torch.randn(1, 3, 37, 37)
    with torch_threads(2):
        with torch.no_grad():
            got = torch.ops.shufflenet_fused.shufflenet_v1_infer(x, params, eps, [1, 1, 0])
            pooled = F.max_pool2d(F.relu(bn(conv(x))), 3, 2, 1)
            expected = linear(pooled[..., :7, :7].mean(dim=(2, 3)))
    assert pooled.shape[-2:] == (10, 10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_block_chain_op_matches_blocks():
    """The op runs a chain of blocks without stem and head: same as the blocks one by one."""
    _, fused = pair("1.0x", 3, seed=4)
    from shufflenet_fused.inference.arguments import block_arguments

    blocks = list(fused.features[:5])
    params, eps, plan = [], [], [0, 0, len(blocks)]
    for b in blocks:
        plan += block_arguments(b, params, eps)
    x = torch.randn(2, 24, 56, 56)
    with torch.no_grad():
        expected = x
        for b in blocks:
            expected = b._forward_modules(expected, fused=False)
        got = torch.ops.shufflenet_fused.shufflenet_v1_infer(x, params, eps, plan)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def agreement(ref: nn.Module, fused: nn.Module, x: torch.Tensor):
    """A check, to call after each edit of both models, that they still agree on x."""

    def check() -> None:
        with torch.no_grad():
            assert rel_l2(fused(x), ref(x)) < 1e-5

    return check


def test_edits_after_a_forward_refold(calls):
    ref, fused = pair("0.5x", 8, seed=5)
    x = torch.randn(1, 3, 224, 224)
    check = agreement(ref, fused, x)

    check()
    for model in (ref, fused):  # in place on a buffer
        model.features[3].branch_main_1[4].running_var.mul_(3.0)
    check()
    for model in (ref, fused):  # in place on a parameter, through an optimizer-like update
        with torch.no_grad():
            model.first_conv[0].weight.add_(0.01)
    check()
    state = pair("0.5x", 8, seed=6)[0].state_dict()  # load_state_dict copies in place
    ref.load_state_dict(state)
    fused.load_state_dict(state)
    check()
    for model in (ref, fused):  # a replaced parameter object
        w = model.classifier[0].weight
        model.classifier[0].weight = nn.Parameter(w.detach() * 2)
    check()
    new_bn = nn.BatchNorm2d(fused.features[0].branch_main_2[1].num_features).eval()
    randomize(new_bn, seed=7)
    for model in (ref, fused):  # a replaced submodule
        model.features[0].branch_main_2[1] = new_bn
    check()
    assert calls["n"] == 6


def test_structure_edits_after_a_forward(calls):
    ref, fused = pair("0.5x", 8, seed=3)
    x = torch.randn(1, 3, 224, 224)
    check = agreement(ref, fused, x)

    check()
    fused.features[5].branch_main_1[3].stride = (1, 1)  # an equal value, another tuple
    check()
    for model in (ref, fused):  # a changed eps refolds
        model.features[5].branch_main_1[4].eps = 0.25
    check()
    for model in (ref, fused):  # as torch.func.functional_call swaps tensors: the dict entry itself
        linear = model.classifier[0]
        linear._parameters["weight"] = nn.Parameter(linear.weight.detach() * 3)
    check()
    assert calls["n"] == 4 and calls["blocks"] == 0
    entry, conv = pipeline._cache[fused], fused.features[6].branch_main_1[0]
    del conv.bias  # registered as None, now absent: no longer current
    assert not entry.current()
    conv.register_parameter("bias", None)
    assert entry.current()
    fused.features[2].fused = False  # an unfused block: the network runs block by block
    check()
    assert calls["n"] == 4 and calls["blocks"] == 15
    fused.features[2].fused = True
    for model in (ref, fused):  # a padding the op does not compute: that block runs its modules
        model.features[5].branch_main_1[3].padding_mode = "reflect"
    check()
    assert calls["n"] == 4 and calls["blocks"] == 30
    for model in (ref, fused):  # the depthwise BN replaced: modules, also in training mode
        model.features[5].branch_main_1[3].padding_mode = "zeros"
        model.features[7].branch_main_1[4] = nn.Identity()
    check()
    assert calls["n"] == 4 and calls["blocks"] == 45
    torch.manual_seed(9)
    ref.train()
    fused.train()
    with torch.no_grad():  # batch statistics, running-stat updates: the training path
        assert rel_l2(fused(x.expand(2, -1, -1, -1)), ref(x.expand(2, -1, -1, -1))) < 1e-4


def test_all_identical_checks():
    from shufflenet_fused.ops._library import all_identical

    a, b = object(), object()
    d = {"a": a, "none": None}
    assert all_identical([d, d], ["a", "none"], [a, None])
    assert all_identical([], [], [])
    assert not all_identical([d], ["a"], [b])
    assert not all_identical([d], ["missing"], [None])
    with pytest.raises(ValueError, match="one length"):
        all_identical([d], ["a", "none"], [a])
    with pytest.raises(TypeError, match="not a dict"):
        all_identical([[a]], [0], [a])
    with pytest.raises(TypeError):
        all_identical((d,), ["a"], [a])  # lists only


@pytest.mark.parametrize("size,runs", [(192, False), (193, True), (416, True), (417, False)])
def test_input_sizes_the_head_pools_to_one(size, runs, calls):
    ref, fused = pair("0.5x", 8, seed=4)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        if size == 192:  # a 6x6 last map: AvgPool2d(7) cannot pool it, in either model
            with pytest.raises(RuntimeError):
                ref(x)
            with pytest.raises(RuntimeError):
                fused(x)
        else:
            torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-5)
    assert calls["n"] == int(runs)


def test_gradient_needed_runs_the_modules(calls):
    ref, fused = pair("0.5x", 3, seed=8)
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    fused(x).square().sum().backward()
    ref(x2).square().sum().backward()
    assert calls["n"] == 0
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-6)
    # Frozen parameters and an input that needs no grad: nothing to differentiate.
    fused.requires_grad_(False)
    with torch.enable_grad():
        out = fused(x.detach())
    assert calls["n"] == 1 and not out.requires_grad


def test_training_mode_runs_the_modules(calls):
    _, fused = pair("0.5x", 3)
    fused.train()
    before = fused.first_conv[1].running_mean.clone()
    with torch.no_grad():
        fused(torch.randn(2, 3, 224, 224))
    assert calls["n"] == 0 and calls["blocks"] == 0
    assert not torch.equal(before, fused.first_conv[1].running_mean)
    fused.eval()
    fused.features[2].branch_main_1[1].train()  # one BN back in training mode
    with torch.no_grad():
        fused(torch.randn(1, 3, 224, 224))
    assert calls["n"] == 0 and calls["blocks"] == 15


def test_inference_mode_and_switch(calls):
    ref, fused = pair("0.5x", 3)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        got = fused(x)
        expected = ref(x)
    assert calls["n"] == 1 and rel_l2(got, expected) < 1e-5
    with sf.inference_pipeline(False), torch.no_grad():
        fused(x)
    assert calls["n"] == 1
    with torch.no_grad():
        fused.double()(x.double())  # float64: the modules
    assert calls["n"] == 1


def test_two_threads_on_one_model():
    ref, fused = pair("1.0x", 3, seed=9)
    inputs = [torch.randn(n, 3, 224, 224) for n in (1, 4, 1, 3)]
    with torch.no_grad():
        expected = [ref(x) for x in inputs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(3):
            for i in range(k, len(inputs), 2):
                with torch.no_grad():
                    got = fused(inputs[i])
                if rel_l2(got, expected[i]) > 1e-5:
                    errors.append(f"thread {k}, input {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_validating_checks_the_blocks(monkeypatch):
    _, fused = pair("0.5x", 3, seed=10)
    x = torch.randn(1, 3, 224, 224)
    with sf.validating(fused), torch.no_grad():
        fused(x)
    from shufflenet_fused.inference import arguments

    original = arguments.single_block_arguments

    def wrong(block):  # arguments with pw2's BN eps too large
        params, eps, plan = original(block)
        return params, [*eps[:-1], 0.5], plan

    monkeypatch.setattr(arguments, "single_block_arguments", wrong)
    pipeline._cache.clear()
    with pytest.raises(sf.ValidationError, match="features.0"), sf.validating(fused), torch.no_grad():
        fused(x)
    pipeline._cache.clear()


def test_nan_and_inf_propagate_like_the_reference():
    ref, fused = pair("0.5x", 8, seed=11)
    x = torch.randn(2, 3, 224, 224)
    x[0, 1, 100, 100] = float("nan")
    x[1, 2, 5, 7] = float("inf")
    with torch.no_grad():
        got, expected = fused(x), ref(x)
    assert torch.equal(got.isnan(), expected.isnan())
    finite = expected.isfinite()
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-4, atol=1e-5)


def test_non_finite_batch_norm_like_the_reference(calls):
    ref, fused = pair("0.5x", 3)
    x = torch.randn(1, 120, 28, 28)
    for model in (ref, fused):
        model.features[1].branch_main_1[1].running_var[0] = -1.0  # sqrt of a negative: NaN scale
        model.features[1].branch_main_2[1].weight.data[3] = float("inf")
    with torch.no_grad():
        got, expected = fused.features[1](x), ref.features[1](x)
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.isinf(), expected.isinf())
        got, expected = fused(torch.randn(1, 3, 224, 224)), ref(torch.randn(1, 3, 224, 224))
    assert calls["n"] == 1 and calls["blocks"] == 1
    assert got.isnan().all() and expected.isnan().all()


@pytest.mark.parametrize("case", ["gamma inf", "zero var, eps 0"])
def test_degenerate_depthwise_batch_norm(case, calls):
    """A depthwise BN that does not fold is applied after the conv: the block output has the
    reference's NaN and Inf positions (folding inf into the taps gave NaN where the
    reference has +-inf)."""
    kwargs = dict(group=3, first_group=False, mid_channels=12, ksize=3, stride=1)
    ref = randomize(sf.ShuffleV1Block(24, 24, fused=False, **kwargs), seed=14).eval()
    fused = sf.ShuffleV1Block(24, 24, fused=True, **kwargs).eval()
    fused.load_state_dict(ref.state_dict())
    for block in (ref, fused):
        bn = block.branch_main_1[4]
        if case == "gamma inf":
            bn.weight.data[2] = float("inf")
        else:
            bn.running_var[2] = 0.0
            bn.eps = 0.0
    x = torch.randn(2, 24, 6, 6)
    with torch.no_grad():
        got, expected = fused(x), ref(x)
    assert calls["blocks"] == 1
    assert torch.equal(got.isnan(), expected.isnan()) and torch.equal(got.isinf(), expected.isinf())


def _block_args():
    block = sf.ShuffleV1Block(24, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=2).eval()
    from shufflenet_fused.inference import single_block_arguments

    return single_block_arguments(block)


# params: pw1 weight, conv bias, BN weight, BN bias, running mean, running var; then dw, pw2.
@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda x, p, e, plan: (x.double(), p, e, plan), TypeError, "input must be float32"),
        (lambda x, p, e, plan: (x[0], p, e, plan), ValueError, "input must be 4-D"),
        (lambda x, p, e, plan: (x[:, :12], p, e, plan), ValueError, "takes 24 channels"),
        (lambda x, p, e, plan: (x, p[:-1], e, plan), ValueError, "fewer than the plan needs"),
        (lambda x, p, e, plan: (x, p + [None], e, plan), ValueError, "the plan uses"),
        (lambda x, p, e, plan: (x, p, e[:-1], plan), ValueError, "eps has 2 values"),
        (lambda x, p, e, plan: (x, p, [*e, 1e-5], plan), ValueError, "eps has 4 values"),
        (lambda x, p, e, plan: (x, p, [-1.0, *e[1:]], plan), ValueError, "pw1.bn eps must be"),
        (lambda x, p, e, plan: (x, p, [float("nan"), *e[1:]], plan), ValueError, "pw1.bn eps must be"),
        (lambda x, p, e, plan: (x, p, e, plan[:-1]), ValueError, "ints, expected"),
        (lambda x, p, e, plan: (x, p, e, plan[:8] + [3, plan[9]]), ValueError, "stride must be 1 or 2"),
        (lambda x, p, e, plan: (x, p, e, plan[:6] + [5] + plan[7:]), ValueError, "groups1=5"),
        (lambda x, p, e, plan: (x, p, e, plan[:9] + [5]), ValueError, "shuffle_groups=5"),
        (lambda x, p, e, plan: (x, [p[0].double(), *p[1:]], e, plan), TypeError, "pw1.weight must be float32"),
        (lambda x, p, e, plan: (x, [*p[:4], p[4][:-1], *p[5:]], e, plan), ValueError,
         "pw1.bn.running_mean must have shape"),
        (lambda x, p, e, plan: (x, [*p[:5], None, *p[6:]], e, plan), ValueError, "running_var must be a tensor"),
        (lambda x, p, e, plan: (x, [p[0].transpose(0, 1).contiguous().transpose(0, 1), *p[1:]], e, plan),
         ValueError, "contiguous"),
        (lambda x, p, e, plan: (x, p, e, [0, 1, *plan[2:]]), ValueError, "head"),
    ],
)
def test_op_rejects_bad_arguments(mutate, error, match):
    params, eps, plan = _block_args()
    x = torch.randn(1, 24, 9, 9)
    args = mutate(x, [p.detach() if p is not None else None for p in params], eps, plan)
    with pytest.raises(error, match=match):
        torch.ops.shufflenet_fused.shufflenet_v1_infer(*args)


def test_op_empty_batch():
    params, eps, plan = _block_args()
    with torch.no_grad():
        out = torch.ops.shufflenet_fused.shufflenet_v1_infer(torch.randn(0, 24, 9, 9), params, eps, plan)
    assert out.shape == (0, 48, 5, 5)
