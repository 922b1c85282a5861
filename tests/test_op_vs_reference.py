"""Fused op vs the plain-torch reference: outputs, every gradient, running stats."""

from __future__ import annotations

import itertools

import pytest
import torch
from op_cases import (
    Case,
    assert_low_precision_matches_float64,
    assert_results_close,
    fused_and_reference,
    make_inputs,
    run,
)

import shufflenet_fused as sf

ORDERS = ("shuffle_first", "shuffle_last")

# (n, c, h, w, groups): batch 1 and > 1, odd and tiny planes (1x1 included),
# groups 1, 3, 8 and C, C not a multiple of any vector width.
SHAPES = [
    (2, 6, 7, 5, 3),
    (1, 12, 9, 9, 1),
    (3, 24, 6, 11, 8),
    (2, 5, 4, 3, 5),  # groups == C
    (2, 9, 1, 1, 3),
    (1, 3, 2, 1, 3),
]

MATRIX = [
    Case(n, c, h, w, k=k, stride=s, groups=g, order=order, layout=layout)
    for (n, c, h, w, g), k, s, order, layout in itertools.product(
        SHAPES, (3, 5, 7), (1, 2), ORDERS, ("nchw", "channels_last", "strided")
    )
]


def _id(case: Case) -> str:
    return f"{case.n}x{case.c}x{case.h}x{case.w}-g{case.groups}-k{case.k}s{case.stride}-{case.order}-{case.layout}"


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", MATRIX, ids=_id)
def test_float64_matches_reference(case: Case, training: bool) -> None:
    if training and not case.trainable():
        pytest.skip("one value per channel: batch norm cannot train (tested in test_errors)")
    got, expected = fused_and_reference(case, torch.float64, training=training)
    assert_results_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    "case",
    [Case(4, 24, 14, 14, k=3, stride=1, groups=8, order=o, layout=lay) for o in ORDERS
     for lay in ("nchw", "channels_last")]
    + [Case(2, 60, 28, 28, k=k, stride=2, groups=20, order="shuffle_last") for k in (3, 5, 7)],
    ids=_id,
)  # fmt: skip
def test_float32_matches_reference(case: Case, training: bool) -> None:
    got, expected = fused_and_reference(case, torch.float32, training=training)
    assert_results_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_cpu_matches_float64_reference(dtype: torch.dtype, training: bool, layout: str) -> None:
    # C = 24 takes the channels_last kernel through a full and an overlapping
    # 16-channel chunk; W = 9 and 19 give row moves of one partial and of one
    # full + one partial 16-element chunk.
    for w in (9, 19):
        case = Case(2, 24, 10, w, k=3, stride=1, groups=3, order="shuffle_last", layout=layout)
        assert_low_precision_matches_float64(case, dtype, training=training)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_without_affine_parameters(training: bool) -> None:
    case = Case(2, 6, 5, 5, groups=2, order="shuffle_last")
    got, expected = fused_and_reference(case, torch.float64, training=training, affine=False)
    assert_results_close(got, expected, rtol=1e-10, atol=1e-10)


def test_training_without_running_stats() -> None:
    case = Case(2, 6, 5, 5, groups=3)
    inputs = make_inputs(case, torch.float64)
    args = (inputs["input"], inputs["weight"], None, None, inputs["bn_weight"], inputs["bn_bias"])
    kw = dict(groups=3, training=True)
    torch.testing.assert_close(
        sf.shuffle_dwconv_bn(*args, **kw), sf.reference.shuffle_dwconv_bn(*args, **kw), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("momentum", [0.0, 0.3, 1.0])
def test_running_stats_momentum(momentum: float) -> None:
    case = Case(3, 9, 6, 7, groups=3, order="shuffle_first")
    got, expected = fused_and_reference(case, torch.float64, training=True, momentum=momentum)
    assert_results_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_output_memory_format_follows_input(layout: str, training: bool) -> None:
    case = Case(2, 6, 5, 5, groups=3, layout=layout)
    inputs = make_inputs(case, torch.float32)
    x = inputs["input"].requires_grad_()
    y = sf.shuffle_dwconv_bn(
        x, inputs["weight"], inputs["running_mean"].float(), inputs["running_var"].float(), groups=3,
        training=training,
    )  # fmt: skip
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    y.backward(inputs["grad"])
    assert x.grad.is_contiguous(memory_format=fmt)


# float32 channels_last training stages its NCHW copies in per-thread buffers
# that the next call reuses: no returned tensor may be (or alias) one of them.
# (5, 9) is a plain shape; (2, 2) at stride 2 has a 1x1 output, whose NCHW and
# channels_last layouts are the same bytes.
@pytest.mark.parametrize("hw, stride", [((5, 9), 1), ((2, 2), 2)], ids=["5x9", "2x2-s2"])
def test_channels_last_training_results_survive_the_next_call(hw: tuple[int, int], stride: int) -> None:
    case = Case(3, 6, *hw, stride=stride, groups=3, layout="channels_last")
    first, expected = fused_and_reference(case, torch.float32, training=True)
    kept = {k: v.clone() for k, v in first.items() if v is not None}
    other = Case(3, 6, *hw, stride=stride, groups=2, order="shuffle_last", layout="channels_last")
    inputs = make_inputs(other, torch.float32, seed=1)
    run(sf.shuffle_dwconv_bn, other, inputs, training=True, dtype=torch.float32)  # reuses the buffers
    for key, value in kept.items():
        assert torch.equal(first[key], value), key
    assert_results_close(first, expected, rtol=1e-5, atol=1e-5)


def test_empty_batch_eval() -> None:
    case = Case(0, 6, 5, 5, groups=3)
    inputs = make_inputs(case, torch.float32)
    y = sf.shuffle_dwconv_bn(
        inputs["input"], inputs["weight"], inputs["running_mean"].float(), inputs["running_var"].float(), groups=3
    )
    assert y.shape == (0, 6, 5, 5)


def test_identity_shuffle_when_groups_is_one_or_c() -> None:
    # groups == 1 and groups == C are both the identity map: the two orders agree.
    case = Case(2, 6, 5, 5)
    inputs = make_inputs(case, torch.float64)
    args = (inputs["input"], inputs["weight"], inputs["running_mean"], inputs["running_var"])
    for groups in (1, 6):
        a = sf.shuffle_dwconv_bn(*args, groups=groups, order="shuffle_first")
        b = sf.shuffle_dwconv_bn(*args, groups=groups, order="shuffle_last")
        torch.testing.assert_close(a, b, rtol=0, atol=0)
