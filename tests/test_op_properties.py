"""Property tests over shapes: fused == reference in float64 wherever the arguments are valid."""

from __future__ import annotations

import pytest
import torch
from op_cases import Case, assert_results_close, fused_and_reference

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@st.composite
def cases(draw) -> Case:
    groups = draw(st.sampled_from([1, 2, 3, 4, 8]))
    c = groups * draw(st.integers(1, 5))
    return Case(
        n=draw(st.integers(1, 3)),
        c=c,
        h=draw(st.integers(1, 12)),
        w=draw(st.integers(1, 12)),
        k=draw(st.sampled_from([3, 5, 7])),
        stride=draw(st.sampled_from([1, 2])),
        groups=groups,
        order=draw(st.sampled_from(["shuffle_first", "shuffle_last"])),
        layout=draw(st.sampled_from(["nchw", "channels_last", "strided"])),
    )


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True)
@hypothesis.given(case=cases(), training=st.booleans())
def test_fused_matches_reference_float64(case: Case, training: bool) -> None:
    hypothesis.assume(not training or case.trainable())
    got, expected = fused_and_reference(case, torch.float64, training=training)
    assert_results_close(got, expected, rtol=1e-10, atol=1e-10)
