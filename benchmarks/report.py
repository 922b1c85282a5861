"""Console tables, JSON, Markdown and the PNG plot of a run.

Everything is rendered from the run's JSON dict, so a saved ``results.json`` can be rendered
again: ``python -m benchmarks.report benchmarks/out/<run>/results.json``.

Speedups are ratios of medians taken in the same run, on the same inputs, interleaved:
``reference time / fused time`` (above 1: fused is faster).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPEEDUPS = {
    # key: (numerator variant(s), denominator variant(s), short header, meaning)
    "fused_vs_ref_eager": (("ref-eager",), ("fused-eager",), "fE vs rE", "ref eager / fused eager"),
    "fused_vs_ref_compiled": (("ref-compiled",), ("fused-eager",), "fE vs rC", "ref compiled / fused eager"),
    "compiled_vs_compiled": (
        ("ref-compiled",),
        ("fused-compiled",),
        "fC vs rC",
        "ref compiled / fused compiled",
    ),
    "best_vs_best": (
        ("ref-eager", "ref-compiled"),
        ("fused-eager", "fused-compiled"),
        "best vs best",
        "fastest reference variant / fastest fused variant",
    ),
    "fused_vs_best_anchor": (
        ("ref-frozen", "ort", "openvino"),
        ("fused-eager",),
        "fE vs anchor",
        "fastest deployment anchor (ONNX Runtime, OpenVINO, ref compiled with freezing) / fused eager",
    ),
}
CORE_HEADERS = {
    "ref-eager": "ref eager",
    "ref-compiled": "ref compiled",
    "fused-eager": "fused eager",
    "fused-compiled": "fused compiled",
}
VARIANT_HEADERS = {**CORE_HEADERS, "ref-frozen": "ref frozen", "ort": "ONNX Runtime", "openvino": "OpenVINO"}
SHORT_NAMES = {"ref-eager": "rE", "ref-compiled": "rC", "fused-eager": "fE", "fused-compiled": "fC",
               "ref-frozen": "rF", "ort": "ORT", "openvino": "OV"}  # fmt: skip


BUSY_CORES = 0.25  # other processes' CPU use during a case's timing above which it is marked


def speedup_keys(run: dict) -> list[str]:
    """The speedups this run can give: both sides measured (best vs best only with all four
    core variants, the anchor ratio with at least one anchor)."""
    present = set(run["settings"]["variants"])
    keys = []
    for k, (num, den, _, _) in SPEEDUPS.items():
        if k == "fused_vs_best_anchor":
            ok = set(den) <= present and bool(set(num) & present)
        elif k == "best_vs_best":
            ok = set(CORE_HEADERS) <= present
        else:
            ok = set(num + den) <= present
        if ok:
            keys.append(k)
    return keys


def speedups(variants: dict[str, dict]) -> dict[str, float | None]:
    def best(names: tuple[str, ...]) -> float | None:
        times = [variants[n]["median_ms"] for n in names if n in variants and variants[n]["status"] == "ok"]
        return min(times) if times else None

    out: dict[str, float | None] = {}
    for key, (num, den, _, _) in SPEEDUPS.items():
        t_ref, t_fused = best(num), best(den)
        out[key] = t_ref / t_fused if t_ref is not None and t_fused is not None and t_fused > 0 else None
    return out


# ----------------------------------------------------------------- formatting ----


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_latency(v: dict) -> str:
    if v["status"] != "ok":
        return v["status"] if len(v["status"]) <= 40 else v["status"][:37] + "..."
    return f"{fmt_ms(v['median_ms'])} [{fmt_ms(v['p10_ms'])}-{fmt_ms(v['p90_ms'])}]"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def fmt_mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.2f}"


OTHERS_MEANING = (
    "cores used by other processes (and the hypervisor) while the case was timed: /proc/stat busy "
    f"time minus this process's CPU time, over the wall time; cases above {BUSY_CORES} are marked *"
)


def fmt_others(case: dict) -> str:
    x = case.get("others_cores")
    return "-" if x is None else f"{x:.2f}"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def case_label(case: dict, run: dict) -> str:
    label = ("* " if disturbed(case) else "") + case["name"]
    if case["level"] != "model" and len({c["spec"].get("config", "") for c in run["cases"]}) > 1:
        label += f" [{case['spec'].get('config') or case['spec'].get('where', '')}]"
    if len({c["dtype"] for c in run["cases"]}) > 1:
        label += f" {case['dtype']}"
    if len({c["layout"] for c in run["cases"]}) > 1:
        label += f" {case['layout']}"
    return label


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _variants_in(run: dict) -> list[str]:
    return [v for v in VARIANT_HEADERS if v in run["settings"]["variants"]]


def _levels(run: dict) -> list[str]:
    return [lv for lv in ("op", "block", "model") if any(c["level"] == lv for c in run["cases"])]


def _check_note(case: dict, detailed: bool = True) -> str:
    bad = [
        f"{v} {d['check_rel_err']:.1e} ({d['check_worst']})"
        if detailed
        else f"{SHORT_NAMES.get(v, v)} {d['check_rel_err']:.0e}"
        for v, d in case["variants"].items()
        if d.get("check_ok") is False
    ]
    return "MISMATCH: " + ", ".join(bad) if bad else ""


def disturbed(case: dict) -> bool:
    others = case.get("others_cores")
    return others is not None and others > BUSY_CORES


def busy_note(run: dict) -> str:
    """A warning when other processes took CPU time while cases were timed (or at the start)."""
    m = run["machine"]
    cpus = m.get("cpu_count") or 1
    marked = [c for c in run["cases"] if disturbed(c)]
    load = m.get("loadavg_1min_start")
    measured = any(c.get("others_cores") is not None for c in run["cases"])
    if not marked and (measured or load is None or load <= 0.5 * cpus):
        return ""
    if marked:
        worst = max(c["others_cores"] for c in marked)
        what = (
            f"{len(marked)} of {len(run['cases'])} cases (marked *) were timed while other processes used "
            f"more than {BUSY_CORES} of the {cpus} cores (up to {worst:.2f} cores)"
        )
    else:
        what = f"the 1-min load average was {load} on {cpus} CPUs when the run started"
    return (
        f"WARNING: {what}. Multi-threaded ATen ops (OpenMP, spin-waiting) stall when a core is taken, so "
        "the reference variants can slow down far more than the fused ones and those ratios are inflated; "
        "rerun on a quiet machine (or compare with --threads 1, or OMP_WAIT_POLICY=PASSIVE)."
    )


def console_tables(run: dict) -> str:
    """The ratio table (latency and speedups) and the throughput / memory table, per level."""
    variants = _variants_in(run)
    keys = speedup_keys(run)
    m, s = run["machine"], run["settings"]
    out = [
        f"shufflenet_fused benchmarks: {s['device']}, {m['cpu'] if s['device'] == 'cpu' else m['gpu']}, "
        f"torch {m['torch']}, {m['torch_num_threads']} threads, commit {str(m['commit'])[:10]}"
        f"{' (dirty)' if m.get('dirty') else ''}",
        "latency: median ms [p10-p90]; speedup = reference time / fused time (> 1: fused faster); "
        + "; ".join(f"{SPEEDUPS[k][2]} = {SPEEDUPS[k][3]}" for k in speedup_keys(run)),
    ]
    busy = busy_note(run)
    if busy:
        out.append(busy)
    for level in _levels(run):
        cases = [c for c in run["cases"] if c["level"] == level]
        out += ["", f"== {level} level =="]
        headers = ["case", "mode"] + [VARIANT_HEADERS[v] for v in variants] + [SPEEDUPS[k][2] for k in keys]
        rows = []
        for c in cases:
            sp = c["speedups"]
            row = [case_label(c, run), c["mode"]] + [fmt_latency(c["variants"][v]) for v in variants]
            row += [fmt_ratio(sp[k]) for k in keys]
            rows.append(row)
        right = set(range(2 + len(variants), len(headers)))
        out += _table(headers, rows, right)
        out += [""]
        headers = ["case", "mode"] + [f"{VARIANT_HEADERS[v]} img/s" for v in variants]
        headers += [f"{VARIANT_HEADERS[v]} MiB" for v in variants] + ["others", "check"]
        rows = []
        for c in cases:
            vs = c["variants"]
            row = [case_label(c, run), c["mode"]] + [fmt_rate(vs[v]["images_per_s"]) for v in variants]
            row += [fmt_mib(vs[v]["peak_mem_bytes"]) for v in variants]
            row += [fmt_others(c), _check_note(c, detailed=False) or "ok"]
            rows.append(row)
        out += _table(headers, rows, set(range(2, 3 + 2 * len(variants))))
    for level, why in run.get("unavailable", {}).items():
        out += ["", f"== {level} level: not measured: {why} =="]
    out += ["", f"peak memory (MiB): {run['memory_method']}", f"others: {OTHERS_MEANING}"]
    return "\n".join(out)


def markdown(run: dict) -> str:
    m, s = run["machine"], run["settings"]
    variants = _variants_in(run)
    keys = speedup_keys(run)
    lines = [
        f"# shufflenet_fused benchmarks: {s['device']}, {', '.join(s['levels'])} level",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} ({m['cpu_count']} logical CPUs) |",
        f"| GPU | {m.get('gpu') or '-'} |",
        f"| platform | {m['platform']} |",
        f"| torch | {m['torch']} (CUDA {m.get('torch_cuda') or '-'}), {m['torch_num_threads']} threads |",
        f"| threading environment | {', '.join(f'{k}={v}' for k, v in m.get('env', {}).items()) or '-'} |",
        f"| date | {m['date']} |",
        f"| commit | {m['commit']}{' (with uncommitted changes)' if m.get('dirty') else ''} |",
        f"| command | `{s['command']}` |",
        f"| wall time | {run['wall_time_s']:.0f} s |",
        f"| load average (1 min) | {m.get('loadavg_1min_start')} at start, {m.get('loadavg_1min_end')} at end |",
        "",
        "Speedup = reference time / fused time, medians of the same run (above 1: fused is faster). "
        + "; ".join(f"**{SPEEDUPS[k][2]}** = {SPEEDUPS[k][3]}" for k in speedup_keys(run))
        + ". Latency: median ms, [p10-p90] over the interleaved samples.",
    ]
    if busy_note(run):
        lines += ["", f"**{busy_note(run)}**"]
    for level in _levels(run):
        cases = [c for c in run["cases"] if c["level"] == level]
        lines += ["", f"## {level} level", ""]
        headers = ["case", "mode"] + [VARIANT_HEADERS[v] for v in variants] + [SPEEDUPS[k][2] for k in keys]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * 2 + "---:|" * (len(headers) - 2)]
        for c in cases:
            cells = [case_label(c, run), c["mode"]] + [fmt_latency(c["variants"][v]) for v in variants]
            cells += [fmt_ratio(c["speedups"][k]) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Throughput (images/s at the median) and peak memory ({run['memory_unit']}):", ""]
        headers = ["case", "mode"] + [f"{VARIANT_HEADERS[v]} img/s" for v in variants]
        headers += [f"{VARIANT_HEADERS[v]} MiB" for v in variants] + [
            f"first call s ({' / '.join(SHORT_NAMES[v] for v in variants)})",
            "others (cores)",
            "check",
        ]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * 2 + "---:|" * (len(headers) - 3) + "---|"]
        for c in cases:
            vs = c["variants"]
            cells = [case_label(c, run), c["mode"]] + [fmt_rate(vs[v]["images_per_s"]) for v in variants]
            cells += [fmt_mib(vs[v]["peak_mem_bytes"]) for v in variants]
            cells.append(
                " / ".join("-" if vs[v]["first_call_s"] is None else f"{vs[v]['first_call_s']:.1f}" for v in variants)
            )
            cells += [fmt_others(c), _check_note(c) or "ok"]
            lines.append("| " + " | ".join(cells) + " |")
    for level, why in run.get("unavailable", {}).items():
        lines += ["", f"## {level} level", "", f"Not measured: {why}."]
    failures = [
        (case_label(c, run), c["mode"], v, d)
        for c in run["cases"]
        for v, d in c["variants"].items()
        if d["status"] != "ok" and not d["status"].startswith("skipped")
    ]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [
            f"- {c} {mode} {v}: {d['status']}" + (f" ({d['error'][:300]})" if d.get("error") else "")
            for c, mode, v, d in failures
        ]
    lines += ["", "## Method", "", *[f"- {t}" for t in run["method"]], f"- others: {OTHERS_MEANING}.", ""]
    return "\n".join(lines)


def plot(run: dict, path: Path) -> bool:
    """Speedups per case (one panel per level and mode). Returns False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    levels = _levels(run)
    modes = [md for md in ("eval", "train") if any(c["mode"] == md for c in run["cases"])]
    if not levels or not modes:
        return False
    keys = [k for k in speedup_keys(run) if k != "best_vs_best"]
    if not keys:
        return False
    values = [c["speedups"][k] for c in run["cases"] for k in keys if c["speedups"][k]]
    log = bool(values) and max(values) / min(values) > 8
    colors = {
        "fused_vs_ref_eager": "#1f77b4",
        "fused_vs_ref_compiled": "#ff7f0e",
        "compiled_vs_compiled": "#2ca02c",
        "fused_vs_best_anchor": "#d62728",
    }
    n_cases = max(
        len([c for c in run["cases"] if c["level"] == lv and c["mode"] == md]) for lv in levels for md in modes
    )
    fig, axes = plt.subplots(
        len(levels),
        len(modes),
        figsize=(max(6.0, 1.1 * n_cases + 2) * len(modes), 4.2 * len(levels)),
        squeeze=False,
    )
    width = 0.8 / len(keys)
    legend: tuple | None = None
    for i, level in enumerate(levels):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            cases = [c for c in run["cases"] if c["level"] == level and c["mode"] == mode]
            for k, key in enumerate(keys):
                for x, c in enumerate(cases):
                    value = c["speedups"][key]
                    pos = x + (k - (len(keys) - 1) / 2) * width
                    if value is None:
                        ax.text(
                            pos,
                            0.02,
                            "n/a",
                            rotation=90,
                            ha="center",
                            va="bottom",
                            fontsize=7,
                            transform=ax.get_xaxis_transform(),
                        )
                        continue
                    # Bars start at 1 (no speedup): up for faster, down for slower.
                    ax.bar(
                        pos,
                        value - 1,
                        width,
                        bottom=1,
                        color=colors[key],
                        label=SPEEDUPS[key][3] if x == 0 else None,
                    )
                    ax.text(
                        pos,
                        value,
                        f"{value:.0f}" if value >= 10 else f"{value:.2g}",
                        ha="center",
                        va="bottom" if value >= 1 else "top",
                        fontsize=7,
                    )
            ax.axhline(1.0, color="black", linewidth=0.8)
            if log:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([case_label(c, run) for c in cases], rotation=25, ha="right", fontsize=8)
            ax.set_ylabel("speedup (reference time / fused time)")
            ax.set_title(f"{level} level, {mode}")
            shown = [c["speedups"][k] for c in cases for k in keys if c["speedups"][k]]
            if shown:  # room above the value labels, and 1x always in view
                hi, lo = max(max(shown), 1.0), min(min(shown), 1.0)
                ax.set_ylim((lo / 1.3, hi * 1.6) if log else (min(0.9, lo - 0.1), hi * 1.15))
            if ax.get_legend_handles_labels()[0] and not legend:
                legend = ax.get_legend_handles_labels()
    m, s = run["machine"], run["settings"]
    hw = m["gpu"] if s["device"] == "cuda" else f"{m['cpu']}, {m['torch_num_threads']} threads"
    fig.suptitle(f"shufflenet_fused: {hw}, torch {m['torch']}, {m['date'][:10]}", fontsize=10)
    if legend:
        fig.legend(*legend, loc="upper center", ncol=len(keys), fontsize=8, bbox_to_anchor=(0.5, 0.955))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(run: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "results.md",
        "table": out_dir / "table.txt",
    }
    files["json"].write_text(json.dumps(run, indent=1) + "\n")
    files["markdown"].write_text(markdown(run))
    files["table"].write_text(console_tables(run) + "\n")
    png = out_dir / "speedup.png"
    if plot(run, png):
        files["plot"] = png
    return files


def main(argv: list[str] | None = None) -> int:
    """Render a saved results.json again (tables on stdout, files next to it)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.report RESULTS.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    run = json.loads(path.read_text())
    write_all(run, path.parent)
    print(console_tables(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
