"""torch.export of fused models keeps the fused ops (with their fake kernels) in the graph,
in eval and in training mode, with a dynamic batch dimension."""

from __future__ import annotations

import pytest
import torch
from torch.export import Dim, export

import shufflenet_fused as sf


def _models(training: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=10).double().train(training)
    b = sf.ShuffleNetV1(model_size="0.5x", group=3, n_class=10).double().train(training)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_export_with_a_dynamic_batch(training):
    model, eager = _models(training)
    batch = Dim("batch", min=2, max=64)
    ep = export(model, (torch.randn(2, 3, 224, 224, dtype=torch.float64),), dynamic_shapes=({0: batch},))
    targets = {str(node.target) for node in ep.graph.nodes if node.op == "call_function"}
    assert any(t.startswith("shufflenet_fused.dwconv_bn_") for t in targets), targets
    if training:
        # The running-statistics update counts N * H_out * W_out values: symbolic in N.
        assert "shufflenet_fused.update_running_stats.default" in targets
    x = torch.randn(3, 3, 224, 224, dtype=torch.float64)  # another batch size than traced
    got = ep.module()(x)
    want = eager(x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    if training:
        # The exported program updated the running statistics as the eager model did.
        exported_state = ep.module().state_dict()
        for name, value in eager.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                torch.testing.assert_close(exported_state[name], value, rtol=1e-9, atol=1e-12)
