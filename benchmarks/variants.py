"""The four variants of a case, as zero-argument callables on shared inputs.

``ref-eager``      the reference: ``shufflenet_fused.reference.shuffle_dwconv_bn`` (op) or the
                   block / network built with ``fused=False`` (Megvii's sequence of modules);
``ref-compiled``   the same under ``torch.compile(dynamic=False)``;
``fused-eager``    ``shufflenet_fused.shuffle_dwconv_bn`` (op) or the reference module passed
                   through ``shufflenet_fused.fuse`` (same weights);
``fused-compiled`` the same under ``torch.compile(dynamic=False)``.

All variants of a case start from identical values: the same input tensor (each variant a
``detach()`` alias of it, so gradients land in separate ``.grad``), and their own copy of the
same parameters and BatchNorm buffers (running statistics update per variant). A call is, in
``eval`` mode, one forward under ``torch.no_grad()``; in ``train`` mode one forward and
backward (gradient ``grad_out`` fixed per case for op/block, cross-entropy on fixed labels
for the model), plus ``optimizer.step()`` (SGD, momentum 0.9) when asked. ``torch.compile``
covers forward and backward, never the optimizer step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import anchors
from .cases import BlockSpec, Case, ModelSpec, OpSpec

CORE_VARIANTS = ("ref-eager", "ref-compiled", "fused-eager", "fused-compiled")
# Model level, eval: the runtimes users deploy with (anchors.py), when installed.
VARIANTS = CORE_VARIANTS + anchors.ANCHORS
EAGER_VARIANTS = ("ref-eager", "fused-eager", "ort", "openvino")


def level_unavailable(level: str) -> str | None:
    """Why a level cannot run with the installed package, or None."""
    try:
        import shufflenet_fused as sf
    except Exception as exc:  # the extension itself failed to load
        return f"import shufflenet_fused failed: {type(exc).__name__}: {exc}"
    needed = {
        "op": ("shuffle_dwconv_bn", "reference"),
        "block": ("ShuffleV1Block", "fuse"),
        "model": ("ShuffleNetV1", "fuse"),
    }[level]
    missing = [n for n in needed if not hasattr(sf, n)]
    if missing:
        return f"shufflenet_fused has no {', '.join(missing)} (not written yet)"
    return None


@dataclass
class Runner:
    """One variant of a case: ``runner()`` performs one call (eval forward or train step)."""

    forward: Callable[[], Tensor]
    mode: str
    leaves: dict[str, Tensor]  # tensors whose .grad the step produces (input, parameters)
    backward: Callable[[Tensor], None]
    optimizer: torch.optim.Optimizer | None = None
    autocast: torch.dtype | None = None
    device: str = "cpu"
    modules: list[nn.Module] = field(default_factory=list)  # kept alive with the runner

    def _forward(self) -> Tensor:
        if self.autocast is None:
            return self.forward()
        with torch.autocast(self.device, dtype=self.autocast):
            return self.forward()

    def release_grads(self) -> None:
        for t in self.leaves.values():
            t.grad = None

    def __call__(self) -> Tensor:
        if self.mode == "eval":
            with torch.no_grad():
                return self._forward()
        self.release_grads()
        y = self._forward()
        self.backward(y)
        if self.optimizer is not None:
            self.optimizer.step()
        return y

    def results(self) -> dict[str, Tensor]:
        """One call; its output and the gradients it produced (for the correctness check)."""
        y = self()
        out = {"output": y.detach()}
        if self.mode == "train":
            for name, t in self.leaves.items():
                if t.grad is not None:
                    out[f"grad.{name}"] = t.grad.detach()
        return out


def rel_error(got: dict[str, Tensor], want: dict[str, Tensor]) -> tuple[float, str]:
    """Worst relative difference over the tensors, and the name of the worst tensor.

    Per tensor: ``max|got - want| / max(max|want|, 1e-3 * M)`` with ``M`` the largest
    ``max|want|`` of all tensors compared. The floor keeps tensors that are zero up to rounding
    (e.g. the gradient of a bias followed by a training-mode BatchNorm) from reporting their
    rounding noise as a 100% error.
    """
    if any(name not in got or got[name].shape != w.shape for name, w in want.items()):
        return float("inf"), "a tensor is missing or of another shape"
    scale = {name: w.detach().double().abs().max().item() if w.numel() else 0.0 for name, w in want.items()}
    floor = 1e-3 * max(scale.values(), default=0.0) or 1e-12
    worst, where = 0.0, ""
    for name, w in want.items():
        if not w.numel():
            continue
        diff = (got[name].detach().double() - w.detach().double()).abs().max().item()
        err = diff / max(scale[name], floor)
        if err > worst or not where:
            worst, where = err, name
    return worst, where


def tolerance(dtype: str, level: str) -> float:
    """Above this relative difference the check says MISMATCH.

    The whole network in training mode backpropagates through 49 BatchNorms with batch
    statistics, which amplifies rounding: ref compiled differs from ref eager by ~6e-3 there.
    """
    base = 1e-3 if dtype == "float32" else 5e-2
    return base * (20 if level == "model" else 1)


class Workload:
    """Inputs and initial weights of one case, from which each variant is built."""

    def __init__(self, case: Case, optimizer_step: bool = False, seed: int = 0) -> None:
        self.case = case
        self.optimizer_step = optimizer_step and case.mode == "train"
        self.device = case.device
        self.dtype = case.torch_dtype
        self.memory_format = torch.channels_last if case.layout == "channels_last" else torch.contiguous_format
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(case.input_shape(), generator=gen)
        self.x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        self._grad_out: Tensor | None = None
        self._gen = gen
        spec = case.spec
        if isinstance(spec, OpSpec):
            c, k = spec.c, spec.k
            self.params = {
                "weight": torch.randn(c, 1, k, k, generator=gen) / k,
                "bn_weight": 1 + 0.1 * torch.randn(c, generator=gen),
                "bn_bias": 0.1 * torch.randn(c, generator=gen),
            }
            self.buffers = {
                "running_mean": 0.1 * torch.randn(c, generator=gen),
                "running_var": 0.75 + 0.5 * torch.rand(c, generator=gen),
            }
        else:
            torch.manual_seed(seed)
            self.module = self._reference_module(spec)
            self.labels = torch.randint(0, 1000, (case.batch,), generator=gen).to(self.device)

    # ---------------------------------------------------------------- building ----

    def build(self, variant: str) -> Runner:
        if variant in anchors.ANCHORS:
            if isinstance(self.case.spec, OpSpec):
                raise anchors.Unavailable("anchors run at model level, eval mode, float32 on CPU")
            forward = anchors.build(variant, self.module, self.x, level=self.case.level, mode=self.case.mode,
                                    device=self.device)  # fmt: skip
            return Runner(forward, "eval", {}, self._backward_loss, None, None, self.device)
        fused = variant.startswith("fused")
        compiled = variant.endswith("compiled")
        if isinstance(self.case.spec, OpSpec):
            return self._op_runner(fused, compiled)
        return self._module_runner(fused, compiled)

    def _op_runner(self, fused: bool, compiled: bool) -> Runner:
        import shufflenet_fused as sf
        from shufflenet_fused.ops import reference

        spec = self.case.spec
        assert isinstance(spec, OpSpec)
        train = self.case.mode == "train"
        fn = sf.shuffle_dwconv_bn if fused else reference.shuffle_dwconv_bn
        if compiled:
            fn = torch.compile(fn, dynamic=False)
        # Conv weight in the input dtype; BN parameters and running stats stay float32
        # (docs/design.md section 7, as nn.BatchNorm2d under autocast).
        w = self.params["weight"].to(self.device, self.dtype).requires_grad_(train)
        g = self.params["bn_weight"].to(self.device).requires_grad_(train)
        b = self.params["bn_bias"].to(self.device).requires_grad_(train)
        rm = self.buffers["running_mean"].to(self.device, copy=True)
        rv = self.buffers["running_var"].to(self.device, copy=True)
        x = self.x.detach().requires_grad_(train)
        kwargs = dict(groups=spec.groups, stride=spec.stride, training=train, order=spec.order)

        def forward() -> Tensor:
            return fn(x, w, rm, rv, g, b, **kwargs)

        leaves = {"input": x, "weight": w, "bn_weight": g, "bn_bias": b} if train else {}
        opt = torch.optim.SGD([w, g, b], lr=0.01, momentum=0.9) if self.optimizer_step else None
        return Runner(forward, self.case.mode, leaves, self._backward_with_grad_out, opt, None, self.device)

    def _reference_module(self, spec: BlockSpec | ModelSpec) -> nn.Module:
        import shufflenet_fused as sf

        if isinstance(spec, BlockSpec):
            module: nn.Module = sf.ShuffleV1Block(
                spec.inp,
                spec.oup,
                group=spec.group,
                first_group=spec.first_group,
                mid_channels=spec.mid,
                ksize=3,
                stride=spec.stride,
                fused=False,
            )
        else:
            module = sf.ShuffleNetV1(
                input_size=spec.input_size,
                n_class=1000,
                model_size=spec.model_size,
                group=spec.group,
                fused=False,
            )
        # Non-trivial BatchNorm statistics, so eval mode does not run on identity BN.
        gen = torch.Generator().manual_seed(1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.75 + 0.5 * torch.rand(m.num_features, generator=gen))
        return module

    def _module_runner(self, fused: bool, compiled: bool) -> Runner:
        import shufflenet_fused as sf

        train = self.case.mode == "train"
        module = copy.deepcopy(self.module)
        if fused:
            module = sf.fuse(module)
        module = module.to(self.device, memory_format=self.memory_format)
        module.train(train)
        callable_module = torch.compile(module, dynamic=False) if compiled else module
        # bf16/fp16 at block and model level: autocast, the way such models are trained and run.
        autocast = None if self.dtype == torch.float32 else self.dtype
        x = self.x.float().contiguous(memory_format=self.memory_format) if autocast else self.x
        is_model = isinstance(self.case.spec, ModelSpec)
        x = x.detach().requires_grad_(train and not is_model)

        def forward() -> Tensor:
            return callable_module(x)

        leaves = dict(module.named_parameters()) if train else {}
        if train and not is_model:
            leaves = {"input": x, **leaves}
        opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9) if self.optimizer_step else None
        backward = self._backward_loss if is_model else self._backward_with_grad_out
        return Runner(forward, self.case.mode, leaves, backward, opt, autocast, self.device, [module])

    # ---------------------------------------------------------------- backward ----

    def _backward_with_grad_out(self, y: Tensor) -> None:
        if self._grad_out is None or self._grad_out.shape != y.shape:
            g = torch.randn(y.shape, generator=self._gen).to(self.device, y.dtype)
            self._grad_out = g.contiguous(memory_format=self.memory_format)
        y.backward(self._grad_out.to(y.dtype))

    def _backward_loss(self, logits: Tensor) -> None:
        F.cross_entropy(logits.float(), self.labels).backward()
