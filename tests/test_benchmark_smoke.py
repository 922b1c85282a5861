"""Smoke test of the benchmark suite's machinery (benchmarks/): it runs and writes its reports.

No timing is asserted: benchmarks are not tests. This only checks that one small op case runs
end to end (``--quick --no-compile``) and that the JSON / Markdown / table / plot it writes
carry the fields the reports promise, and that a failing variant is reported, not raised.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable, "-m", "benchmarks", "--level", "op", "--op-shape", "2,12,8,1", "--mode", "both",
        "--quick", "--no-compile", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fE vs rE" in proc.stdout  # the ratio table is printed
    return out


def test_json_has_machine_settings_and_results(quick_run: Path) -> None:
    run = json.loads((quick_run / "results.json").read_text())
    for key in ("platform", "cpu", "torch", "torch_num_threads", "date", "commit"):
        assert key in run["machine"], key
    assert run["settings"]["variants"] == ["ref-eager", "fused-eager"]
    assert [(c["level"], c["mode"]) for c in run["cases"]] == [("op", "eval"), ("op", "train")]
    for case in run["cases"]:
        assert case["input_shape"] == [2, 12, 8, 8]
        assert "others_cores" in case
        assert set(case["speedups"]) >= {"fused_vs_ref_eager", "fused_vs_ref_compiled"}
        for name in ("ref-eager", "fused-eager"):
            v = case["variants"][name]
            assert v["status"] == "ok", v
            assert v["p10_ms"] <= v["median_ms"] <= v["p90_ms"]
            assert v["images_per_s"] > 0 and v["rounds"] >= 1 and v["peak_mem_bytes"] is not None
        assert case["variants"]["fused-eager"]["check_ok"] is True
        assert case["speedups"]["fused_vs_ref_eager"] > 0
        assert case["speedups"]["fused_vs_ref_compiled"] is None  # no compiled variant in this run


def test_markdown_table_and_plot_written(quick_run: Path) -> None:
    md = (quick_run / "results.md").read_text()
    assert "## op level" in md and "fE vs rE" in md and "## Method" in md
    assert "N=2 C=12 H=8 s1" in (quick_run / "table.txt").read_text()
    png = quick_run / "speedup.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_variant_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import suite, timing
    from benchmarks.cases import Case, OpSpec
    from benchmarks.variants import Workload

    build = Workload.build

    def broken(self: Workload, variant: str):
        runner = build(self, variant)
        if variant == "fused-eager":
            runner.forward = lambda: (_ for _ in ()).throw(RuntimeError("kernel exploded"))
        return runner

    monkeypatch.setattr(Workload, "build", broken)
    case = Case("op", OpSpec(c=6, h=5, stride=1, groups=2), 2, "eval")
    results = suite.run_case(case, ["ref-eager", "fused-eager"], timing.QUICK, measure_memory=False)
    assert results["ref-eager"].ok and results["ref-eager"].median_ms is not None
    assert results["fused-eager"].status == "failed: RuntimeError: kernel exploded"
    # A compiled variant whose eager twin works is a compile failure.
    assert suite.describe_failure(ValueError("x"), compiled=True, eager_ok=True) == "compile failed: ValueError"


def test_settling_calls_each_variant_before_its_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """With settle_s, every sample follows untimed calls of the same variant (another
    runtime's spinning threads must not land in it); without, only the timed calls run."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import timing

    log: list[str] = []
    fns = {name: (lambda name=name: log.append(name)) for name in ("a", "b", "c")}
    inner = dict.fromkeys(fns, 1)
    timing.measure_interleaved(fns, 2, inner, "cpu")
    assert log == ["a", "b", "c", "b", "c", "a"]
    log.clear()
    samples, _ = timing.measure_interleaved(fns, 2, inner, "cpu", settle_s=0.01)
    assert all(len(v) == 2 for v in samples.values())
    runs = [(name, len(list(calls))) for name, calls in itertools.groupby(log)]
    assert [name for name, _ in runs] == ["a", "b", "c", "b", "c", "a"]
    assert all(n >= 2 for _, n in runs)  # settling calls, then the timed one, for every sample
