"""Synchronized BatchNorm: batch statistics pooled over the processes of a group.

As ``nn.SyncBatchNorm`` defines it, for the fused op and for plain BatchNorm layers, on
any device ``torch.distributed`` serves (gloo on CPU, NCCL on CUDA); PyTorch's own
``nn.SyncBatchNorm`` runs on GPUs only.

Forward: each process reduces its batch to per-channel moments (count, mean, M2, the sum
of squared deviations); the processes all-gather them and each merges the list in rank
order (Chan et al.'s pairwise formula), so the pooled statistics are exact and the same
bits on every process. The output is BN with the pooled mean and biased variance; the
running statistics get the pooled mean and unbiased variance.

Backward: each process reduces ``sum(g)`` and ``sum(g * xhat)`` per channel over its
batch; the sums are all-gathered and added in rank order; then, with ``N`` the pooled
count, ``dz = gamma * invstd * (g - sum(g) / N - xhat * sum(g * xhat) / N)``. The BN
parameters' gradients are the process's own sums, as in ``nn.SyncBatchNorm``:
``DistributedDataParallel`` averages them like every other gradient.

Every process of the group must make the same calls in the same order (they are
collectives). Eager mode only: the collectives run inside ``torch.autograd.Function``s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._library import ops

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def group_size(process_group: ProcessGroup | None) -> int:
    """The number of processes that pool their statistics: 1 without ``torch.distributed``."""
    if process_group is None or not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(process_group)


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of batch statistics, as the fused ops return them (F.batch_norm's too)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _gather_rows(row: Tensor, process_group: ProcessGroup) -> list[Tensor]:
    """Every process's ``row``, in rank order."""
    rows = [torch.empty_like(row) for _ in range(dist.get_world_size(process_group))]
    dist.all_gather(rows, row.contiguous(), group=process_group)
    return rows


def _pooled_moments(
    count: int, mean: Tensor, m2: Tensor, process_group: ProcessGroup
) -> tuple[float, Tensor, Tensor]:
    """(count, mean, M2) of the union of every process's batch, in float64."""
    c = mean.numel()
    row = torch.cat([mean.new_full((1,), float(count), dtype=torch.float64), mean.double(), m2.double()])
    rows = _gather_rows(row, process_group)
    n, mu, acc = float(rows[0][0]), rows[0][1 : c + 1], rows[0][c + 1 :]
    for r in rows[1:]:
        nb = float(r[0])
        total = n + nb
        if nb == 0:
            continue
        delta = r[1 : c + 1] - mu
        mu = mu + delta * (nb / total)
        acc = acc + r[c + 1 :] + delta * delta * (n * nb / total)
        n = total
    return n, mu, acc


def _pooled_sums(sum_g: Tensor, sum_gxhat: Tensor, process_group: ProcessGroup) -> tuple[Tensor, Tensor]:
    """``sum(g)`` and ``sum(g * xhat)`` over every process's batch, added in rank order."""
    rows = _gather_rows(torch.cat([sum_g, sum_gxhat]), process_group)
    total = rows[0].clone()
    for r in rows[1:]:
        total += r
    c = sum_g.numel()
    return total[:c], total[c:]


def _check_pooled_count(count: float, input: Tensor) -> None:
    # Raised on every process alike: the pooled count is the same everywhere.
    if count <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input size "
            f"{tuple(input.shape)} and {count:g} values per channel over the process group"
        )


def _update_running_stats(
    running_mean: Tensor | None, running_var: Tensor | None, count: float, mean: Tensor, m2: Tensor,
    momentum: float,
) -> None:
    # As F.batch_norm: (1 - momentum) * old + momentum * new, unbiased variance.
    if running_mean is None or running_var is None:
        return
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_((m2 / (count - 1)).to(running_var.dtype), alpha=momentum)


def _bn_input_grad(
    g: Tensor, xhat: Tensor, gamma: Tensor, invstd: Tensor, sum_g: Tensor, sum_gxhat: Tensor, count: float
) -> Tensor:
    """BN's backward with pooled sums; per-channel vectors already in ``g``'s channel order."""
    shape = (1, -1) + (1,) * (g.dim() - 2)
    a = gamma * invstd
    dz = (
        g.to(a.dtype) * a.view(shape)
        - (a * sum_g / count).view(shape)
        - xhat.to(a.dtype) * (a * sum_gxhat / count).view(shape)
    )
    return dz.to(g.dtype)


class _SyncBatchNorm(torch.autograd.Function):
    """Plain BatchNorm (any ``N x C x ...`` input) with pooled statistics."""

    @staticmethod
    def forward(
        ctx, input: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
        running_var: Tensor | None, momentum: float, eps: float, process_group: ProcessGroup,
    ) -> Tensor:  # fmt: skip
        sdt = _stat_dtype(input.dtype)
        dims = [0] + list(range(2, input.dim()))
        count = input.numel() // input.shape[1]
        if count > 0:
            var, mean = torch.var_mean(input.to(sdt), dim=dims, correction=0)
        else:
            var = mean = input.new_zeros(input.shape[1], dtype=sdt)
        n, mean_g, m2_g = _pooled_moments(count, mean, var.double() * count, process_group)
        _check_pooled_count(n, input)
        var_g = m2_g / n
        _update_running_stats(running_mean, running_var, n, mean_g, m2_g, momentum)
        mean_s, var_s = mean_g.to(sdt), var_g.to(sdt)
        ctx.save_for_backward(input, weight, mean_s, var_s)
        ctx.stats = (n, eps, process_group)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return F.batch_norm(input, mean_s, var_s, weight, bias, False, 0.0, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, weight, mean, var = ctx.saved_tensors
        n, eps, process_group = ctx.stats
        shape = (1, -1) + (1,) * (input.dim() - 2)
        invstd = torch.rsqrt(var + eps)
        xhat = (input.to(mean.dtype) - mean.view(shape)) * invstd.view(shape)
        dims = [0] + list(range(2, input.dim()))
        sum_g = torch.sum(grad_output, dim=dims, dtype=torch.float64)
        sum_gxhat = torch.sum(grad_output.to(xhat.dtype) * xhat, dim=dims, dtype=torch.float64)
        total_g, total_gxhat = _pooled_sums(sum_g, sum_gxhat, process_group)
        gamma = torch.ones_like(mean) if weight is None else weight.detach().to(mean.dtype)
        grad_input = _bn_input_grad(
            grad_output, xhat, gamma, invstd, total_g.to(mean.dtype), total_gxhat.to(mean.dtype), n
        )
        grad_weight = None if weight is None else sum_gxhat.to(weight.dtype)
        grad_bias = None if ctx.bias_dtype is None else sum_g.to(ctx.bias_dtype)
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


def sync_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    *,
    momentum: float = 0.1,
    eps: float = 1e-5,
    process_group: ProcessGroup,
) -> Tensor:
    """``F.batch_norm(input, ..., training=True)`` with the statistics of the whole group."""
    return _SyncBatchNorm.apply(input, weight, bias, running_mean, running_var, momentum, eps, process_group)


def param_channel_of_output(c: int, groups: int, shuffle_last: bool, device: torch.device) -> Tensor:
    """``perm[o]``: the parameter channel whose result the fused op writes to output channel ``o``
    (docs/design.md section 3: the shuffle after the BN moves channels, the one before does not)."""
    channels = torch.arange(c, device=device)
    if not shuffle_last or groups == 1:
        return channels
    return channels.view(groups, c // groups).t().reshape(c)


def _to_params(per_output: Tensor, perm: Tensor) -> Tensor:
    out = torch.empty_like(per_output)
    out[perm] = per_output
    return out


class _SyncShuffleDwconvBn(torch.autograd.Function):
    """The fused op in training mode with pooled statistics (ops: dwconv_bn_train for the
    local moments, dwconv_bn_eval to normalise, dwconv_bn_backward in frozen mode for the
    convolution's gradients)."""

    @staticmethod
    def forward(
        ctx, input: Tensor, weight: Tensor, bn_weight: Tensor | None, bn_bias: Tensor | None,
        running_mean: Tensor | None, running_var: Tensor | None, groups: int, stride: int, momentum: float,
        eps: float, shuffle_last: bool, process_group: ProcessGroup,
    ) -> Tensor:  # fmt: skip
        c = input.shape[1]
        sdt = _stat_dtype(input.dtype)
        perm = param_channel_of_output(c, groups, shuffle_last, input.device)
        k = weight.shape[-1]
        # Padding k // 2 with odd k: Ho = (H - 1) // stride + 1.
        count = input.shape[0] * ((input.shape[2] - 1) // stride + 1) * ((input.shape[3] - 1) // stride + 1)
        mean = m2 = input.new_zeros(c, dtype=torch.float64)
        if count > 1:
            # The op's own statistics; M2 from sum(xhat^2) / invstd^2 keeps its relative
            # precision where var << eps (count * (invstd^-2 - eps) would cancel).
            xhat, mean_l, invstd_l = ops.dwconv_bn_train.default(
                input, weight, None, None, groups, stride, eps, shuffle_last
            )
            sq = _to_params(torch.sum(xhat.double().square(), dim=(0, 2, 3)), perm)
            mean, m2 = mean_l.double(), sq / invstd_l.double().square()
        elif count == 1:
            x = input if shuffle_last or groups == 1 else F.channel_shuffle(input, groups)
            mean = F.conv2d(x, weight, None, stride, k // 2, 1, c).reshape(c).double()
        n, mean_g, m2_g = _pooled_moments(count, mean, m2, process_group)
        _check_pooled_count(n, input)
        _update_running_stats(running_mean, running_var, n, mean_g, m2_g, momentum)
        mean_s, var_s = mean_g.to(sdt), (m2_g / n).to(sdt)
        ctx.save_for_backward(input, weight, bn_weight, mean_s, var_s, perm)
        ctx.args = (groups, stride, eps, shuffle_last, n, process_group)
        ctx.bias_dtype = None if bn_bias is None else bn_bias.dtype
        return ops.dwconv_bn_eval.default(
            input, weight, mean_s, var_s, bn_weight, bn_bias, groups, stride, eps, shuffle_last
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, weight, bn_weight, mean, var, perm = ctx.saved_tensors
        groups, stride, eps, shuffle_last, n, process_group = ctx.args
        xhat = ops.dwconv_bn_eval.default(input, weight, mean, var, None, None, groups, stride, eps, shuffle_last)
        sum_g = _to_params(torch.sum(grad_output, dim=(0, 2, 3), dtype=torch.float64), perm)
        sum_gxhat = _to_params(
            torch.sum(grad_output.to(mean.dtype) * xhat.to(mean.dtype), dim=(0, 2, 3), dtype=torch.float64), perm
        )
        total_g, total_gxhat = _pooled_sums(sum_g, sum_gxhat, process_group)
        invstd = torch.rsqrt(var + eps)
        gamma = torch.ones_like(mean) if bn_weight is None else bn_weight.detach().to(mean.dtype)
        # dz in the output's channel order; the frozen-statistics backward with gamma = 1 and
        # invstd = 1 then takes dz through the convolution (and the shuffle) unchanged.
        dz = _bn_input_grad(
            grad_output, xhat, gamma[perm], invstd[perm], total_g.to(mean.dtype)[perm],
            total_gxhat.to(mean.dtype)[perm], n,
        )  # fmt: skip
        grad_input, grad_weight, _, _ = ops.dwconv_bn_backward.default(
            dz, input, weight, None, mean, torch.ones_like(mean), groups, stride, shuffle_last, False
        )
        grad_gamma = None if bn_weight is None else sum_gxhat.to(bn_weight.dtype)
        grad_beta = None if ctx.bias_dtype is None else sum_g.to(ctx.bias_dtype)
        return grad_input, grad_weight, grad_gamma, grad_beta, None, None, None, None, None, None, None, None


def sync_shuffle_dwconv_bn(
    input: Tensor, weight: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
    bn_weight: Tensor | None, bn_bias: Tensor | None, *, groups: int, stride: int, momentum: float, eps: float,
    shuffle_last: bool, process_group: ProcessGroup,
) -> Tensor:  # fmt: skip
    """The fused op's training forward with the statistics of the whole group (arguments
    already checked by :func:`shufflenet_fused.shuffle_dwconv_bn`)."""
    return _SyncShuffleDwconvBn.apply(
        input, weight, bn_weight, bn_bias, running_mean, running_var, groups, stride, momentum, eps,
        shuffle_last, process_group,
    )  # fmt: skip
