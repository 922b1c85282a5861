"""The arguments of the inference op for a ShuffleNetV1 or one of its blocks.

``torch.ops.shufflenet_fused.shufflenet_v1_infer(input, params, eps, plan)`` runs a whole
network (stem, blocks, head) or a chain of blocks in float32 from the modules' own tensors:
every convolution with its BatchNorm (weight, bias, BN weight, BN bias, running mean, running
var), one eps per BatchNorm, and the block shapes (csrc/cpu/inference/inference_cpu.cpp
documents the layout). The op folds the BatchNorms itself on every call, so nothing here is
cached that could go stale. A module the op does not compute (another kernel size or pooling,
a BatchNorm without running statistics or in training mode, a tensor that is not a float32
CPU tensor) raises :class:`Unsupported`, and the caller runs the modules instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.utils import _pair

Params = list[Tensor | None]


class Unsupported(Exception):
    """The module has a structure or state the inference op does not compute."""


def _check_tensor(t: Tensor | None) -> None:
    if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu"):
        raise Unsupported(f"a {t.dtype} tensor on {t.device}: the inference op takes float32 CPU tensors")


def plain_conv(conv: nn.Module, kernel: int, stride: int) -> bool:
    """Whether ``conv`` is an ``nn.Conv2d`` with a ``kernel`` x ``kernel`` window, this stride,
    zero padding ``kernel // 2`` and no dilation: the convolutions the fused kernels compute
    (the fused blocks check their depthwise conv with it too)."""
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (kernel, kernel) and conv.stride == (stride, stride)
        and conv.padding == (kernel // 2, kernel // 2) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
    )  # fmt: skip


def _conv_bn(conv: nn.Module, bn: nn.Module, *, kernel: int, stride: int, params: Params, eps: list[float]) -> None:
    """Appends ``conv`` and ``bn``'s tensors to ``params`` and the BN's eps to ``eps``."""
    if not plain_conv(conv, kernel, stride):
        raise Unsupported(f"unexpected convolution {conv}")
    if not isinstance(bn, _BatchNorm) or bn.training or bn.running_mean is None or bn.running_var is None:
        raise Unsupported("a BatchNorm in training mode or without running statistics")
    tensors = [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var]
    for t in tensors:
        _check_tensor(t)
    params += tensors
    eps.append(float(bn.eps))


def block_arguments(block: nn.Module, params: Params, eps: list[float]) -> list[int]:
    """Appends a ``ShuffleV1Block``'s tensors and BN eps; returns its plan ints."""
    main1, main2 = block.branch_main_1, block.branch_main_2
    if (
        block.ksize != 3 or len(main1) != 5 or len(main2) != 2 or type(main1[2]) is not nn.ReLU
        or main1[3].groups != block.mid_channels
    ):  # fmt: skip
        raise Unsupported("the inference op runs 3x3 blocks of Megvii's structure only")
    if block.stride == 2:
        proj = block.branch_proj
        if not (
            type(proj) is nn.AvgPool2d and _pair(proj.kernel_size) == (3, 3) and _pair(proj.stride) == (2, 2)
            and _pair(proj.padding) == (1, 1) and proj.count_include_pad and not proj.ceil_mode
            and proj.divisor_override is None
        ):  # fmt: skip
            raise Unsupported("unexpected projection pooling")
    _conv_bn(main1[0], main1[1], kernel=1, stride=1, params=params, eps=eps)
    _conv_bn(main1[3], main1[4], kernel=3, stride=block.stride, params=params, eps=eps)
    _conv_bn(main2[0], main2[1], kernel=1, stride=1, params=params, eps=eps)
    oup = block.inp if block.stride == 1 else block.inp + main2[0].out_channels
    return [block.inp, oup, block.mid_channels, main1[0].groups, main2[0].groups, block.stride,
            block.shuffle_groups]  # fmt: skip


def network_arguments(model: nn.Module) -> tuple[Params, list[float], list[int]]:
    """(params, eps, plan) of a whole ``ShuffleNetV1``."""
    stem, pool, head, classifier = model.first_conv, model.maxpool, model.globalpool, model.classifier
    if (
        len(stem) != 3 or type(stem[2]) is not nn.ReLU
        or type(pool) is not nn.MaxPool2d or _pair(pool.kernel_size) != (3, 3) or _pair(pool.stride) != (2, 2)
        or _pair(pool.padding) != (1, 1) or _pair(pool.dilation) != (1, 1) or pool.ceil_mode
        or type(head) is not nn.AvgPool2d or _pair(head.kernel_size) != (7, 7)
        or _pair(head.stride) != (7, 7) or _pair(head.padding) != (0, 0) or head.ceil_mode
        or head.divisor_override is not None
        or len(classifier) != 1 or type(classifier[0]) is not nn.Linear
    ):  # fmt: skip
        raise Unsupported("the inference op runs Megvii's ShuffleNetV1 structure only")
    if not all(block.fused for block in model.features):
        raise Unsupported("a block that is not fused runs its modules")
    params: Params = []
    eps: list[float] = []
    _conv_bn(stem[0], stem[1], kernel=3, stride=2, params=params, eps=eps)
    plan = [1, 1, len(model.features)]
    for block in model.features:
        plan += block_arguments(block, params, eps)
    linear = classifier[0]
    for t in (linear.weight, linear.bias):
        _check_tensor(t)
    params += [linear.weight, linear.bias]
    return params, eps, plan


def single_block_arguments(block: nn.Module) -> tuple[Params, list[float], list[int]]:
    """(params, eps, plan) of one ``ShuffleV1Block`` run on its own."""
    params: Params = []
    eps: list[float] = []
    plan = [0, 0, 1, *block_arguments(block, params, eps)]  # no stem, no head, one block
    return params, eps, plan
