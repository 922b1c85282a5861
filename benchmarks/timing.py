"""Timers, interleaved measurement and peak memory.

CPU: ``time.perf_counter`` around ``inner`` consecutive calls. CUDA: a pair of
``torch.cuda.Event`` around ``inner`` consecutive calls, with the device synchronised before
each sample (so a sample is the latency from an idle queue, launch overhead included).

Variants are measured round-robin (``a, b, c, d, b, c, d, a, ...``: the starting variant
rotates each round) so that drift on a shared machine hits them alike. Each variant gets the
same number of samples (rounds); a sample is the mean over ``inner`` calls, with ``inner``
chosen per variant so each variant spends about ``budget_s`` in total.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Fn = Callable[[], object]


@dataclass(frozen=True)
class TimingSettings:
    budget_s: float = 0.2  # per variant per case, timed samples only
    min_rounds: int = 10  # samples per variant, at least
    max_rounds: int = 100  # samples per variant, at most
    warmup_calls: int = 3  # after the first (compiling) call
    warmup_s: float = 0.05  # warm-up at least this long too
    min_sample_s: float = 1e-4  # a sample lasts at least this long (sets `inner`)
    # Untimed calls of the variant before each of its samples, at least this long, where
    # another runtime's thread pool shares the cores (see measure_interleaved).
    settle_s: float = 0.15


QUICK = TimingSettings(budget_s=0.03, min_rounds=3, max_rounds=10, warmup_calls=1, warmup_s=0.0, settle_s=0.05)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_sample(fn: Fn, inner: int, device: str) -> float:
    """Seconds per call, averaged over ``inner`` consecutive calls."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / inner
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def warm_up(fn: Fn, device: str, settings: TimingSettings) -> float:
    """Runs ``fn`` at least ``warmup_calls`` times and ``warmup_s`` seconds; returns the median call time."""
    times: list[float] = []
    t_end = time.perf_counter() + settings.warmup_s
    while len(times) < max(1, settings.warmup_calls) or time.perf_counter() < t_end:
        times.append(time_sample(fn, 1, device))
        if len(times) >= 1000:
            break
    return statistics.median(times)


def plan(estimates: dict[str, float], settings: TimingSettings) -> tuple[int, dict[str, int]]:
    """Rounds (samples per variant) and ``inner`` calls per sample for each variant."""
    slowest = max(estimates.values())
    rounds = int(min(settings.max_rounds, max(settings.min_rounds, settings.budget_s // max(slowest, 1e-9))))
    inner = {}
    for name, t in estimates.items():
        per_sample = max(settings.budget_s / rounds, settings.min_sample_s)
        inner[name] = max(1, math.floor(per_sample / max(t, 1e-9)))
    return rounds, inner


def measure_interleaved(
    fns: dict[str, Fn],
    rounds: int,
    inner: dict[str, int],
    device: str,
    on_round: Callable[[int, int], None] | None = None,
    settle_s: float = 0.0,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Round-robin samples (seconds per call) for each variant.

    With ``settle_s`` > 0 each sample is preceded by untimed calls of the same variant for
    at least that long: the worker threads of ONNX Runtime and OpenVINO keep spinning on
    the cores after their last call (on 2 cores, the fused model called right after ONNX
    Runtime took twice its time for 60-90 ms), so a sample taken straight after another
    runtime would measure that runtime's leftovers, not the variant.

    A variant that raises while being timed is dropped from the remaining rounds; its
    error (``"failed: Type: message"``) is returned in the second dict.
    """
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in errors:
                continue
            try:
                settle(fns[name], settle_s, device)
                samples[name].append(time_sample(fns[name], inner[name], device))
            except Exception as exc:  # reported, not raised: one variant must not end the suite
                errors[name] = f"failed: {type(exc).__name__}: {first_line(exc)}"
        if on_round is not None:
            on_round(r + 1, rounds)
    return samples, errors


def settle(fn: Fn, seconds: float, device: str) -> None:
    """Calls ``fn`` untimed for at least ``seconds`` (nothing when 0)."""
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        fn()
    sync(device)


def summarize(samples: list[float]) -> dict[str, float]:
    """median / p10 / p90 / mean / min / max of per-call seconds, in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    return {
        "median_ms": statistics.median(ms),
        "p10_ms": percentile(ms, 10),
        "p90_ms": percentile(ms, 90),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -------------------------------------------------------------- contention ----


class OtherLoad:
    """CPU time other processes took while a block ran, in cores (0 = they were idle).

    From /proc/stat (busy time of all CPUs) minus this process's own CPU time (all threads);
    None where /proc/stat is not readable. A value of 0.5 means that, on average, half a core
    was busy with something else while the variants were being timed.
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    @staticmethod
    def _busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _self_s() -> float:
        t = os.times()
        return t.user + t.system

    def __enter__(self) -> OtherLoad:
        self._busy0, self._self0, self._t0 = self._busy_s(), self._self_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1, wall = self._busy_s(), time.perf_counter() - self._t0
        if busy1 is None or self._busy0 is None or wall <= 0:
            return
        others = (busy1 - self._busy0) - (self._self_s() - self._self0)
        self.cores = max(0.0, others / wall)


# ------------------------------------------------------------------ memory ----

CPU_MEMORY_METHOD = (
    "peak, during one call, of the bytes allocated through torch's CPU allocator by the call and "
    "still live (torch.profiler with profile_memory=True: the running sum, in time order, of the "
    "allocations made in the call and of their frees). Gradients of the previous call are released "
    "before it. It counts the call's activations, saved tensors, gradients, outputs and workspaces, "
    "not the tensors that existed before it (inputs, parameters), and not memory a library obtains "
    "outside torch's allocator."
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated() during one call minus torch.cuda.memory_allocated() before "
    "it (after torch.cuda.reset_peak_memory_stats(); gradients of the previous call released before "
    "it): the peak of extra bytes the call holds at once."
)


def peak_memory(fn: Fn, device: str, prepare: Fn | None = None) -> int:
    """Peak extra bytes one call of ``fn`` allocates (see CPU_MEMORY_METHOD / CUDA_MEMORY_METHOD).

    ``prepare`` runs just before, outside the measured window (it releases old gradients).
    """
    if prepare is not None:
        prepare()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.ptr, node.extra_fields.alloc_size))
    events.sort(key=lambda e: e[0])
    # Only frees of blocks allocated inside the window count: the allocator's bookkeeping
    # can also report frees of older blocks, which would make the peak look smaller.
    live: dict[int, int] = {}
    total = peak = 0
    for _, ptr, size in events:
        if size > 0:
            live[ptr] = live.get(ptr, 0) + size
            total += size
            peak = max(peak, total)
        elif ptr in live:
            total -= live.pop(ptr)
    return int(peak)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences file descriptor 2 (kineto prints profiler start/stop lines from C++)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
