"""Runs one case: builds its variants, warms up (compiles), checks, times, measures memory.

Nothing here raises because of one variant: a failing build, compile or call becomes that
variant's ``status`` (``"compile failed: InductorError"``, ``"failed: ValueError: ..."``),
and the other variants are still measured.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from . import anchors, timing
from .cases import Case
from .variants import Runner, Workload, rel_error, tolerance

OK = "ok"


@dataclass
class VariantResult:
    status: str = OK
    error: str | None = None  # longer message of a failure
    first_call_s: float | None = None  # first call, torch.compile's compilation included
    rounds: int = 0
    inner: int = 0
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    images_per_s: float | None = None
    peak_mem_bytes: int | None = None
    check_rel_err: float | None = None  # vs ref-eager, first call (output and gradients)
    check_worst: str | None = None
    check_ok: bool | None = None
    samples_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == OK


def _is_compile_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
            return True
        e = getattr(e, "inner_exception", None) or e.__cause__
    return False


def _error_name(exc: BaseException) -> str:
    inner = getattr(exc, "inner_exception", None)
    if type(exc).__name__ == "BackendCompilerFailed" and inner is not None:
        return type(inner).__name__
    return type(exc).__name__


def describe_failure(exc: BaseException, compiled: bool, eager_ok: bool) -> str:
    """``compile failed: Name`` for a compiled variant whose eager twin works, else ``failed: Name: msg``."""
    name = _error_name(exc)
    if compiled and (eager_ok or _is_compile_error(exc)):
        return f"compile failed: {name}"
    return f"failed: {name}: {timing.first_line(exc)}"


def run_case(
    case: Case,
    variants: list[str],
    settings: timing.TimingSettings,
    optimizer_step: bool = False,
    measure_memory: bool = True,
    status: Callable[[str, float], None] | None = None,
    info: dict | None = None,
) -> dict[str, VariantResult]:
    """Measures one case; ``info`` (if given) receives ``others_cores``: the CPU other processes
    used while the variants were timed (see :class:`timing.OtherLoad`)."""

    def report(text: str, fraction: float = 0.0) -> None:
        if status is not None:
            status(text, fraction)

    results = {v: VariantResult() for v in variants}
    if case.mode == "train" and not case.trainable():
        for r in results.values():
            r.status = "skipped: BatchNorm training needs more than one value per channel"
        return results
    if any(v.endswith("compiled") for v in variants):
        torch._dynamo.reset()  # a fresh cache per case: no recompile limit, no shape reuse

    try:
        work = Workload(case, optimizer_step=optimizer_step)
    except Exception as exc:
        for r in results.values():
            r.status = f"failed: {type(exc).__name__}: {timing.first_line(exc)}"
        return results

    runners: dict[str, Runner] = {}
    estimates: dict[str, float] = {}
    reference_out: dict[str, torch.Tensor] | None = None
    n = len(variants)
    for i, name in enumerate(variants):
        r = results[name]
        compiled = name.endswith("compiled")
        twin = name.replace("compiled", "eager")
        eager_ok = twin in results and results[twin].ok and twin != name
        report(f"{name}: {'compiling' if compiled else 'first call'}", i / (2 * n))
        try:
            runner = work.build(name)
        except anchors.Unavailable as exc:
            r.status = f"skipped: {exc}"
            continue
        except Exception as exc:
            r.status = describe_failure(exc, compiled, eager_ok)
            r.error = f"{type(exc).__name__}: {timing.first_line(exc, 2000)}"
            continue
        try:
            t0 = time.perf_counter()
            out = runner.results()
            timing.sync(case.device)
            r.first_call_s = time.perf_counter() - t0
        except Exception as exc:
            r.status = describe_failure(exc, compiled, eager_ok)
            r.error = f"{type(exc).__name__}: {timing.first_line(exc, 2000)}"
            continue
        if name == "ref-eager":
            reference_out = out
        elif reference_out is not None:
            r.check_rel_err, r.check_worst = rel_error(out, reference_out)
            r.check_ok = r.check_rel_err <= tolerance(case.dtype, case.level)
        del out
        report(f"{name}: warm-up", (i + 0.5) / (2 * n))
        try:
            estimates[name] = timing.warm_up(runner, case.device, settings)
        except Exception as exc:
            r.status = f"failed: {type(exc).__name__}: {timing.first_line(exc)}"
            r.error = f"{type(exc).__name__}: {timing.first_line(exc, 2000)}"
            continue
        runners[name] = runner
    reference_out = None

    if runners:
        rounds, inner = timing.plan(estimates, settings)

        def on_round(done: int, total: int) -> None:
            report(f"timing {done}/{total}", 0.5 + 0.45 * done / total)

        with timing.OtherLoad() as load:
            # Settling only where another runtime's threads share the cores with torch's.
            foreign = any(name in anchors.FOREIGN_RUNTIMES for name in runners)
            settle_s = settings.settle_s if foreign else 0.0
            samples, errors = timing.measure_interleaved(runners, rounds, inner, case.device, on_round, settle_s)
        if info is not None:
            info["others_cores"] = load.cores
        for name in runners:
            r = results[name]
            r.rounds, r.inner = len(samples[name]), inner[name]
            if name in errors:
                r.status = errors[name]
                continue
            r.samples_ms = [s * 1e3 for s in samples[name]]
            for key, value in timing.summarize(samples[name]).items():
                setattr(r, key, value)
            r.images_per_s = case.batch / (r.median_ms / 1e3)
        if measure_memory:
            report("peak memory", 0.97)
            for name, runner in runners.items():
                if results[name].ok:
                    try:
                        gc.collect()
                        results[name].peak_mem_bytes = timing.peak_memory(runner, case.device, runner.release_grads)
                    except Exception as exc:  # memory is extra information: keep the timings
                        results[name].error = f"peak memory: {type(exc).__name__}: {timing.first_line(exc)}"
    runners.clear()
    del work
    gc.collect()
    return results


def result_dict(r: VariantResult, keep_samples: bool = True) -> dict:
    d = asdict(r)
    if not keep_samples:
        d.pop("samples_ms")
    return d
