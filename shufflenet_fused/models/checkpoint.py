"""Loading the Megvii ShuffleNet-Series checkpoints, and the input they expect.

The released ShuffleNetV1 weights (megvii-model/ShuffleNet-Series) are files written by
``torch.save({'state_dict': model.state_dict()})`` from a model wrapped in
``nn.DataParallel``, so every key carries a ``module.`` prefix.
:func:`load_megvii_checkpoint` reads them (and plain state dicts) into
:class:`~shufflenet_fused.ShuffleNetV1` strictly.

Input convention of those weights (the ShuffleNet-Series evaluation pipeline,
``OpencvResize(256)``, ``CenterCrop(224)``, ``ToBGRTensor()``):

* channel order **BGR**;
* pixel values **0-255** as floats (no division by 255);
* **no** mean/std normalisation;
* resize the shorter side to 256 (OpenCV bilinear, the other side
  ``int(256 * long / short + 0.5)``), then center-crop 224x224.

:func:`preprocess_like_megvii` does this for RGB image tensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CheckpointError", "load_megvii_checkpoint", "preprocess_like_megvii"]

_PREFIX = "module."
_MAX_LISTED = 20


class CheckpointError(RuntimeError):
    """A checkpoint does not match the model: missing, unexpected or mis-shaped entries."""


def _listing(title: str, items: list[str]) -> str:
    shown = "\n".join(f"    {item}" for item in items[:_MAX_LISTED])
    more = f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"  {title} ({len(items)}):\n{shown}{more}"


def _state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(source, (str, os.PathLike)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise CheckpointError(f"expected a state dict or {{'state_dict': ...}}, got {type(source).__name__}")
    if "state_dict" in source and isinstance(source["state_dict"], Mapping):
        source = source["state_dict"]
    state = dict(source)
    if state and all(key.startswith(_PREFIX) for key in state):  # saved from nn.DataParallel
        state = {key[len(_PREFIX) :]: value for key, value in state.items()}
    return state


def _described(value: object) -> str:
    """A checkpoint entry's shape, or its type when it is not a tensor."""
    return str(tuple(value.shape)) if isinstance(value, Tensor) else f"{type(value).__name__} (not a tensor)"


def load_megvii_checkpoint(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Tensor]
) -> nn.Module:
    """Loads Megvii ShuffleNet-Series weights into ``model`` (strictly) and returns ``model``.

    ``path_or_state_dict`` is a file path (read with ``torch.load(map_location="cpu",
    weights_only=True)``), a ``{'state_dict': ...}`` dict as ShuffleNet-Series saves, or a
    plain state dict. A ``module.`` prefix carried by every key (``nn.DataParallel``) is
    removed; ``model`` may itself be wrapped in ``nn.DataParallel`` or
    ``DistributedDataParallel``. ``num_batches_tracked`` entries may be absent (checkpoints
    from before PyTorch 0.4.1): those counters keep their values.

    The weights expect BGR images with pixel values 0-255 (no /255), no mean/std
    normalisation, the shorter side resized to 256 and a 224x224 center crop: the
    ShuffleNet-Series evaluation pipeline (see :func:`preprocess_like_megvii`).

    Raises:
        CheckpointError: listing the missing keys, the unexpected keys and the shape
            mismatches; ``model`` is left unchanged.
    """
    wrapped = isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
    target = model.module if wrapped else model
    state = _state_dict(path_or_state_dict)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {_described(v)}, model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and (not isinstance(v, Tensor) or v.shape != expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            _listing(title, items)
            for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                 ("shape mismatches", mismatched))
            if items
        ]  # fmt: skip
        raise CheckpointError(f"checkpoint does not match {type(target).__name__}:\n" + "\n".join(parts))
    target.load_state_dict(state, strict=True)
    return model


def preprocess_like_megvii(image: Tensor, size: int = 256, crop: int = 224) -> Tensor:
    """An RGB image as the Megvii ShuffleNet-Series evaluation pipeline feeds the network.

    ``image`` is ``3 x H x W`` or ``N x 3 x H x W``, RGB, values 0-255 (uint8 or float).
    The shorter side is resized to ``size`` (bilinear without antialiasing, like
    ``cv2.INTER_LINEAR``; the longer side becomes ``int(size * long / short + 0.5)``),
    values are rounded to integers in 0-255 (the pipeline's images are uint8), the center
    ``crop x crop`` is taken (as torchvision's ``CenterCrop``) and the channels are
    reversed to BGR. Returns float32 with values 0-255. Close to OpenCV's result, not bit
    identical (OpenCV resizes uint8 images in fixed point).
    """
    batched = image.dim() == 4
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"image must be 3 x H x W or N x 3 x H x W, got shape {tuple(image.shape)}")
    x = (image if batched else image.unsqueeze(0)).float()
    h, w = x.shape[-2:]
    out_hw = (size, int(size / h * w + 0.5)) if h < w else (int(size / w * h + 0.5), size)
    if out_hw != (h, w):
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=False)
    x = x.round().clamp(0, 255)
    top, left = int(round((out_hw[0] - crop) / 2.0)), int(round((out_hw[1] - crop) / 2.0))
    if top < 0 or left < 0:
        raise ValueError(f"crop {crop} is larger than the resized image {out_hw}")
    x = x[..., top : top + crop, left : left + crop].flip(-3).contiguous()
    return x if batched else x.squeeze(0)
