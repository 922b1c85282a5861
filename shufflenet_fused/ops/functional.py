"""The public functional API: channel shuffle + depthwise conv + BatchNorm in one kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import reference, validation
from ._checks import ORDERS, check_args
from ._export import exporting_to_onnx
from ._library import ops
from .sync_batch_norm import group_size, sync_shuffle_dwconv_bn

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


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
    """Fused ``BN(DW(channel_shuffle(x)))`` (``order="shuffle_first"``, the paper's order) or
    ``channel_shuffle(BN(DW(x)))`` (``order="shuffle_last"``, the Megvii code's order).

    ``weight`` is the depthwise conv weight, ``C x 1 x k x k`` with k in {3, 5, 7}; padding is
    ``k // 2``. BatchNorm follows ``F.batch_norm``: with ``training=True`` it normalises with
    batch statistics and, when given, updates ``running_mean``/``running_var`` in place
    (``(1 - momentum) * old + momentum * new``, unbiased variance); with ``training=False`` it
    uses the running statistics, which are then required. ``bn_weight``/``bn_bias`` may be None.
    ``groups`` is that of ``torch.nn.ChannelShuffle``.

    ``process_group``: synchronized BatchNorm. With ``training=True`` and a group of more
    than one process, the batch statistics are those of every process's batch together
    (exactly as ``nn.SyncBatchNorm``, also on CPU with gloo; see
    :mod:`shufflenet_fused.ops.sync_batch_norm`); every process of the group must make the
    call. Ignored in eval mode and for a group of one process.
    """
    if training is False and _eval_fast_path_applies(running_mean, running_var, groups, stride, order):
        # Eval, eager: the op checks every tensor argument itself (TORCH_CHECK,
        # and the fake kernels' device checks), so check_args, a few
        # microseconds of Python per call, runs only when the op rejects its
        # arguments, to raise the same ValueError as the reference path.
        try:
            return _eval_op(
                input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps,
                order == "shuffle_last",
            )  # fmt: skip
        except (RuntimeError, TypeError) as err:
            error = err
        check_args(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, training, order, eps)
        raise error
    if exporting_to_onnx():
        # ONNX has no fused op: export the same computation as standard operators
        # (Conv with group = C, BatchNormalization, the shuffle as Reshape/Transpose),
        # which every runtime (ONNX Runtime, OpenVINO, TensorRT) runs.
        return reference.shuffle_dwconv_bn(
            input, weight, running_mean, running_var, bn_weight, bn_bias,
            groups=groups, stride=stride, training=training, momentum=momentum, eps=eps, order=order,
            process_group=process_group,
        )  # fmt: skip
    synchronized = training is True and group_size(process_group) > 1
    check_args(
        input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, training, order, eps,
        synchronized=synchronized,
    )  # fmt: skip
    kwargs = dict(groups=groups, stride=stride, training=training, momentum=momentum, eps=eps, order=order)
    if synchronized:
        kwargs["process_group"] = process_group
    if validation.is_active():
        return validation.checked_call(
            _fused, input, weight, running_mean, running_var, bn_weight, bn_bias, **kwargs
        )  # fmt: skip
    return _fused(input, weight, running_mean, running_var, bn_weight, bn_bias, **kwargs)


# The ops' overloads, bound once (a call through the overload packet costs more).
_eval_op = ops.dwconv_bn_eval.default
_train_op = ops.dwconv_bn_train.default


def _eval_fast_path_applies(
    running_mean: Tensor | None, running_var: Tensor | None, groups: object, stride: object, order: str
) -> bool:
    # What the op cannot check (the order string, Python int arguments, both
    # running statistics given), and no torch.compile tracing or validation.
    return (
        order in ORDERS
        and type(groups) is int
        and type(stride) is int
        and running_mean is not None
        and running_var is not None
        and not validation.is_active()
        and not torch.compiler.is_compiling()
        and torch._C._get_tracing_state() is None  # TorchScript tracing (the ONNX exporter)
    )


def _fused(
    input: Tensor, weight: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
    bn_weight: Tensor | None, bn_bias: Tensor | None, *, groups: int, stride: int, training: bool,
    momentum: float, eps: float, order: str, process_group: ProcessGroup | None = None,
) -> Tensor:
    shuffle_last = order == "shuffle_last"
    if process_group is not None:
        return sync_shuffle_dwconv_bn(
            input, weight, running_mean, running_var, bn_weight, bn_bias, groups=groups, stride=stride,
            momentum=momentum, eps=eps, shuffle_last=shuffle_last, process_group=process_group,
        )  # fmt: skip
    if not training:
        return _eval_op(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps, shuffle_last)
    out, mean, invstd = _train_op(input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last)
    if running_mean is not None:
        _update_running_stats(running_mean, running_var, mean, invstd, eps, momentum, _count(out))
    return out


def _count(out: Tensor) -> int | torch.SymInt:
    return out.shape[0] * out.shape[2] * out.shape[3]


def _update_running_stats(
    running_mean: Tensor, running_var: Tensor, mean: Tensor, invstd: Tensor, eps: float, momentum: float,
    count: int | torch.SymInt,
) -> None:
    # As F.batch_norm: (1 - m) * old + m * new, with the unbiased batch variance.
    ops.update_running_stats(running_mean, running_var, mean, invstd, momentum, eps, count)
