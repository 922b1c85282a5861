"""fuse(model): the seed's model and our unfused model become fused, sharing their tensors."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch
from torch import nn

import shufflenet_fused as sf
from shufflenet_fused.models.fuse import is_megvii_block
from shufflenet_fused.ops import functional


def _megvii_model(megvii, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return megvii.ShuffleNetV1(**kwargs)


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _assert_shares_tensors(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = _tensors(model)
    assert list(after) == list(before)
    for name, t in before.items():
        assert after[name] is t, name
        assert after[name].data_ptr() == t.data_ptr(), name


def _count_fused_calls(monkeypatch) -> list[int]:
    """Counts the calls of the fused eval and training ops made through the functional API."""
    calls = []

    def counting(name):
        original = getattr(functional, name)

        def call(*args):
            calls.append(1)
            return original(*args)

        monkeypatch.setattr(functional, name, call)

    counting("_eval_op")
    counting("_train_op")
    return calls


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        y_eval = model(x)
    model.train()
    with torch.no_grad():
        y_train = model(x)
    return y_eval, y_train


@pytest.mark.parametrize("group", [3, 8])
def test_fuse_megvii_model(megvii, monkeypatch, group):
    torch.manual_seed(0)
    model = _megvii_model(megvii, group=group, model_size="0.5x", n_class=10).double()
    reference_model = copy.deepcopy(model)
    before = _tensors(model)
    seed_blocks = list(model.features)
    assert all(is_megvii_block(b) for b in seed_blocks)

    fused = sf.fuse(model)

    assert fused is model
    assert all(type(b) is sf.ShuffleV1Block and b.fused for b in model.features)
    for old, new in zip(seed_blocks, model.features, strict=True):
        assert new.branch_main_1 is old.branch_main_1 and new.branch_main_2 is old.branch_main_2
    assert list(model.state_dict()) == list(reference_model.state_dict())
    _assert_shares_tensors(before, model)

    calls = _count_fused_calls(monkeypatch)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for got, expected in zip(_outputs(model, x), _outputs(reference_model, x), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert len(calls) == 2 * len(model.features)
    # Training updated the shared buffers the same way.
    for (name, b0), (_, b1) in zip(reference_model.named_buffers(), model.named_buffers(), strict=True):
        torch.testing.assert_close(b1, b0, rtol=1e-10, atol=1e-12, msg=name)


def test_fuse_our_unfused_model(monkeypatch):
    torch.manual_seed(0)
    model = sf.ShuffleNetV1(group=3, model_size="0.5x", n_class=10, fused=False).double()
    reference_model = copy.deepcopy(model)
    before = _tensors(model)
    blocks = list(model.features)

    assert sf.fuse(model) is model

    assert all(new is old and new.fused for old, new in zip(blocks, model.features, strict=True))
    _assert_shares_tensors(before, model)
    calls = _count_fused_calls(monkeypatch)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for got, expected in zip(_outputs(model, x), _outputs(reference_model, x), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert len(calls) == 2 * len(model.features)


def test_fuse_a_single_megvii_block_and_gradients(megvii):
    torch.manual_seed(0)
    block = megvii.ShuffleV1Block(24, 48, group=3, first_group=False, mid_channels=12, ksize=5, stride=2)
    block = block.double()
    before = _tensors(block)
    reference_block = copy.deepcopy(block)

    fused = sf.fuse(block)

    assert isinstance(fused, sf.ShuffleV1Block) and fused is not block and fused.fused
    assert fused.training == block.training
    _assert_shares_tensors(before, fused)
    assert (fused.stride, fused.group, fused.mid_channels, fused.ksize) == (2, 3, 12, 5)
    x = torch.randn(2, 24, 9, 9, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    fused(x).square().sum().backward()
    reference_block(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    for (name, p), (_, p_ref) in zip(
        fused.named_parameters(), reference_block.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_fuse_keeps_an_optimizer_working(megvii):
    """The parameters are the same objects, so an optimizer built before fuse still trains the model."""
    torch.manual_seed(0)
    model = nn.Sequential(
        megvii.ShuffleV1Block(48, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=1)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sf.fuse(model)
    dw = model[0].branch_main_1[3].weight
    old = dw.detach().clone()
    model(torch.randn(2, 48, 6, 6)).sum().backward()
    optimizer.step()
    assert not torch.equal(dw, old)


class _NotABlock(nn.Module):
    """Has a block's attributes but a depthwise conv with a kernel the fused op lacks."""

    def __init__(self, ksize: int) -> None:
        super().__init__()
        self.stride, self.group, self.inp, self.mid_channels = 1, 3, 12, 12
        self.ksize, self.pad = ksize, ksize // 2
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(12, 12, 1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 12, ksize, 1, ksize // 2, groups=12, bias=False), nn.BatchNorm2d(12),
        )  # fmt: skip
        self.branch_main_2 = nn.Sequential(nn.Conv2d(12, 12, 1), nn.BatchNorm2d(12))


def test_fuse_leaves_other_modules_alone(megvii):
    model = nn.Sequential(nn.Conv2d(3, 12, 1), _NotABlock(9), nn.Sequential(nn.ReLU()))
    children = list(model)
    assert sf.fuse(model) is model
    assert list(model) == children
    assert is_megvii_block(_NotABlock(3))
    assert not is_megvii_block(_NotABlock(9))
    block = megvii.ShuffleV1Block(48, 48, group=3, first_group=False, mid_channels=12, ksize=3, stride=1)
    block.branch_main_1[3] = nn.Conv2d(12, 12, 3, 1, 1, groups=3, bias=False)  # not depthwise
    assert not is_megvii_block(block)
    ours = sf.ShuffleV1Block(
        48, 48, group=3, first_group=False, mid_channels=12, ksize=9, stride=1, fused=False
    )
    assert sf.fuse(ours) is ours and not ours.fused
