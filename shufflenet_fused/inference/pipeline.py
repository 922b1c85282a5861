"""When a fused ``ShuffleNetV1``/``ShuffleV1Block`` runs the inference op instead of its modules.

The op folds every BatchNorm from the modules' tensors on each call, so an edit in place
(``load_state_dict``, an optimizer step, ``bn.running_var.fill_(...)``) is always seen. What
is kept per module between calls is only the list of tensors to pass and the structure it
was read from; every call checks that the modules, parameters and buffers are still the same
objects and the hyperparameters read (strides, groups, eps, training flags) unchanged, and
rebuilds the list otherwise. See docs/inference.md.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ops._export import exporting_to_onnx
from . import arguments

_ENV = "SHUFFLENET_FUSED_INFERENCE_PIPELINE"
_enabled = os.environ.get(_ENV, "1").lower() not in ("0", "false", "off", "no")

# Plain attributes the arguments depend on (checked on every call); `training` only
# where it changes what runs (the BatchNorms; the model itself is checked by the caller).
_WATCHED = ("stride", "padding", "dilation", "groups", "kernel_size", "padding_mode", "eps", "ceil_mode",
            "count_include_pad", "divisor_override", "ksize", "group", "mid_channels", "inp", "fused")  # fmt: skip


def is_enabled() -> bool:
    """Whether eval-mode fused models may run the inference op (the default; turned off by
    ``SHUFFLENET_FUSED_INFERENCE_PIPELINE=0`` or :func:`inference_pipeline`)."""
    return _enabled


@contextlib.contextmanager
def inference_pipeline(enabled: bool) -> Iterator[None]:
    """Turns the whole-network inference op on or off inside the block (off: eval-mode fused
    models run module by module, as in training). Process-wide, not per thread."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


Builder = Callable[[nn.Module], tuple[arguments.Params, list[float], list[int]]]


class _Arguments:
    """The op's arguments for one module and what they were read from."""

    __slots__ = ("args", "slots", "attributes")

    def __init__(self, module: nn.Module, build: Builder):
        self.args = build(module)
        modules = list(module.modules())
        # Every (container, key, object) below the module: replacing a submodule, a
        # parameter or a buffer (or setting one to None) rebuilds the arguments.
        self.slots = [(d, key, value) for m in modules for d in (m._modules, m._parameters, m._buffers)
                      for key, value in d.items()]  # fmt: skip
        self.attributes = [(m.__dict__, key, m.__dict__[key]) for m in modules for key in _WATCHED if key in m.__dict__]
        self.attributes += [(m.__dict__, "training", m.training) for m in modules if isinstance(m, _BatchNorm)]

    def current(self) -> bool:
        for d, key, value in self.slots:
            if d.get(key) is not value:
                return False
        for d, key, value in self.attributes:
            if d.get(key) != value:
                return False
        return True


_cache: weakref.WeakKeyDictionary[nn.Module, _Arguments] = weakref.WeakKeyDictionary()


def _arguments(module: nn.Module, build: Builder) -> tuple[arguments.Params, list[float], list[int]] | None:
    if torch.compiler.is_compiling():
        # Traced once: dynamo guards on the modules itself, nothing to cache.
        try:
            return build(module)
        except arguments.Unsupported:
            return None
    entry = _cache.get(module)
    if entry is None or not entry.current():
        try:
            entry = _Arguments(module, build)
        except arguments.Unsupported:
            _cache.pop(module, None)
            return None
        _cache[module] = entry
    return entry.args


def _eligible(module: nn.Module, x: Tensor) -> bool:
    if not _enabled or module.training or x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
        return False
    if torch._C._get_tracing_state() is not None or exporting_to_onnx():
        return False  # the exporters see the modules
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())))


def _run(module: nn.Module, x: Tensor, build: Builder) -> Tensor | None:
    args = _arguments(module, build)
    if args is None:
        return None
    params, eps, plan = args
    return torch.ops.shufflenet_fused.shufflenet_v1_infer(x, params, eps, plan)


def try_block(block: nn.Module, x: Tensor) -> Tensor | None:
    """The block's output through the inference op, or None when the block must run its
    modules (training, a gradient needed, another dtype or device, switched off)."""
    if not _eligible(block, x) or x.shape[1] != block.inp:
        return None
    return _run(block, x, arguments.single_block_arguments)


def try_network(model: nn.Module, x: Tensor) -> Tensor | None:
    """The network's logits through the inference op, or None (see :func:`try_block`); also
    None when the last feature map would not pool to 1x1 (Megvii's ``AvgPool2d(7)``)."""
    if not _eligible(model, x) or x.shape[1] != model.first_conv[0].in_channels:
        return None
    h, w = x.shape[2], x.shape[3]
    for _ in range(5):  # stem conv, max pool, three stride-2 stages
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    if not (7 <= h < 14 and 7 <= w < 14):
        return None
    return _run(model, x, arguments.network_arguments)
