"""The BatchNorm layers of the fused modules: what ``bn.forward`` would pass to
``F.batch_norm``, synchronized BatchNorm on any device, and which layers synchronize.

A layer synchronizes when it is an ``nn.SyncBatchNorm`` or a :class:`SyncBatchNorm` in
training mode and ``torch.distributed`` is initialized with more than one process in its
group: the rule of ``nn.SyncBatchNorm.forward``. The fused modules run such layers through
:mod:`shufflenet_fused.ops.sync_batch_norm` (PyTorch's runs on GPUs only) and pass the
group to the fused op for the BN inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ops.sync_batch_norm import group_size, sync_batch_norm

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def batch_norm_arguments(bn: _BatchNorm) -> tuple[Tensor | None, Tensor | None, bool, float]:
    """What ``bn.forward`` would pass to ``F.batch_norm``, with its side effect.

    Returns ``(running_mean, running_var, training, momentum)``. Like
    ``nn.BatchNorm2d.forward`` it increments ``bn.num_batches_tracked`` in training mode
    (when running statistics are tracked) and turns ``momentum=None`` into the cumulative
    average factor ``1 / num_batches_tracked``. ``training`` is True in training mode and
    also in eval mode when the module keeps no running statistics; the running statistics
    are None when training with ``track_running_stats=False``.
    """
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    training = bn.training or (bn.running_mean is None and bn.running_var is None)
    use_running = not bn.training or bn.track_running_stats
    return (bn.running_mean if use_running else None, bn.running_var if use_running else None, training,
            momentum)  # fmt: skip


class SyncBatchNorm(_BatchNorm):
    """Synchronized BatchNorm for ``N x C x ...`` inputs, on any device (gloo on CPU, NCCL on
    CUDA): ``nn.SyncBatchNorm`` with :mod:`shufflenet_fused.ops.sync_batch_norm` underneath.

    Use it where PyTorch's cannot run: on CPU, and under ``DistributedDataParallel`` of a CPU
    model (which rejects ``nn.SyncBatchNorm``); :func:`convert_sync_batchnorm` converts a model.
    In training mode with ``torch.distributed`` initialized and more than one process in
    ``process_group`` (default: the whole world) it normalizes with the statistics of every
    process's batch; otherwise it is ``nn.BatchNorm``. The fused block recognizes it and passes
    its group to the fused op. Same parameters, buffers and state_dict keys as ``BatchNorm2d``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: ProcessGroup | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        group = sync_group(self)
        if group is None:
            return super().forward(input)
        return _sync_batch_norm(self, input, group)


def convert_sync_batchnorm(module: nn.Module, process_group: ProcessGroup | None = None) -> nn.Module:
    """Every BatchNorm layer of ``module`` (``nn.SyncBatchNorm`` too) as a :class:`SyncBatchNorm`
    that shares its parameters and buffers, as ``nn.SyncBatchNorm.convert_sync_batchnorm``;
    returns the converted module (``module`` itself unless it is a BatchNorm layer)."""
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        converted = SyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
            process_group,
        )  # fmt: skip
        converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, process_group))
    return converted


def sync_group(bn: nn.Module) -> ProcessGroup | None:
    """The process group ``bn`` pools its batch statistics over, or None when it does not
    (not a synchronized BatchNorm, eval mode, no ``torch.distributed``, a group of one)."""
    if not isinstance(bn, (nn.SyncBatchNorm, SyncBatchNorm)) or not bn.training:
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    group = bn.process_group if bn.process_group is not None else dist.group.WORLD
    return group if group_size(group) > 1 else None


def run_layers(layers: Iterable[nn.Module], x: Tensor) -> Tensor:
    """``layers(x)``, with each ``nn.SyncBatchNorm`` that synchronizes run by shufflenet_fused
    (PyTorch's refuses CPU tensors)."""
    for layer in layers:
        group = sync_group(layer) if isinstance(layer, nn.SyncBatchNorm) else None
        x = layer(x) if group is None else _sync_batch_norm(layer, x, group)
    return x


def _sync_batch_norm(bn: _BatchNorm, x: Tensor, group: ProcessGroup) -> Tensor:
    running_mean, running_var, _, momentum = batch_norm_arguments(bn)
    return sync_batch_norm(
        x, running_mean, running_var, bn.weight, bn.bias, momentum=momentum, eps=bn.eps, process_group=group
    )
