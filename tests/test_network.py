"""ShuffleNetV1 against the seed's Megvii network: keys, init, outputs; torch.compile."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch import nn

import shufflenet_fused as sf

ALL_CONFIGS = [(g, size) for g in (3, 8) for size in ("0.5x", "1.0x", "1.5x", "2.0x")]
IDS = [f"g{g}-{size}" for g, size in ALL_CONFIGS]


def _megvii_model(megvii, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # the seed prints in its constructor
        return megvii.ShuffleNetV1(**kwargs)


def _pair(megvii, group, model_size, *, fused=True, dtype=torch.float64, n_class=1000):
    torch.manual_seed(0)
    seed_model = _megvii_model(megvii, group=group, model_size=model_size, n_class=n_class).to(dtype)
    ours = sf.ShuffleNetV1(group=group, model_size=model_size, n_class=n_class, fused=fused).to(dtype)
    ours.load_state_dict(seed_model.state_dict(), strict=True)
    return seed_model, ours


@pytest.mark.parametrize(("group", "model_size"), ALL_CONFIGS, ids=IDS)
def test_same_keys_shapes_and_init_as_megvii(megvii, group, model_size):
    torch.manual_seed(7)
    seed_model = _megvii_model(megvii, group=group, model_size=model_size)
    torch.manual_seed(7)
    ours = sf.ShuffleNetV1(group=group, model_size=model_size)
    s0, s1 = seed_model.state_dict(), ours.state_dict()
    assert list(s1) == list(s0)
    for key in s0:
        assert s1[key].shape == s0[key].shape, key
        assert s1[key].dtype == s0[key].dtype, key
        assert torch.equal(s1[key], s0[key]), f"{key} initialised differently"
    # Both directions load strictly.
    ours.load_state_dict(s0, strict=True)
    seed_model.load_state_dict(s1, strict=True)
    assert ours.stage_out_channels == seed_model.stage_out_channels
    assert all(isinstance(b, sf.ShuffleV1Block) and b.fused for b in ours.features)


@pytest.mark.parametrize("group", [3, 8])
def test_forward_matches_megvii_float64(megvii, group):
    seed_model, ours = _pair(megvii, group, "0.5x", n_class=10)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seed_model.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed_model(x), rtol=1e-10, atol=1e-12)
    seed_model.train()
    ours.train()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed_model(x), rtol=1e-10, atol=1e-12)
    for (name, b0), (_, b1) in zip(seed_model.named_buffers(), ours.named_buffers(), strict=True):
        torch.testing.assert_close(b1, b0, rtol=1e-10, atol=1e-12, msg=name)


def test_training_step_matches_megvii_float64(megvii):
    seed_model, ours = _pair(megvii, 3, "0.5x", n_class=10)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 7])
    for model in (seed_model, ours):
        model.train()
        nn.functional.cross_entropy(model(x), target).backward()
    for (name, p0), (_, p1) in zip(seed_model.named_parameters(), ours.named_parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p0.grad, rtol=1e-8, atol=1e-12, msg=name)


def test_forward_matches_megvii_float32(megvii):
    seed_model, ours = _pair(megvii, 8, "0.5x", dtype=torch.float32)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    seed_model.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed_model(x), rtol=1e-4, atol=1e-5)


def test_unfused_model_is_the_megvii_model_exactly(megvii):
    seed_model, ours = _pair(megvii, 3, "0.5x", fused=False, dtype=torch.float32, n_class=10)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), seed_model.eval()(x))


def test_constructor_does_not_print(capsys):
    sf.ShuffleNetV1(group=3, model_size="0.5x")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": None}, "group"),
        ({"group": 4}, "group"),
        ({"group": 3, "model_size": "3.0x"}, "model_size"),
        ({"group": 8, "model_size": "1.0"}, "model_size"),
    ],
)
def test_bad_configuration_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sf.ShuffleNetV1(**kwargs)


def test_torch_compile_fullgraph_whole_model_eval():
    """The whole fused network traces as one graph (aot_eager: fast, same tracing as inductor)."""
    torch.manual_seed(0)
    model = sf.ShuffleNetV1(group=3, model_size="0.5x", n_class=10).eval()
    x = torch.randn(1, 3, 224, 224)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


def test_torch_compile_inductor_fused_blocks_eval():
    """Inductor on a small stack of fused blocks: no graph break, eager's result."""
    torch.manual_seed(0)
    kwargs = {"group": 3, "first_group": False, "mid_channels": 12, "ksize": 3}
    model = nn.Sequential(
        sf.ShuffleV1Block(24, 48, **kwargs, stride=2),
        sf.ShuffleV1Block(48, 48, **kwargs, stride=1),
    ).eval()
    x = torch.randn(2, 24, 14, 14)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_torch_compile_inductor_passes_any_layout_to_the_eval_op(memory_format):
    """dwconv_bn_eval is tagged flexible_layout: inductor may hand it the channels_last
    activations of its convolutions (and does, on CPU); either way the result is eager's."""
    torch.manual_seed(0)
    block = sf.ShuffleV1Block(48, 48, group=3, first_group=False, mid_channels=24, ksize=3, stride=1).eval()
    op = torch.ops.shufflenet_fused.dwconv_bn_eval.default
    assert torch.Tag.flexible_layout in op.tags
    x = torch.randn(2, 48, 10, 10).contiguous(memory_format=memory_format)
    compiled = torch.compile(block, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x), rtol=1e-5, atol=1e-5)
