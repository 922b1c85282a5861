"""``ShuffleV1Block``: the Megvii ShuffleNetV1 unit, with the fused shuffle + depthwise conv + BN.

The block has the same submodules, state_dict keys and initial parameters as the
``ShuffleV1Block`` of megvii-model/ShuffleNet-Series (ShuffleNetV1/blocks.py)::

    branch_main_1 = Sequential(conv1x1, BN, ReLU, dwconv kxk, BN)
    branch_main_2 = Sequential(conv1x1 (grouped), BN)
    branch_proj   = AvgPool2d(3, 2, 1)                 (stride 2 only)

so Megvii weights load into it with ``strict=True``. That block applies its channel
shuffle *after* the depthwise conv + BN; with ``fused=True`` the depthwise conv, its BN
and the shuffle run as one call of :func:`shufflenet_fused.shuffle_dwconv_bn` with
``order="shuffle_last"`` (docs/design.md section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..inference import pipeline
from ..inference.arguments import plain_conv
from ..ops import functional, reference, validation
from ..ops._checks import KERNEL_SIZES
from .batch_norm import batch_norm_arguments, run_layers, sync_group


class ShuffleV1Block(nn.Module):
    """A ShuffleNetV1 unit, a drop-in replacement for Megvii's ``ShuffleV1Block``.

    Args:
        inp: input channels.
        oup: output channels (for ``stride=2`` the ``inp`` pooled input channels included).
        group: groups of the 1x1 convolutions; the channel shuffle after the depthwise conv
            uses it as Megvii's ``channel_shuffle`` does (none when ``group == 1``).
        first_group: the first 1x1 conv is dense (the first unit of the network).
        mid_channels: bottleneck channels (divisible by ``group``).
        ksize: depthwise kernel size (3, 5 or 7 when ``fused``).
        stride: 1 (residual add) or 2 (concatenation with an average-pooled input).
        fused: run the depthwise conv, its BN and the shuffle as one fused call; with False
            the block runs Megvii's sequence of modules (the reference).

    Outputs, gradients and BatchNorm running-statistic updates (``num_batches_tracked``
    included) are those of Megvii's block, in training and in eval mode.
    """

    def __init__(
        self,
        inp: int,
        oup: int,
        *,
        group: int,
        first_group: bool,
        mid_channels: int,
        ksize: int,
        stride: int,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        if fused and ksize not in KERNEL_SIZES:
            raise ValueError(f"ksize must be one of {KERNEL_SIZES} with fused=True, got {ksize!r}")
        if group < 1 or mid_channels % group != 0:
            raise ValueError(f"group={group!r} must be a positive int dividing mid_channels={mid_channels}")
        self.stride = stride
        self.mid_channels = mid_channels
        self.ksize = ksize
        self.pad = ksize // 2
        self.inp = inp
        self.group = group
        self.fused = fused

        outputs = oup - inp if stride == 2 else oup
        # Created in Megvii's order, so that the same RNG state gives the same weights.
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid_channels, 1, 1, 0, groups=1 if first_group else group, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, mid_channels, ksize, stride, self.pad, groups=mid_channels, bias=False),
            nn.BatchNorm2d(mid_channels),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid_channels, outputs, 1, 1, 0, groups=group, bias=False),
            nn.BatchNorm2d(outputs),
        )
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

    @classmethod
    def _adopt(cls, block: nn.Module) -> ShuffleV1Block:
        """A fused block that uses ``block``'s submodules themselves (see :func:`shufflenet_fused.fuse`)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for attr in ("stride", "mid_channels", "ksize", "pad", "inp", "group"):
            setattr(new, attr, getattr(block, attr))
        new.fused = True
        new.training = block.training
        new.branch_main_1 = block.branch_main_1
        new.branch_main_2 = block.branch_main_2
        if new.stride == 2:
            new.branch_proj = block.branch_proj
        return new

    @property
    def shuffle_groups(self) -> int:
        """``groups`` of ``torch.nn.ChannelShuffle`` equal to Megvii's ``channel_shuffle``."""
        return self.mid_channels // self.group if self.group > 1 else 1

    def channel_shuffle(self, x: Tensor) -> Tensor:
        """Megvii's channel shuffle: ``F.channel_shuffle(x, C // group)``."""
        return reference.channel_shuffle(x, x.shape[1] // self.group)

    def forward(self, old_x: Tensor) -> Tensor:
        if self.fused:
            # Eval mode without a gradient to compute: the whole block as one op
            # (shufflenet_fused/inference), when its structure and the input allow it.
            out = pipeline.try_block(self, old_x)
            if out is not None:
                if validation.is_active():
                    with torch.no_grad():
                        expected = self._forward_modules(old_x, fused=False)
                    validation.check_output(validation.name_of(self), out, expected)
                return out
        return self._forward_modules(old_x, fused=self.fused)

    def _forward_modules(self, old_x: Tensor, fused: bool) -> Tensor:
        if fused and self._depthwise_fuses():
            # run_layers: nn.SyncBatchNorm layers synchronize through shufflenet_fused.
            main = self.branch_main_1
            x = run_layers((main[0], main[1], main[2]), old_x)
            if validation.is_active():
                with validation.layer(validation.name_of(self)):
                    x = self._shuffle_dwconv_bn(x)
            else:
                x = self._shuffle_dwconv_bn(x)
            x = run_layers(self.branch_main_2, x)
        else:
            x = self.branch_main_1(old_x)
            if self.group > 1:
                x = self.channel_shuffle(x)
            x = self.branch_main_2(x)
        if self.stride == 1:
            return F.relu(x + old_x)
        return torch.cat((self.branch_proj(old_x), F.relu(x)), 1)

    def _depthwise_fuses(self) -> bool:
        """Whether ``branch_main_1[3:5]`` are still the depthwise conv the fused op computes (the
        block's ``ksize`` and ``stride``, zero padding ``ksize // 2``, no bias) and a BatchNorm:
        layers edited or replaced after construction run as modules, with the rest of the block."""
        dw = self.branch_main_1[3]
        return (
            plain_conv(dw, self.ksize, self.stride) and dw.bias is None
            and dw.groups == dw.in_channels == dw.out_channels and isinstance(self.branch_main_1[4], _BatchNorm)
        )  # fmt: skip

    def _shuffle_dwconv_bn(self, x: Tensor) -> Tensor:
        """``branch_main_1[3:5]`` followed by the channel shuffle, in one fused call."""
        dw, bn = self.branch_main_1[3], self.branch_main_1[4]
        running_mean, running_var, training, momentum = batch_norm_arguments(bn)
        # Under autocast the 1x1 conv hands over half/bfloat16: cast the conv weight as
        # nn.Conv2d would; BN parameters and running statistics stay float32.
        weight = dw.weight if dw.weight.dtype == x.dtype else dw.weight.to(x.dtype)
        return functional.shuffle_dwconv_bn(
            x, weight, running_mean, running_var, bn.weight, bn.bias,
            groups=self.shuffle_groups, stride=self.stride, training=training, momentum=momentum,
            eps=bn.eps, order="shuffle_last", process_group=sync_group(bn),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"stride={self.stride}, group={self.group}, ksize={self.ksize}, fused={self.fused}"
