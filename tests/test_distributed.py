"""The fused ShuffleNetV1 under DistributedDataParallel (CPU, gloo, 2 processes).

Each rank trains the fused model and the reference model (``fused=False``), both wrapped in
DDP, from the same initial weights on the same rank-local data, and compares them after a
few SGD steps: parameters (synchronised by DDP), their gradients, and the BatchNorm running
statistics (local per rank, as in plain DDP). float64, so the fused kernels and the
reference must agree to rounding.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

import shufflenet_fused as sf

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")

WORLD = 2
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(fused: bool, rank: int) -> dict[str, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # the same initial weights on both ranks and in both models
    model = sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=10, fused=fused).double().train()
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(100 + rank)  # rank-local batches
    for _ in range(STEPS):
        x = torch.randn(2, 3, 224, 224, generator=data, dtype=torch.float64)
        target = torch.randint(0, 10, (2,), generator=data)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), target).backward()
        opt.step()
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "grads": {k: v.grad.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save({"fused": _train(True, rank), "reference": _train(False, rank)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_training_matches_the_reference(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank, res in enumerate(results):
        fused, ref = res["fused"], res["reference"]
        for kind in ("params", "grads", "buffers"):
            assert fused[kind].keys() == ref[kind].keys()
            # Errors relative to the largest value of the kind: some gradients are exactly 0 in
            # exact arithmetic (the bias of a BN whose output a training-mode BN re-centres)
            # and rounding noise in both models; float64 rounding through 3 steps of a deep net
            # stays near 1e-10 of the largest gradient, a wrong gradient is off by O(1).
            scale = max(v.abs().max().item() for v in ref[kind].values() if v.is_floating_point())
            for name, want in ref[kind].items():
                err = (fused[kind][name].double() - want.double()).abs().max().item()
                assert err <= 1e-8 * scale, f"rank {rank} {kind} {name}: {err:.3g} (scale {scale:.3g})"
    # DDP kept the parameters in sync; the BN statistics are each rank's own.
    for name, p in results[0]["fused"]["params"].items():
        torch.testing.assert_close(p, results[1]["fused"]["params"][name], rtol=0, atol=0)
    mean0 = results[0]["fused"]["buffers"]["features.0.branch_main_1.1.running_mean"]
    mean1 = results[1]["fused"]["buffers"]["features.0.branch_main_1.1.running_mean"]
    assert not torch.equal(mean0, mean1)
