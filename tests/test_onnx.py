"""torch.onnx.export of fused models: a standard-operator graph that ONNX Runtime runs.

The fused op has no ONNX counterpart, so while exporting, the functional API and the
reference's channel shuffle emit the same computation as standard operators (Conv with
group = C, BatchNormalization, the shuffle as Reshape/Transpose/Reshape). Checked with both
exporters the installed torch offers (TorchScript-based and torch.export-based).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

import shufflenet_fused as sf

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")

EXPORTERS = ["torchscript", "dynamo"]
STANDARD_DOMAINS = {"", "ai.onnx"}


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _export(model: nn.Module, x: torch.Tensor, path, exporter: str) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="onnxscript is not installed (needed by the dynamo exporter)")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=exporter == "dynamo", opset_version=18)


def _run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _ops_of(path) -> list[tuple[str, str]]:
    graph = onnx.load(str(path)).graph
    return [(node.domain, node.op_type) for node in graph.node]


def _assert_close_l2(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> None:
    assert got.shape == want.shape
    assert torch.isfinite(got).all()
    err = (got.double() - want.double()).norm() / want.double().norm()
    assert err < rtol, f"relative L2 error {err:.3g}"


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("config", [("0.5x", 3), ("0.5x", 8)])
def test_fused_network_exports_to_standard_onnx(tmp_path, exporter, config):
    model_size, group = config
    torch.manual_seed(0)
    model = sf.ShuffleNetV1(model_size=model_size, group=group, n_class=10).eval()
    _randomize_bn(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    path = tmp_path / "model.onnx"
    _export(model, x, path, exporter)
    ops = _ops_of(path)
    assert {domain for domain, _ in ops} <= STANDARD_DOMAINS, ops
    kinds = {op for _, op in ops}
    assert "Conv" in kinds and ("Transpose" in kinds), kinds
    _assert_close_l2(_run_onnx(path, x), want)
    # The export did not change what the model computes eagerly afterwards.
    with torch.no_grad():
        assert torch.equal(model(x), want)


class _FusedUnit(nn.Module):
    """The functional API in both orders, with a stride and kernel size of its own."""

    def __init__(self, c: int, k: int, stride: int, groups: int, order: str):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, 1, k, k) * 0.3)
        self.bn = nn.BatchNorm2d(c)
        self.stride, self.groups, self.order = stride, groups, order

    def forward(self, x):
        return sf.shuffle_dwconv_bn(
            x, self.weight, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
            groups=self.groups, stride=self.stride, eps=self.bn.eps, order=self.order,
        )  # fmt: skip


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("order", ["shuffle_first", "shuffle_last"])
@pytest.mark.parametrize("k,stride", [(3, 2), (5, 1), (7, 1)])
def test_functional_op_exports_in_both_orders(tmp_path, exporter, order, k, stride):
    torch.manual_seed(1)
    unit = _FusedUnit(c=24, k=k, stride=stride, groups=6, order=order).eval()
    _randomize_bn(unit, seed=1)
    x = torch.randn(2, 24, 13, 11)
    with torch.no_grad():
        want = unit(x)
        ref = sf.reference.shuffle_dwconv_bn(
            x, unit.weight, unit.bn.running_mean, unit.bn.running_var, unit.bn.weight, unit.bn.bias,
            groups=6, stride=stride, eps=unit.bn.eps, order=order,
        )  # fmt: skip
    torch.testing.assert_close(want, ref, rtol=1e-4, atol=1e-5)
    path = tmp_path / "unit.onnx"
    _export(unit, x, path, exporter)
    assert {domain for domain, _ in _ops_of(path)} <= STANDARD_DOMAINS
    torch.testing.assert_close(_run_onnx(path, x), want, rtol=1e-4, atol=1e-5)
