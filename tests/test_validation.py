"""Validation mode: fused calls checked against the reference, mismatches name the layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shufflenet_fused as sf
from shufflenet_fused.ops import functional, reference, validation


class _Features(nn.Module):
    """A small fused "model": the first 5 blocks of a 0.5x g3 stage, as features.0 .. features.4."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        kwargs = {"group": 3, "mid_channels": 30, "ksize": 3, "fused": fused}
        blocks = [sf.ShuffleV1Block(12, 120, first_group=True, stride=2, **kwargs)]
        blocks += [sf.ShuffleV1Block(120, 120, first_group=False, stride=1, **kwargs) for _ in range(4)]
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _small_blocks(fused: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return _Features(fused)


def _corrupt_call(monkeypatch, index: int, *, delta: float = 1e-3, what: str = "output") -> None:
    """Make the index-th fused call (0-based) return a slightly wrong result."""
    original = functional._fused
    count = [0]

    def corrupted(input, weight, running_mean, running_var, *args, **kwargs):
        out = original(input, weight, running_mean, running_var, *args, **kwargs)
        count[0] += 1
        if count[0] - 1 == index:
            if what == "output":
                out = out.clone()
                out[0, 1, 0, 0] += delta
            else:
                with torch.no_grad():
                    running_mean[2] += delta
        return out

    monkeypatch.setattr(functional, "_fused", corrupted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
def test_correct_model_passes(dtype, training):
    model = _small_blocks().to(dtype).train(training)
    x = torch.randn(2, 12, 16, 16, dtype=dtype)
    with sf.validating(model):
        y = model(x)
        y.sum().backward()  # autograd still works through the validated calls
    assert not validation.is_active()
    assert model.features[0].branch_main_1[3].weight.grad is not None


@pytest.mark.parametrize("training", [True, False])
def test_corrupted_output_is_caught_and_the_layer_named(monkeypatch, training):
    model = _small_blocks().double().train(training)
    _corrupt_call(monkeypatch, 3)
    x = torch.randn(2, 12, 16, 16, dtype=torch.float64)
    with pytest.raises(sf.ValidationError, match=r"^features\.3: fused output differs") as info:
        with sf.validating(model):
            model(x)
    assert "dtype torch.float64" in str(info.value)
    assert "(0, 1, 0, 0)" in str(info.value)  # where
    assert not validation.is_active()  # the context unwound


def test_corrupted_running_stats_are_caught(monkeypatch):
    model = _small_blocks().train()
    _corrupt_call(monkeypatch, 2, what="running_mean")
    with pytest.raises(sf.ValidationError, match=r"^features\.2: fused running_mean differs"):
        with sf.validating(model):
            model(torch.randn(2, 12, 16, 16))


def test_corruption_goes_unnoticed_outside_validation(monkeypatch):
    model = _small_blocks().eval()
    _corrupt_call(monkeypatch, 3)
    model(torch.randn(2, 12, 16, 16))


def test_tolerances_can_be_overridden(monkeypatch):
    model = _small_blocks().eval()
    _corrupt_call(monkeypatch, 0, delta=1e-3)
    with sf.validating(model, atol=1e-2):
        model(torch.randn(2, 12, 16, 16))


def test_without_a_model_names_fall_back(monkeypatch):
    model = _small_blocks().eval()
    _corrupt_call(monkeypatch, 0)
    with pytest.raises(sf.ValidationError, match=r"^ShuffleV1Block: "):
        with sf.validating():
            model(torch.randn(2, 12, 16, 16))


def test_functional_call_is_validated(monkeypatch):
    _corrupt_call(monkeypatch, 0)
    x = torch.randn(2, 6, 5, 5)
    w = torch.randn(6, 1, 3, 3)
    with pytest.raises(sf.ValidationError, match=r"^shuffle_dwconv_bn: fused output"):
        with sf.validating():
            sf.shuffle_dwconv_bn(x, w, torch.zeros(6), torch.ones(6), groups=2, order="shuffle_last")


def test_validating_does_not_modify_the_model():
    model = _small_blocks().eval()
    attrs = {name: set(vars(m)) for name, m in model.named_modules()}
    with sf.validating(model):
        model(torch.randn(1, 12, 16, 16))
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attrs
    assert validation.name_of(model.features[3]) == "ShuffleV1Block"  # forgotten after the block


def test_nested_validating_blocks():
    model = _small_blocks()
    with sf.validating(model, atol=1.0):
        with sf.validating(model.features):
            assert validation.name_of(model.features[1]) == "1"
        assert validation.name_of(model.features[1]) == "features.1"
        assert validation._tolerance(torch.float32) == (1e-4, 1.0)
        assert validation.is_active()
    assert not validation.is_active()


def test_inactive_validation_costs_nothing(monkeypatch):
    """Outside validating(), neither the reference nor the validation helpers are called."""

    def boom(*args, **kwargs):
        raise AssertionError("validation machinery called while inactive")

    monkeypatch.setattr(reference, "shuffle_dwconv_bn", boom)
    monkeypatch.setattr(validation, "checked_call", boom)
    monkeypatch.setattr(validation, "layer", boom)
    monkeypatch.setattr(validation, "name_of", boom)
    model = _small_blocks()
    x = torch.randn(2, 12, 16, 16)
    model.train()(x).sum().backward()
    model.eval()(x)


def test_unfused_model_does_not_call_the_fused_op(monkeypatch):
    calls = []
    monkeypatch.setattr(functional, "_fused", lambda *a, **k: calls.append(1))
    model = _small_blocks(fused=False)
    with sf.validating(model):
        model(torch.randn(2, 12, 16, 16))
    assert calls == []


def test_shape_mismatch_is_reported():
    with pytest.raises(sf.ValidationError, match="shape"):
        validation._compare("features.0", "output", torch.zeros(2, 3), torch.zeros(3, 2))


def test_nan_in_both_is_agreement_and_nan_in_one_is_not():
    nan = torch.tensor([1.0, float("nan")])
    validation._compare("x", "output", nan, nan.clone())
    with pytest.raises(sf.ValidationError, match="max abs error inf"):
        validation._compare("x", "output", nan, torch.tensor([1.0, 2.0]))
