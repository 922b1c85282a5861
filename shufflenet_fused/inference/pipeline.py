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
from ..ops._library import all_identical, ops
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
    """The op's arguments for one module, the input channels it takes, and what they were
    read from."""

    __slots__ = ("args", "channels", "dicts", "keys", "values", "identities")

    def __init__(self, module: nn.Module, build: Builder, channels: Callable[[nn.Module], int]):
        self.args = build(module)
        self.channels = channels(module)
        modules = list(module.modules())
        # Every (container, key, object) below the module: replacing a submodule, a
        # parameter or a buffer (or setting one to None) rebuilds the arguments.
        watched = [(d, key, value) for m in modules for d in (m._modules, m._parameters, m._buffers)
                   for key, value in d.items()]  # fmt: skip
        self.identities = len(watched)
        # Then the plain attributes read, compared by value.
        watched += [(m.__dict__, key, m.__dict__[key]) for m in modules for key in _WATCHED if key in m.__dict__]
        watched += [(m.__dict__, "training", m.training) for m in modules if isinstance(m, _BatchNorm)]
        self.dicts = [d for d, _, _ in watched]
        self.keys = [key for _, key, _ in watched]
        self.values = [value for _, _, value in watched]

    def current(self) -> bool:
        # The common case in C (a Python loop would be a few percent of a batch-1 call):
        # every entry still holds the very object read.
        if all_identical(self.dicts, self.keys, self.values):
            return True
        # Something was re-assigned: slots must still be the same objects; attributes only
        # equal (an equal value re-assigned, e.g. `conv.stride = (1, 1)`), kept for next time.
        for i, (d, key, value) in enumerate(zip(self.dicts, self.keys, self.values, strict=True)):
            now = d.get(key, _MISSING)  # a deleted entry is not one holding None
            if now is value:
                continue
            if i < self.identities or now != value:
                return False
            self.values[i] = now
        return True


_MISSING = object()
_cache: weakref.WeakKeyDictionary[nn.Module, _Arguments] = weakref.WeakKeyDictionary()
_infer = ops.shufflenet_v1_infer.default  # the OpOverload: one Python call less than the packet


def _arguments(module: nn.Module, build: Builder, channels: Callable[[nn.Module], int]) -> _Arguments | None:
    entry = _cache.get(module)
    if entry is None or not entry.current():
        try:
            entry = _Arguments(module, build, channels)
        except arguments.Unsupported:
            _cache.pop(module, None)
            return None
        _cache[module] = entry
    return entry


def _eligible(module: nn.Module, x: Tensor, compiling: bool) -> bool:
    # Cheapest tests first, and no torch.device built (x.is_cpu): this runs on every call.
    if not _enabled or module.training or x.dtype is not torch.float32 or not x.is_cpu or x.dim() != 4:
        return False
    if torch._C._get_tracing_state() is not None or (compiling and exporting_to_onnx()):
        return False  # the exporters see the modules
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())))


def _run(module: nn.Module, x: Tensor, build: Builder, channels: Callable[[nn.Module], int]) -> Tensor | None:
    """The op's output, or None when the module must run its modules: training, a gradient
    needed, another dtype or device, switched off, a structure the op does not compute, or
    ``x`` with the wrong number of channels (the modules then raise their own error)."""
    compiling = torch.compiler.is_compiling()
    if not _eligible(module, x, compiling):
        return None
    if compiling:
        # Traced once: dynamo guards on the modules itself, nothing to cache.
        try:
            args, takes = build(module), channels(module)
        except arguments.Unsupported:
            return None
    else:
        entry = _arguments(module, build, channels)
        if entry is None:
            return None
        args, takes = entry.args, entry.channels
    if x.shape[1] != takes:
        return None
    return _infer(x, *args)


def _block_channels(block: nn.Module) -> int:
    return block.inp


def _network_channels(model: nn.Module) -> int:
    return model.first_conv[0].in_channels


def try_block(block: nn.Module, x: Tensor) -> Tensor | None:
    """The block's output through the inference op, or None when the block must run its
    modules (training, a gradient needed, another dtype or device, switched off)."""
    return _run(block, x, arguments.single_block_arguments, _block_channels)


def try_network(model: nn.Module, x: Tensor) -> Tensor | None:
    """The network's logits through the inference op, or None (see :func:`try_block`); also
    None when a block is not fused, or the last feature map would not pool to 1x1 (Megvii's
    ``AvgPool2d(7)``)."""
    # Five halvings (stem conv, max pool, three stride-2 stages), each (n - 1) // 2 + 1,
    # make ceil(n / 32); the head's 7x7 window must cover it once: 7 <= ceil(n / 32) < 14.
    if x.dim() != 4 or not (193 <= x.shape[2] <= 416 and 193 <= x.shape[3] <= 416):
        return None
    return _run(model, x, arguments.network_arguments, _network_channels)
