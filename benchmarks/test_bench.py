"""The suite's cases through pytest-benchmark: ``pytest benchmarks/ --benchmark-only``.

One benchmark group per case (level, shape, mode), so the reference and fused variants of a
case are compared side by side in pytest-benchmark's table (``--benchmark-compare`` etc. work
as usual). Small by default: the op level's default CPU shapes, eval and train, the two eager
variants. Environment variables widen it:

- ``BENCH_COMPILE=1``: add the two torch.compile variants (slow to compile on a small CPU);
- ``BENCH_LEVELS=op,block,model``: levels (block/model: the network's blocks / the whole
  network of ``BENCH_CONFIG``, default 1.0x-g3, at batch 1);
- ``BENCH_DEVICE=cuda``: on the GPU (op level: the network's depthwise layers at batch 1, 64, 256).

Unlike ``python -m benchmarks``, pytest-benchmark runs one variant after the other (not
interleaved), so the run-level ratios of ``python -m benchmarks`` are the ones to quote. A
variant that fails (compile error, unsupported case) is skipped with the reason, never an error.
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import anchors
from benchmarks.cases import DEFAULT_CONFIG, Case, build_cases
from benchmarks.suite import describe_failure
from benchmarks.variants import EAGER_VARIANTS, VARIANTS, Workload, level_unavailable

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
LEVELS = [lv.strip() for lv in os.environ.get("BENCH_LEVELS", "op").split(",") if lv.strip()]
CONFIG = os.environ.get("BENCH_CONFIG", DEFAULT_CONFIG)
WITH_COMPILE = os.environ.get("BENCH_COMPILE", "0") not in ("", "0", "false", "no")
SELECTED = list(VARIANTS) if WITH_COMPILE else list(EAGER_VARIANTS)


def _cases() -> list[Case]:
    out: list[Case] = []
    for level in LEVELS:
        batches = None if level == "op" else [1]
        out += build_cases([level], DEVICE, ["eval", "train"], [CONFIG], batches, ["float32"], ["nchw"])
    return out


PARAMS = [
    pytest.param(case, v, id=f"{case.level}-{case.name}-{case.mode}-{v}".replace(" ", "_"))
    for case in _cases()
    for v in SELECTED
]


@pytest.mark.parametrize(("case", "variant"), PARAMS)
def test_bench(benchmark, case: Case, variant: str) -> None:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    why = level_unavailable(case.level)
    if why:
        pytest.skip(why)
    if case.mode == "train" and not case.trainable():
        pytest.skip("BatchNorm training needs more than one value per channel")
    compiled = variant.endswith("compiled")
    if compiled:
        torch._dynamo.reset()
    try:
        runner = Workload(case).build(variant)
    except anchors.Unavailable as exc:  # runtime not installed, or not a model-level eval case
        pytest.skip(str(exc))
    try:
        runner()  # first call: compiles
        runner()
    except Exception as exc:  # a failing variant is information, not a test failure
        pytest.skip(describe_failure(exc, compiled, eager_ok=False))
    benchmark.group = f"{case.level} {case.name} {case.mode} {case.dtype} {case.layout}"
    benchmark.extra_info.update(variant=variant, batch=case.batch, threads=torch.get_num_threads(), device=case.device)
    if case.device == "cuda":

        def call() -> None:
            runner()
            torch.cuda.synchronize()

        benchmark(call)
    else:
        benchmark(runner)
