"""Synchronized BatchNorm (CPU, gloo, 2 processes) against one process running the whole batch.

Each rank runs its share of a global batch (uneven shares, one rank with a single image)
through the fused op, the reference path with the same ``process_group``, a fused block pair
and a fused ShuffleNetV1 converted with ``nn.SyncBatchNorm.convert_sync_batchnorm`` and then
:func:`shufflenet_fused.fuse`, under ``DistributedDataParallel``. The parent process checks, in
float64: outputs and input gradients (the ranks' slices put together), parameter gradients
(summed over ranks, or averaged by DDP), running statistics (the same on every rank) against
the reference (plain BatchNorm) run on the whole batch in one process. A deliberately wrong
pooling (the mean of the ranks' means and variances) must be caught by the same comparison.
"""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import shufflenet_fused as sf
from shufflenet_fused.ops import reference, sync_batch_norm

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")

WORLD = 2
SHARES = (3, 1)  # images per rank in the op-level cases
# (order, k, stride, groups, affine): both orders, a shuffle that moves channels, k 3/5/7.
OP_CASES = [
    ("shuffle_last", 3, 1, 4, True),
    ("shuffle_first", 5, 2, 3, True),
    ("shuffle_last", 7, 2, 3, False),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _op_inputs(case, seed: int = 0):
    order, k, stride, groups, affine = case
    g = torch.Generator().manual_seed(seed)
    c = 12
    x = torch.randn(sum(SHARES), c, 9, 11, generator=g, dtype=torch.float64) * 3 + 1
    x[SHARES[0] :] += 2  # the ranks' batches have different means: pooling must weigh them
    w = torch.randn(c, 1, k, k, generator=g, dtype=torch.float64)
    gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5 if affine else None
    beta = torch.randn(c, generator=g, dtype=torch.float64) if affine else None
    ho, wo = (9 - 1) // stride + 1, (11 - 1) // stride + 1
    gout = torch.randn(sum(SHARES), c, ho, wo, generator=g, dtype=torch.float64)
    stats = (torch.randn(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g, dtype=torch.float64) + 1)
    return x, w, gamma, beta, gout, stats


def _run_op(fn, case, x, w, gamma, beta, gout, stats, **kwargs):
    order, k, stride, groups, _ = case
    x = x.clone().requires_grad_()
    params = [t.clone().requires_grad_() if t is not None else None for t in (w, gamma, beta)]
    running = [t.clone() for t in stats]
    y = fn(x, params[0], *running, params[1], params[2], groups=groups, stride=stride, training=True,
           momentum=0.3, eps=1e-3, order=order, **kwargs)  # fmt: skip
    (y * gout).sum().backward()
    return {
        "y": y.detach(),
        "grad_x": x.grad,
        "grad_params": [p.grad if p is not None else None for p in params],
        "running": running,
    }


def _block_pair() -> nn.Module:
    return nn.Sequential(
        sf.ShuffleV1Block(24, 60, group=3, first_group=False, mid_channels=12, ksize=3, stride=2, fused=False),
        sf.ShuffleV1Block(60, 60, group=3, first_group=False, mid_channels=15, ksize=5, stride=1, fused=False),
    )


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.num_features, generator=g, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g, dtype=m.bias.dtype)


def _model_inputs(kind: str):
    torch.manual_seed(0)
    if kind == "blocks":
        model = _block_pair().double()
        x = torch.randn(4, 24, 14, 14, dtype=torch.float64)
        gout = torch.randn(4, 60, 7, 7, dtype=torch.float64)
    else:
        model = sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=10, fused=False).double()
        x = torch.randn(4, 3, 224, 224, dtype=torch.float64)
        gout = torch.randn(4, 10, dtype=torch.float64)
    _randomize_bn(model)
    x[2:] = x[2:] * 2 + 1
    return model.train(), x, gout


def _model_result(model: nn.Module, x: torch.Tensor, gout: torch.Tensor, loss_scale: float) -> dict:
    x = x.clone().requires_grad_()
    y = model(x)
    ((y * gout).sum() * loss_scale).backward()
    inner = model.module if isinstance(model, DDP) else model
    return {
        "y": y.detach(),
        "grad_x": x.grad / loss_scale,  # DDP does not average the input's gradient
        "grads": {k: v.grad.clone() for k, v in inner.named_parameters()},
        "buffers": {k: v.clone() for k, v in inner.named_buffers()},
    }


def _wrong_pooling(count, mean, m2, process_group):
    # The classic mistake: average the ranks' means and variances, ignoring how many values
    # each has and how far apart their means are.
    c = mean.numel()
    row = torch.cat([torch.tensor([float(count)], dtype=torch.float64), mean.double(), m2.double() / count])
    rows = sync_batch_norm._gather_rows(row, process_group)
    n = sum(float(r[0]) for r in rows)
    mu = sum(r[1 : c + 1] for r in rows) / len(rows)
    var = sum(r[c + 1 :] for r in rows) / len(rows)
    return n, mu, var * n


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    group = dist.group.WORLD
    try:
        lo = sum(SHARES[:rank])
        local = slice(lo, lo + SHARES[rank])
        results = {}
        for i, case in enumerate(OP_CASES):
            x, w, gamma, beta, gout, stats = _op_inputs(case)
            results[f"op{i}/fused"] = _run_op(sf.shuffle_dwconv_bn, case, x[local], w, gamma, beta, gout[local],
                                              stats, process_group=group)  # fmt: skip
            results[f"op{i}/reference"] = _run_op(reference.shuffle_dwconv_bn, case, x[local], w, gamma, beta,
                                                  gout[local], stats, process_group=group)  # fmt: skip
            with sf.validating():
                results[f"op{i}/validated"] = _run_op(sf.shuffle_dwconv_bn, case, x[local], w, gamma, beta,
                                                      gout[local], stats, process_group=group)  # fmt: skip
        right = sync_batch_norm._pooled_moments
        sync_batch_norm._pooled_moments = _wrong_pooling
        try:
            x, w, gamma, beta, gout, stats = _op_inputs(OP_CASES[0])
            results["op0/wrong_pooling"] = _run_op(sf.shuffle_dwconv_bn, OP_CASES[0], x[local], w, gamma, beta,
                                                   gout[local], stats, process_group=group)  # fmt: skip
        finally:
            sync_batch_norm._pooled_moments = right

        local = slice(2 * rank, 2 * rank + 2)
        for kind in ("blocks", "network"):
            model, x, gout = _model_inputs(kind)
            # shufflenet_fused's SyncBatchNorm under DDP (which refuses nn.SyncBatchNorm on CPU).
            # DDP averages the ranks' gradients: scale each rank's loss by WORLD for their sum.
            synced = sf.fuse(sf.convert_sync_batchnorm(model))
            results[f"{kind}/ddp"] = _model_result(DDP(synced), x[local], gout[local], float(WORLD))
        # PyTorch's nn.SyncBatchNorm in a fused model, without DDP: the ranks' gradients are
        # summed by the parent.
        model, x, gout = _model_inputs("blocks")
        synced = sf.fuse(nn.SyncBatchNorm.convert_sync_batchnorm(model))
        results["blocks/nn.SyncBatchNorm"] = _model_result(synced, x[local], gout[local], 1.0)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    scale = max(want.abs().max().item(), 1.0)
    return (got - want).abs().max().item() <= 1e-9 * scale


def _assert_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    assert _close(got, want), f"{what}: max error {(got - want).abs().max().item():.3g}"


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sync_bn")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(OP_CASES)))
@pytest.mark.parametrize("path", ["fused", "reference", "validated"])
def test_op_matches_one_process_with_the_whole_batch(rank_results, i, path):
    case = OP_CASES[i]
    x, w, gamma, beta, gout, stats = _op_inputs(case)
    want = _run_op(reference.shuffle_dwconv_bn, case, x, w, gamma, beta, gout, stats)
    ranks = [r[f"op{i}/{path}"] for r in rank_results]
    _assert_close(torch.cat([r["y"] for r in ranks]), want["y"], "output")
    _assert_close(torch.cat([r["grad_x"] for r in ranks]), want["grad_x"], "grad_input")
    for j, name in enumerate(("weight", "bn_weight", "bn_bias")):
        if want["grad_params"][j] is None:
            assert all(r["grad_params"][j] is None for r in ranks)
            continue
        _assert_close(sum(r["grad_params"][j] for r in ranks), want["grad_params"][j], f"grad {name}")
    for r in ranks:
        for got, expected, name in zip(r["running"], want["running"], ("running_mean", "running_var"), strict=True):
            _assert_close(got, expected, name)


@pytest.mark.slow
def test_a_wrong_pooling_is_caught(rank_results):
    case = OP_CASES[0]
    x, w, gamma, beta, gout, stats = _op_inputs(case)
    want = _run_op(reference.shuffle_dwconv_bn, case, x, w, gamma, beta, gout, stats)
    got = torch.cat([r["op0/wrong_pooling"]["y"] for r in rank_results])
    assert not _close(got, want["y"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["blocks/ddp", "network/ddp", "blocks/nn.SyncBatchNorm"])
def test_fused_sync_model_matches_one_process_with_the_whole_batch(rank_results, case):
    model, x, gout = _model_inputs(case.split("/")[0])
    want = _model_result(copy.deepcopy(model), x, gout, 1.0)
    ranks = [r[case] for r in rank_results]
    _assert_close(torch.cat([r["y"] for r in ranks]), want["y"], "output")
    _assert_close(torch.cat([r["grad_x"] for r in ranks]), want["grad_x"], "grad_input")
    for r in ranks:
        assert r["grads"].keys() == want["grads"].keys()
        assert r["buffers"].keys() == want["buffers"].keys()
        for name, b in want["buffers"].items():
            _assert_close(r["buffers"][name].double(), b.double(), name)
    ddp = case.endswith("/ddp")  # DDP leaves every rank the sum; otherwise the parent adds them
    for name, g in want["grads"].items():
        got = ranks[0]["grads"][name] if ddp else sum(r["grads"][name] for r in ranks)
        _assert_close(got, g, f"grad {name}")
        if ddp:
            _assert_close(ranks[1]["grads"][name], g, f"grad {name} (rank 1)")


@pytest.mark.parametrize("convert", [nn.SyncBatchNorm.convert_sync_batchnorm, sf.convert_sync_batchnorm])
def test_fuse_keeps_sync_batchnorm_and_needs_no_process_group_alone(convert):
    torch.manual_seed(0)
    model = convert(_block_pair().double())
    sync_class = type(model[0].branch_main_1[4])
    assert sync_class in (nn.SyncBatchNorm, sf.SyncBatchNorm)
    ref = copy.deepcopy(model)
    fused = sf.fuse(model)
    for block in fused:
        assert block.fused
        assert type(block.branch_main_1[4]) is sync_class
    x = torch.randn(2, 24, 14, 14, dtype=torch.float64)
    # Without torch.distributed, SyncBatchNorm is BatchNorm (as nn.SyncBatchNorm itself).
    torch.testing.assert_close(fused.train()(x), ref.train()(x), rtol=1e-10, atol=1e-10)
    for (name, b), rb in zip(fused.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(b, rb, rtol=1e-10, atol=1e-10, msg=name)
