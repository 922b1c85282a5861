"""load_megvii_checkpoint: ShuffleNet-Series files, plain state dicts, strict errors."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch import nn

import shufflenet_fused as sf
from shufflenet_fused.models.checkpoint import CheckpointError, preprocess_like_megvii


def _small_model(seed: int, **kwargs) -> sf.ShuffleNetV1:
    torch.manual_seed(seed)
    return sf.ShuffleNetV1(group=3, model_size="0.5x", n_class=10, **kwargs)


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _megvii_file_format(state: dict[str, torch.Tensor]) -> dict:
    # What ShuffleNet-Series saves: {'state_dict': nn.DataParallel(model).state_dict()}.
    return {"state_dict": {"module." + k: v for k, v in state.items()}}


def test_round_trip_through_a_file(tmp_path):
    source = _small_model(0)
    with torch.no_grad():
        source.features[0].branch_main_1[4].running_var.add_(0.5)
        source.features[0].branch_main_1[4].num_batches_tracked.fill_(42)
    path = tmp_path / "snetv1_group3_0.5x.pth.tar"
    torch.save(_megvii_file_format(source.state_dict()), path)
    target = _small_model(1)
    assert sf.load_megvii_checkpoint(target, path) is target
    _assert_same_state(target, source)
    assert sf.load_megvii_checkpoint(_small_model(2), str(path)) is not None


def test_plain_and_wrapped_state_dicts(megvii):
    with contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(0)
        seed_model = megvii.ShuffleNetV1(group=8, model_size="0.5x", n_class=10)
    torch.manual_seed(1)
    ours = sf.ShuffleNetV1(group=8, model_size="0.5x", n_class=10)
    sf.load_megvii_checkpoint(ours, seed_model.state_dict())
    _assert_same_state(ours, seed_model)

    ours = sf.ShuffleNetV1(group=8, model_size="0.5x", n_class=10)
    sf.load_megvii_checkpoint(ours, {"state_dict": seed_model.state_dict()})  # no module. prefix
    _assert_same_state(ours, seed_model)

    wrapped = nn.DataParallel(sf.ShuffleNetV1(group=8, model_size="0.5x", n_class=10))
    assert sf.load_megvii_checkpoint(wrapped, _megvii_file_format(seed_model.state_dict())) is wrapped
    _assert_same_state(wrapped.module, seed_model)


def test_missing_num_batches_tracked_is_accepted():
    """Checkpoints from before PyTorch 0.4.1 have no num_batches_tracked."""
    source = _small_model(0)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = _small_model(1)
    sf.load_megvii_checkpoint(target, state)
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_and_unexpected_keys_are_listed_and_nothing_is_loaded():
    source = _small_model(0).state_dict()
    del source["features.3.branch_main_1.3.weight"]
    del source["classifier.0.weight"]
    source["features.16.branch_main_1.0.weight"] = torch.zeros(1)
    target = _small_model(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        sf.load_megvii_checkpoint(target, _megvii_file_format(source))
    message = str(info.value)
    assert "missing keys (2)" in message
    assert "features.3.branch_main_1.3.weight" in message and "classifier.0.weight" in message
    assert "unexpected keys (1)" in message and "features.16.branch_main_1.0.weight" in message
    assert "module." not in message
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was loaded despite the error"


def test_shape_mismatch_is_listed():
    source = sf.ShuffleNetV1(group=3, model_size="1.0x", n_class=10).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches") as info:
        sf.load_megvii_checkpoint(_small_model(1), source)
    message = str(info.value)
    assert "first_conv.0.weight: checkpoint (24, 3, 3, 3), model (12, 3, 3, 3)" in message
    assert "... and" in message  # long lists are cut short


def test_wrong_group_is_reported():
    source = sf.ShuffleNetV1(group=8, model_size="0.5x", n_class=10).state_dict()
    with pytest.raises(CheckpointError, match="ShuffleNetV1"):
        sf.load_megvii_checkpoint(_small_model(1), source)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="list"):
        sf.load_megvii_checkpoint(_small_model(0), path)


def test_checkpoint_error_is_a_runtime_error():
    assert issubclass(CheckpointError, RuntimeError)
    assert sf.CheckpointError is CheckpointError


def test_preprocess_like_megvii_shapes_order_and_range():
    # A landscape RGB image: shorter side 300 -> 256, longer 400 -> int(256 * 400 / 300 + 0.5) = 341.
    image = torch.zeros(3, 300, 400, dtype=torch.uint8)
    image[0] = 200  # red
    image[2, :, 200:] = 10  # blue on the right half
    out = preprocess_like_megvii(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert torch.all(out[2] == 200)  # red is last in BGR
    assert torch.all(out[1] == 0)
    assert out[0, :, 0].eq(0).all() and out[0, :, -1].eq(10).all()  # blue first
    assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
    # Portrait, batched, float input.
    batch = torch.rand(2, 3, 400, 256) * 255
    assert preprocess_like_megvii(batch).shape == (2, 3, 224, 224)
    # Already 256 on the shorter side: only the crop (rows 16..240 of 256, torchvision's rounding).
    image = torch.arange(256 * 300, dtype=torch.float32).reshape(1, 256, 300).expand(3, 256, 300) % 256
    out = preprocess_like_megvii(image)
    torch.testing.assert_close(out, image[:, 16:240, 38:262].round().flip(0))


def test_preprocess_like_megvii_rejects_bad_input():
    with pytest.raises(ValueError, match="3 x H x W"):
        preprocess_like_megvii(torch.zeros(1, 64, 64))


def test_non_tensor_entry_is_a_checkpoint_error_and_nothing_is_loaded():
    model = sf.ShuffleNetV1(model_size="0.5x", group=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    state["features.0.branch_main_1.3.weight"] = 7
    expected = r"features\.0\.branch_main_1\.3\.weight: checkpoint int \(not a tensor\)"
    with pytest.raises(CheckpointError, match=expected):
        sf.load_megvii_checkpoint(model, state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
