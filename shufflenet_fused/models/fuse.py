"""``fuse(model)``: swap Megvii-style ``ShuffleV1Block`` modules for fused ones, sharing weights."""

from __future__ import annotations

from torch import nn

from ..ops._checks import KERNEL_SIZES
from .batch_norm import SyncBatchNorm
from .blocks import ShuffleV1Block

__all__ = ["fuse", "is_megvii_block"]


def _plain(module: object, cls: type[nn.Module]) -> bool:
    """An instance of ``cls`` whose forward is ``cls.forward`` (a subclass could change the math)."""
    return isinstance(module, cls) and type(module).forward is cls.forward


def is_megvii_block(module: nn.Module) -> bool:
    """Whether ``module`` is structured like Megvii's ``ShuffleV1Block`` and can be fused.

    Recognised by structure, not by class: attributes ``stride`` (1 or 2), ``group``,
    ``mid_channels``, ``ksize`` (3, 5 or 7), ``pad``, ``inp``; ``branch_main_1`` a
    ``Sequential`` of 5 modules whose index 3 is the depthwise ``Conv2d`` (``mid_channels``
    channels, ``ksize`` kernel, ``stride``, padding ``ksize // 2``, no bias) and index 4 a
    ``BatchNorm2d`` or ``SyncBatchNorm`` of ``mid_channels``; ``branch_main_2`` a
    ``Sequential``; ``branch_proj`` when ``stride == 2``. Our own :class:`ShuffleV1Block`
    qualifies too.
    """
    stride = getattr(module, "stride", None)
    group = getattr(module, "group", None)
    mid = getattr(module, "mid_channels", None)
    ksize = getattr(module, "ksize", None)
    if stride not in (1, 2) or ksize not in KERNEL_SIZES:
        return False
    ints = (group, mid, getattr(module, "pad", None), getattr(module, "inp", None))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return False
    if group < 1 or mid % group != 0:
        return False
    main1, main2 = getattr(module, "branch_main_1", None), getattr(module, "branch_main_2", None)
    if not isinstance(main1, nn.Sequential) or len(main1) != 5 or not isinstance(main2, nn.Sequential):
        return False
    if stride == 2 and not isinstance(getattr(module, "branch_proj", None), nn.Module):
        return False
    dw, bn = main1[3], main1[4]
    return (
        _plain(dw, nn.Conv2d)
        and dw.in_channels == dw.out_channels == dw.groups == mid
        and dw.kernel_size == (ksize, ksize)
        and dw.stride == (stride, stride)
        and dw.padding == (ksize // 2, ksize // 2)
        and dw.dilation == (1, 1)
        and dw.padding_mode == "zeros"
        and dw.bias is None
        and any(_plain(bn, cls) for cls in (nn.BatchNorm2d, nn.SyncBatchNorm, SyncBatchNorm))
        and bn.num_features == mid
    )


def fuse(model: nn.Module) -> nn.Module:
    """Make every ShuffleNetV1 block of ``model`` run the fused shuffle + depthwise conv + BN.

    Works in place and returns ``model`` itself, except when ``model`` is itself a Megvii
    block (then a new fused block is returned). Each Megvii-style block (recognised by
    structure, see :func:`is_megvii_block`, so the classes of megvii-model/ShuffleNet-Series
    qualify) is replaced in its parent by a :class:`ShuffleV1Block` with ``fused=True`` that
    holds the very same submodules, hence the same parameter and buffer tensors (nothing is
    copied; an optimizer built before keeps working). ``nn.SyncBatchNorm`` layers stay
    synchronized: the fused block passes their process group to the fused op, and runs its
    other ``SyncBatchNorm`` layers through :mod:`shufflenet_fused.ops.sync_batch_norm`. Our
    own blocks with ``fused=False`` are switched to ``fused=True``. Blocks whose depthwise
    kernel size the fused op does not support (other than 3, 5, 7) are left as they are.
    Hooks registered on a replaced block object are not carried over (those on its
    submodules are).
    """
    if isinstance(model, ShuffleV1Block):
        if is_megvii_block(model):
            model.fused = True
        return model
    if is_megvii_block(model):
        return ShuffleV1Block._adopt(model)
    for name, child in list(model.named_children()):
        fused = fuse(child)
        if fused is not child:
            setattr(model, name, fused)
    return model
