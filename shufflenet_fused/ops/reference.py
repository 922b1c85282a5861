"""The oracle: the fused ops written with plain torch ops.

Every fused result is checked against these functions. They follow
docs/design.md sections 2-3 literally: F.channel_shuffle, F.conv2d with groups=C and
F.batch_norm, in the order asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_args
from ._export import exporting_to_onnx
from .sync_batch_norm import group_size, sync_batch_norm

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """torch.nn.ChannelShuffle(groups): output channel o reads (o % g) * (C // g) + o // g."""
    if groups == 1:
        return x
    if exporting_to_onnx():
        # The same permutation as Reshape/Transpose/Reshape: ONNX has no channel
        # shuffle, and the TorchScript exporter has no translation for aten's.
        return x.unflatten(1, (groups, x.shape[1] // groups)).transpose(1, 2).flatten(1, 2)
    return F.channel_shuffle(x, groups)


def shuffle_dwconv_bn(
    input: Tensor,
    weight: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    bn_weight: Tensor | None = None,
    bn_bias: Tensor | None = None,
    *,
    groups: int,
    stride: int = 1,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    order: str = "shuffle_first",
    process_group: ProcessGroup | None = None,
) -> Tensor:
    """Reference for :func:`shufflenet_fused.shuffle_dwconv_bn` (same signature and semantics;
    with a ``process_group``, the BN is :func:`~shufflenet_fused.ops.sync_batch_norm.sync_batch_norm`)."""
    synchronized = training is True and group_size(process_group) > 1
    check_args(
        input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, training, order, eps,
        synchronized=synchronized,
    )  # fmt: skip
    k = weight.shape[-1]
    c = input.shape[1]
    x = channel_shuffle(input, groups) if order == "shuffle_first" else input
    y = F.conv2d(x, weight, None, stride, k // 2, 1, c)
    if synchronized:
        y = sync_batch_norm(
            y, running_mean, running_var, bn_weight, bn_bias, momentum=momentum, eps=eps, process_group=process_group
        )
    else:
        y = F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
    return channel_shuffle(y, groups) if order == "shuffle_last" else y
