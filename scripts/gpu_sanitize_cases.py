"""Small runs of every CUDA kernel, for compute-sanitizer (memcheck, racecheck, initcheck).

Used by scripts/gpu_check.sh (with PYTORCH_NO_CUDA_MEMORY_CACHING=1, so that memcheck sees
each allocation's own bounds): every op, both layouts, stride 1 and 2, both orders, odd
sizes, and every instantiation family: float32 and bfloat16 with K 3 and 7 (the staged and
the weights-from-memory paths), float16 with K 5, float64 with K 7. Exits 0 when all ran.

    python scripts/gpu_sanitize_cases.py [--device cuda|cpu]     (cpu: a rehearsal)
"""

from __future__ import annotations

import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import shufflenet_fused  # noqa: E402,F401  (registers the ops)

ops = torch.ops.shufflenet_fused


CONFIGS = (
    (torch.float32, 3),
    (torch.bfloat16, 3),
    (torch.float16, 5),
    (torch.float32, 7),
    (torch.bfloat16, 7),
    (torch.float64, 7),
)


def main() -> int:
    dev = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    for layout, (dtype, k), stride in itertools.product(("nchw", "channels_last"), CONFIGS, (1, 2)):
        sl = (k + stride) % 2 == 1
        x = torch.randn(2, 40, 11, 37, device=dev).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(40, 1, k, k, device=dev).to(dtype)
        sdt = torch.float64 if dtype == torch.float64 else torch.float32
        rm, rv = torch.zeros(40, device=dev, dtype=sdt), torch.ones(40, device=dev, dtype=sdt)
        gamma, beta = torch.rand(40, device=dev, dtype=sdt) + 0.5, torch.randn(40, device=dev, dtype=sdt)
        ops.dwconv_bn_eval(x, w, rm, rv, gamma, beta, 8, stride, 1e-5, sl)
        y, mean, invstd = ops.dwconv_bn_train(x, w, gamma, beta, 8, stride, 1e-5, sl)
        gy = torch.randn_like(y)
        for training in (False, True):
            ops.dwconv_bn_backward(gy, x, w, gamma, mean, invstd, 8, stride, sl, training)
    if dev == "cuda":
        torch.cuda.synchronize()
    print("sanitize cases ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
