"""Torch-only smoke check of every fused op on one device, before (and without) pytest.

Every op (eval forward, eval backward, training forward with its running statistics,
training backward) x layout (NCHW, channels_last) x dtype (float32, float64, float16,
bfloat16) x kernel size (3, 5, 7) x stride (1, 2), through the public API with autograd, on
(2, 40, 13, 11) inputs, against the reference path in float64 on the CPU. The JSON file is
rewritten after every case, so a crash (an illegal address kills the CUDA context) still
leaves every result before it.

    python scripts/gpu_smoke.py OUT.json [--device cuda|cpu]

(--device cpu rehearses the script where there is no GPU.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import shufflenet_fused as sf  # noqa: E402
from shufflenet_fused.ops import reference  # noqa: E402

# Relative L2 error allowed per dtype (inputs are rounded to the dtype first).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double().cpu(), want.detach().double()
    if not torch.equal(torch.isnan(got), torch.isnan(want)):
        return float("inf")
    got, want = got.nan_to_num(0.0), want.nan_to_num(0.0)
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def run_case(dtype, layout, k, stride, training, device) -> dict:
    g = torch.Generator().manual_seed(k * 10 + stride)
    c, groups = 40, 8
    order = "shuffle_last" if (k + stride) % 2 else "shuffle_first"
    x = (torch.randn(2, c, 13, 11, generator=g, dtype=torch.float64)).to(dtype).double()
    w = (torch.randn(c, 1, k, k, generator=g, dtype=torch.float64)).to(dtype).double()
    gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(c, generator=g, dtype=torch.float64)
    rm = torch.randn(c, generator=g, dtype=torch.float64) * 0.1
    rv = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    kwargs = dict(groups=groups, stride=stride, training=training, momentum=0.1, eps=1e-5, order=order)

    leaves = [t.clone().requires_grad_() for t in (x, w, gamma, beta)]
    run_rm, run_rv = rm.clone(), rv.clone()
    y_ref = reference.shuffle_dwconv_bn(leaves[0], leaves[1], run_rm, run_rv, leaves[2], leaves[3], **kwargs)
    gy = torch.randn(y_ref.shape, generator=g, dtype=torch.float64).to(dtype).double()
    y_ref.backward(gy)

    dev = [
        x.to(device, dtype).contiguous(memory_format=fmt).requires_grad_(),
        w.to(device, dtype).requires_grad_(),
        gamma.to(device, sdt).requires_grad_(),
        beta.to(device, sdt).requires_grad_(),
    ]
    dev_rm, dev_rv = rm.to(device, sdt), rv.to(device, sdt)
    y = sf.shuffle_dwconv_bn(dev[0], dev[1], dev_rm, dev_rv, dev[2], dev[3], **kwargs)
    y.backward(gy.to(device, dtype).contiguous(memory_format=fmt))
    if device == "cuda":
        torch.cuda.synchronize()
    errs = {"output": rel_err(y, y_ref)}
    for name, a, b in zip(("grad_input", "grad_weight", "grad_bn_weight", "grad_bn_bias"), dev, leaves, strict=True):
        errs[name] = rel_err(a.grad, b.grad)
    if training:
        errs["running_mean"] = rel_err(dev_rm, run_rm)
        errs["running_var"] = rel_err(dev_rv, run_rv)
    tol = TOLERANCE[dtype]
    return {"errors": errs, "ok": all(e <= tol for e in errs.values()), "tolerance": tol,
            "layout_kept": y.is_contiguous(memory_format=fmt)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    results = []
    t0 = time.time()
    for dtype, layout, k, stride, training in itertools.product(
        DTYPES, ("nchw", "channels_last"), (3, 5, 7), (1, 2), (False, True)
    ):
        case = {"dtype": str(dtype).replace("torch.", ""), "layout": layout, "k": k, "stride": stride,
                "mode": "train" if training else "eval"}  # fmt: skip
        try:
            case.update(run_case(dtype, layout, k, stride, training, a.device))
        except Exception as err:  # noqa: BLE001  (recorded, then the next case)
            case.update(ok=False, error=f"{type(err).__name__}: {err}"[:500], trace=traceback.format_exc()[-1500:])
        results.append(case)
        with open(a.out, "w") as fh:
            json.dump({"device": a.device, "elapsed_s": round(time.time() - t0, 1), "cases": results}, fh, indent=1)
    bad = [r for r in results if not r["ok"]]
    print(f"smoke: {len(results) - len(bad)}/{len(results)} cases ok on {a.device} in {time.time() - t0:.0f}s")
    for r in bad[:10]:
        print("   FAILED", {k: v for k, v in r.items() if k != "trace"})
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
