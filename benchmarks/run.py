"""Command line of the benchmark suite: ``python -m benchmarks`` or ``python benchmarks/run.py``.

Default (no flags): the op level on CPU, the six shapes of ShuffleNetV1 1.0x g3 of
docs/design.md section 10, eval and train, float32 NCHW, the four variants (reference /
fused, eager / torch.compile) interleaved. Writes results.json, results.md, table.txt and
speedup.png to ``benchmarks/out/<name>-<date>-<time>/`` (git-ignored) and prints the table.
With ``--curated`` the run replaces the curated result set ``benchmarks/results/<name>/``
that the README quotes (``scripts/bench_curated.sh`` regenerates all of them). ``<name>`` is
``<device>-<level>`` plus what differs from the defaults: ``-<mode>``, ``-<dtypes>``,
``-<layout>`` (e.g. ``cpu-op``, ``cpu-op-bfloat16``, ``cpu-model-eval``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

import torch  # noqa: E402

from benchmarks import cases as cases_mod  # noqa: E402
from benchmarks import report, suite, timing  # noqa: E402
from benchmarks.machine import REPO_ROOT, machine_info  # noqa: E402
from benchmarks.progress import Progress  # noqa: E402
from benchmarks.variants import CORE_VARIANTS, EAGER_VARIANTS, VARIANTS, level_unavailable  # noqa: E402


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="shufflenet_fused benchmarks: fused vs reference (eager and torch.compile), "
        "interleaved in one run. Speedup = reference time / fused time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--level", default="op", choices=["op", "block", "model", "all"], help="what to measure")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--mode",
        default="both",
        choices=["eval", "train", "both"],
        help="eval: forward under no_grad; train: forward + backward",
    )
    p.add_argument(
        "--batch",
        type=_csv,
        default=None,
        help="batch sizes, comma-separated (default: 1,32 on CPU, 1,64,256 on CUDA; at the op "
        "level on CPU the default is docs/design.md section 10's six shapes, which fix their batches)",
    )
    p.add_argument(
        "--config",
        type=_csv,
        default=[cases_mod.DEFAULT_CONFIG],
        help=f"ShuffleNetV1 configs, comma-separated, or 'all' ({', '.join(cases_mod.ALL_CONFIGS)})",
    )
    p.add_argument(
        "--shapes",
        default="auto",
        choices=["auto", "design", "network"],
        help="op-level shapes: design = docs/design.md section 10's six CPU shapes (1.0x g3); network = "
        "the distinct depthwise layers of each --config at each --batch; auto = design on "
        "CPU with default config and batches, network otherwise",
    )
    p.add_argument(
        "--op-shape",
        action="append",
        default=None,
        metavar="N,C,H,STRIDE[,K]",
        help="an op-level shape (repeatable; replaces --shapes); shuffle groups = C // group",
    )
    p.add_argument("--layout", default="nchw", choices=["nchw", "channels_last", "both"])
    p.add_argument(
        "--dtype",
        type=_csv,
        default=None,
        help="float32, bfloat16, float16, comma-separated (default: float32 on CPU, float32,bfloat16 "
        "on CUDA). Op level: input and conv weight in it, BN parameters float32; "
        "block/model level: torch.autocast to it",
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--variants", type=_csv, default=None, help=f"subset of {', '.join(VARIANTS)}")
    p.add_argument(
        "--optimizer-step",
        action="store_true",
        help="train mode: add an SGD (momentum 0.9) step to each call (never compiled)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed samples per variant per case (default 0.2; 0.03 with --quick)",
    )
    p.add_argument("--min-rounds", type=int, default=None, help="samples per variant, at least (default 10)")
    p.add_argument("--max-rounds", type=int, default=None, help="samples per variant, at most (default 100)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="few samples (a smoke run; numbers are rough)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default benchmarks/out/<name>-<date>-<time>/, git-ignored; "
        "<name> = <device>-<level>[-<mode>][-<dtypes>][-<layout>])",
    )
    p.add_argument(
        "--curated",
        action="store_true",
        help="write the run to the curated result set benchmarks/results/<name>/ (committed, quoted "
        "by the README), replacing what is there; scripts/bench_curated.sh regenerates them all",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def resolve(args: argparse.Namespace) -> dict:
    """Defaults that depend on other flags, checked; raises SystemExit(2) with a message."""

    def fail(msg: str) -> None:
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2)

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but torch.cuda.is_available() is False")
    levels = list(cases_mod.LEVELS) if args.level == "all" else [args.level]
    modes = list(cases_mod.MODES) if args.mode == "both" else [args.mode]
    configs = list(cases_mod.ALL_CONFIGS) if args.config == ["all"] else args.config
    for c in configs:
        try:
            cases_mod.parse_config(c)
        except ValueError as exc:
            fail(str(exc))
    try:
        batches = [int(b) for b in args.batch] if args.batch else None
    except ValueError:
        fail(f"--batch wants integers, got {args.batch}")
    dtypes = args.dtype or default_dtypes(args.device)
    for d in dtypes:
        if d not in cases_mod.DTYPES:
            fail(f"unknown dtype {d!r}; known: {', '.join(cases_mod.DTYPES)}")
    layouts = list(cases_mod.LAYOUTS) if args.layout == "both" else [args.layout]
    if args.variants:
        variants = args.variants
    else:  # the anchors where they apply: model level, eval mode, float32 CPU
        anchored = args.level in ("model", "all") and args.mode in ("eval", "both") and args.device == "cpu"
        variants = list(VARIANTS if anchored else CORE_VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            fail(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if args.no_compile:
        variants = [v for v in variants if v in EAGER_VARIANTS]
    variants = [v for v in VARIANTS if v in variants]  # canonical order: ref-eager first
    base = timing.QUICK if args.quick else timing.TimingSettings()
    settings = timing.TimingSettings(
        budget_s=args.budget if args.budget is not None else base.budget_s,
        min_rounds=args.min_rounds if args.min_rounds is not None else base.min_rounds,
        max_rounds=args.max_rounds if args.max_rounds is not None else base.max_rounds,
        warmup_calls=base.warmup_calls,
        warmup_s=base.warmup_s,
        min_sample_s=base.min_sample_s,
        settle_s=base.settle_s,
    )
    if settings.max_rounds < settings.min_rounds:
        fail("--max-rounds is below --min-rounds")
    if args.curated and (args.out is not None or args.quick):
        fail("--curated writes the full run to benchmarks/results/<name>/: not with --out or --quick")
    name = run_name(args.device, args.level, args.mode, dtypes, args.layout)
    if args.curated:
        out = CURATED_DIR / name
    elif args.out is not None:
        out = args.out
    else:
        out = REPO_ROOT / "benchmarks" / "out" / f"{name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return dict(
        levels=levels,
        modes=modes,
        configs=configs,
        batches=batches,
        dtypes=dtypes,
        layouts=layouts,
        variants=variants,
        timing=settings,
        out=out,
    )


CURATED_DIR = REPO_ROOT / "benchmarks" / "results"


def default_dtypes(device: str) -> list[str]:
    return ["float32", "bfloat16"] if device == "cuda" else ["float32"]


def run_name(device: str, level: str, mode: str, dtypes: list[str], layout: str) -> str:
    """``<device>-<level>`` plus what differs from the defaults, e.g. ``cpu-op``,
    ``cpu-op-bfloat16``, ``cpu-op-channels_last``, ``cpu-model-eval``."""
    parts = [device, level]
    if mode != "both":
        parts.append(mode)
    if dtypes != default_dtypes(device):
        parts.append("-".join(dtypes))
    if layout != "nchw":
        parts.append(layout)
    return "-".join(parts)


def write_curated(run: dict, out: Path) -> dict[str, Path]:
    """Write the run next to ``out`` and then put it in ``out``'s place, so that a run that
    fails while writing leaves the previous curated set as it was."""
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    files = report.write_all(run, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return {kind: out / path.name for kind, path in files.items()}


def method_notes(device: str, timing_settings: timing.TimingSettings, optimizer_step: bool) -> list[str]:
    t = timing_settings
    timer = (
        "torch.cuda.Event pairs around each sample, device synchronised before it"
        if device == "cuda"
        else "time.perf_counter around each sample"
    )
    return [
        "Variants: ref eager = shufflenet_fused.reference (F.conv2d groups=C, F.batch_norm, "
        "F.channel_shuffle) or "
        "ShuffleV1Block/ShuffleNetV1(fused=False); fused eager = shufflenet_fused.shuffle_dwconv_bn or "
        "shufflenet_fused.fuse() of the same reference module (same weights); the compiled variants are "
        "torch.compile(dynamic=False) of the same, with torch._dynamo.reset() before each case.",
        "Op level order is the seed's: order='shuffle_last' (shuffle(bn(dw(x)))) with shuffle groups = C // group.",
        "eval = one forward under torch.no_grad() with running statistics; train = forward + backward (BN "
        "with batch statistics; op/block: backward of a fixed random grad_output with the input requiring "
        "grad; model: cross-entropy on fixed labels)"
        + ("; plus an SGD optimizer step (eager, not compiled)." if optimizer_step else "; no optimizer step."),
        f"Timing: {timer}. After a first call (which compiles) and a warm-up (>= {t.warmup_calls} calls and "
        f">= {t.warmup_s} s), the variants are sampled round-robin with the starting variant rotating each "
        f"round; every variant gets the same number of samples ({t.min_rounds}..{t.max_rounds}), each "
        f"sample the mean of `inner` consecutive calls, with `inner` set so that each variant spends about "
        f"{t.budget_s} s. median/p10/p90 are over those samples; images/s = batch / median. Where ONNX "
        f"Runtime or OpenVINO run in the case, each sample is preceded by >= {t.settle_s} s of untimed calls "
        "of the same variant (their worker threads keep spinning on the cores for up to ~0.1 s after a call).",
        "A speedup is a ratio of medians from the same run; absolute times on a shared machine move between runs.",
        "check: output and gradients of each variant's first call vs ref eager (max abs difference / max abs "
        "of ref, per tensor); flagged MISMATCH above 1e-3 (float32) or 5e-2 (bf16/fp16), 20 times that "
        "at the model level (deep training-mode BatchNorm chains amplify rounding). Not a test: the "
        "tests live in tests/.",
        "A failing variant (compile error, runtime error) is reported in its cell; the others are still measured.",
    ]


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = resolve(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = _loadavg()

    unavailable: dict[str, str] = {}
    levels = []
    for level in cfg["levels"]:
        why = level_unavailable(level)
        if why:
            unavailable[level] = why
            print(f"note: {level} level not measured: {why}", file=sys.stderr)
        else:
            levels.append(level)
    try:
        cases = cases_mod.build_cases(
            levels,
            args.device,
            cfg["modes"],
            cfg["configs"],
            cfg["batches"],
            cfg["dtypes"],
            cfg["layouts"],
            shapes=args.shapes,
            op_shapes=args.op_shape,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    n_compiled = sum(v.endswith("compiled") for v in cfg["variants"])
    print(
        f"{len(cases)} cases x {len(cfg['variants'])} variants ({', '.join(cfg['variants'])}) "
        f"on {args.device}, "
        f"{torch.get_num_threads()} threads"
        + (f"; {len(cases) * n_compiled} torch.compile warm-ups (slow on a small CPU)" if n_compiled else ""),
        file=sys.stderr,
    )
    progress = Progress(len(cases), enabled=not args.no_progress)
    case_dicts = []
    for case in cases:
        progress.begin(f"{case.level} {case.name} {case.mode}")
        info: dict = {}
        results = suite.run_case(
            case,
            cfg["variants"],
            cfg["timing"],
            optimizer_step=args.optimizer_step,
            measure_memory=not args.no_memory,
            status=lambda text, frac: progress.update(text, frac),
            info=info,
        )
        variants = {name: suite.result_dict(r) for name, r in results.items()}
        case_dicts.append(
            {
                "level": case.level,
                "name": case.name,
                "mode": case.mode,
                "dtype": case.dtype,
                "layout": case.layout,
                "batch": case.batch,
                "device": case.device,
                "spec": {"kind": type(case.spec).__name__, **case.spec.__dict__},
                "input_shape": list(case.input_shape()),
                "variants": variants,
                "speedups": report.speedups(variants),
                "others_cores": info.get("others_cores"),
            }
        )
        progress.finish_case()
    wall = time.perf_counter() - t_start
    progress.close(f"done: {len(cases)} cases in {wall:.0f} s")

    machine = machine_info(args.device)
    machine["loadavg_1min_start"], machine["loadavg_1min_end"] = load_start, _loadavg()
    run = {
        "schema": 1,
        "machine": machine,
        "settings": {
            "command": "python -m benchmarks " + shlex.join(args.argv) if args.argv else "python -m benchmarks",
            "levels": cfg["levels"],
            "device": args.device,
            "modes": cfg["modes"],
            "configs": cfg["configs"],
            "batches": cfg["batches"],
            "dtypes": cfg["dtypes"],
            "layouts": cfg["layouts"],
            "variants": cfg["variants"],
            "compile": n_compiled > 0,
            "optimizer_step": args.optimizer_step,
            "shapes": args.shapes,
            "op_shapes": args.op_shape,
            "quick": args.quick,
            "curated": args.curated,
            "timing": cfg["timing"].__dict__,
        },
        "memory_method": timing.CUDA_MEMORY_METHOD if args.device == "cuda" else timing.CPU_MEMORY_METHOD,
        "memory_unit": "MiB, peak extra bytes during one call; see Method",
        "method": method_notes(args.device, cfg["timing"], args.optimizer_step),
        "unavailable": unavailable,
        "wall_time_s": wall,
        "cases": case_dicts,
    }
    run["method"].append(f"Peak memory: {run['memory_method']}")
    files = write_curated(run, cfg["out"]) if args.curated else report.write_all(run, cfg["out"])
    print(report.console_tables(run))
    print()
    for kind, path in files.items():
        print(f"{kind:>8}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
