"""The runtimes users deploy a ShuffleNetV1 with, as model-level eval variants ("anchors").

``ort``         ONNX Runtime (CPU execution provider) on the reference model exported to ONNX
                (TorchScript exporter, opset 17), all graph optimizations;
``openvino``    OpenVINO (CPU plugin, f32 inference precision, latency hint) on the same ONNX;
``ref-frozen``  ``torch.compile`` of the reference model with Inductor's ``freezing`` (weights
                folded as constants: the fastest thing PyTorch itself offers for inference).

Each runs with ``torch.get_num_threads()`` threads. ONNX Runtime and OpenVINO are optional
(``pip install .[bench]``); without them their variant is skipped with a message. Their
outputs are checked against the reference like every variant's, before they are timed.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import torch
from torch import Tensor, nn

ANCHORS = ("ref-frozen", "ort", "openvino")
FOREIGN_RUNTIMES = ("ort", "openvino")  # with thread pools of their own, beside torch's


class Unavailable(Exception):
    """The anchor cannot run here (the runtime is not installed, or the case is not a
    model-level eval case); the message says why."""


def _onnx_bytes(module: nn.Module, x: Tensor) -> bytes:
    f = io.BytesIO()
    torch.onnx.export(
        module, (x,), f, opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"]
    )  # fmt: skip
    return f.getvalue()


def _ort(module: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Unavailable("onnxruntime is not installed (pip install onnxruntime)") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(_onnx_bytes(module, x), options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def _openvino(module: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    try:
        import openvino as ov
    except ImportError as exc:
        raise Unavailable("openvino is not installed (pip install openvino)") from exc
    core = ov.Core()
    model = core.read_model(_onnx_bytes(module, x), b"")
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feed = x.numpy()
    return lambda: torch.from_numpy(request.infer([feed])[0].copy())


def _frozen(module: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    import torch._inductor.config as inductor_config

    compiled = torch.compile(module, dynamic=False)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled(x)  # compiles here, with freezing on; later calls reuse the graph
    return lambda: compiled(x)


BUILDERS = {"ort": _ort, "openvino": _openvino, "ref-frozen": _frozen}


def build(name: str, reference: nn.Module, x: Tensor, *, level: str, mode: str, device: str) -> Callable[[], Tensor]:
    """A zero-argument forward of anchor ``name`` on a copy of the reference module."""
    if level != "model" or mode != "eval" or device != "cpu" or x.dtype != torch.float32:
        raise Unavailable("anchors run at model level, eval mode, float32 on CPU")
    module = copy.deepcopy(reference).eval()
    return BUILDERS[name](module, x.contiguous())
