"""The golden fixture of the seed's Megvii results, tests/fixtures/megvii_v1.pt: its format and the steps it records.

scripts/make_megvii_fixtures.py writes the file by running these steps with the seed's
classes; tests/test_megvii_fixtures.py runs them with ours and compares.

Layout (a plain dict: ``torch.load(FIXTURE, weights_only=True)``)::

    {"format": 1, "provenance": {"script", "torch", "generator_seed", "seed_files": {name: sha256}},
     "blocks": {name: record}, "network": record}
    record = {"config": constructor kwargs (blocks: inp, oup, group, first_group, mid_channels,
                                                     ksize, stride; network: group, model_size, n_class),
              "state": {state_dict key: int8 codes (num_batches_tracked: int64)},
              "scales": {state_dict key: float}, "input", "grad_output",
              "eval_output", "train_output", "grad_input",
              "grads": {parameter name: tensor}, "buffers_after": {buffer name: tensor}}
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor, nn

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "megvii_v1.pt"
FORMAT = 1


@functools.cache
def load() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def records() -> dict[str, dict]:
    """Every record, by name: ``block-<name>`` and ``network``."""
    data = load()
    return {**{f"block-{name}": r for name, r in data["blocks"].items()}, "network": data["network"]}


def decode_state(codes: dict[str, Tensor], scales: dict[str, float]) -> dict[str, Tensor]:
    """The float64 state dict: int8 codes times their power-of-two scale, exactly
    (``num_batches_tracked`` stays int64)."""
    return {key: v.double() * scales[key] if key in scales else v.clone() for key, v in codes.items()}


def run(model: nn.Module, state: dict[str, Tensor], x: Tensor, grad_output: Tensor) -> dict:
    """The recorded steps, in float64: load ``state`` strictly, an eval-mode forward, then one
    training-mode forward and its backward from ``grad_output``.

    Returns ``eval_output``, ``train_output``, ``grad_input``, ``grads`` (every parameter's) and
    ``buffers_after`` (running statistics and ``num_batches_tracked`` after the training forward).
    """
    model.double().load_state_dict(state, strict=True)
    x = x.double()
    model.eval()
    with torch.no_grad():
        eval_output = model(x)
    model.train()
    x.requires_grad_(True)
    train_output = model(x)
    train_output.backward(grad_output.double())
    return {
        "eval_output": eval_output,
        "train_output": train_output.detach(),
        "grad_input": x.grad,
        "grads": {name: p.grad for name, p in model.named_parameters()},
        "buffers_after": dict(model.named_buffers()),
    }


def run_record(model: nn.Module, record: dict, state: dict[str, Tensor] | None = None) -> dict:
    """:func:`run` on a record's state (or ``state``), input and ``grad_output``."""
    if state is None:
        state = decode_state(record["state"], record["scales"])
    return run(model, state, record["input"], record["grad_output"])


def assert_close_to_record(got: Tensor, expected: Tensor, what: str, scale: float) -> None:
    """``got`` (float64) equals ``expected`` to 1e-10 relative, or to the rounding of the dtype
    ``expected`` is stored in (the network's gradients and buffers: float32, bfloat16).

    Values that cancel to about zero are compared to ``scale``, the magnitude of their kind
    (some gradients are zero up to rounding: that of a BN bias followed by a conv and a
    training-mode BN).
    """
    if not expected.is_floating_point():
        assert torch.equal(got, expected), f"{what}: {got} != {expected}"
        return
    assert got.dtype == torch.float64, what
    rtol = max(1e-10, torch.finfo(expected.dtype).eps)
    torch.testing.assert_close(got, expected.double(), rtol=rtol, atol=1e-10 * scale, msg=lambda m: f"{what}: {m}")


def _max_abs(tensors: list[Tensor]) -> float:
    return max(t.double().abs().max().item() for t in tensors if t.is_floating_point())


def assert_matches_record(got: dict, record: dict) -> None:
    """What :func:`run` returned agrees with ``record``: outputs, gradients, buffers, and the
    parameter and buffer names (in order)."""
    for key in ("eval_output", "train_output", "grad_input"):
        assert_close_to_record(got[key], record[key], key, _max_abs([record[key]]))
    for key in ("grads", "buffers_after"):
        assert list(got[key]) == list(record[key]), key
        scale = _max_abs(list(record[key].values()))
        for name, expected in record[key].items():
            assert got[key][name] is not None, f"{key}[{name}] is None"
            assert_close_to_record(got[key][name], expected, f"{key}[{name}]", scale)
