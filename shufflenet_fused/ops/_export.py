"""Whether the current call is being exported to ONNX."""

from __future__ import annotations

import torch


def exporting_to_onnx() -> bool:
    """True while ``torch.onnx.export`` traces the model (either exporter).

    ``torch.onnx.is_in_onnx_export()`` alone costs about a microsecond per call, a few percent
    of a batch-1 fused call; both exporters trace (TorchScript tracing or torch.export), so the
    cheap tracing tests go first and eager calls never reach it.
    """
    return (torch._C._get_tracing_state() is not None or torch.compiler.is_compiling()) and (
        torch.onnx.is_in_onnx_export()
    )
