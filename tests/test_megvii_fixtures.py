"""ShuffleV1Block and ShuffleNetV1 (fused and not) against results recorded from the seed's Megvii code.

tests/fixtures/megvii_v1.pt holds, for several Megvii blocks and a small network, a random
state dict, an input, the eval- and training-mode outputs, the input and parameter gradients
of the training-mode output and the buffers after that forward, all computed in float64 by
the seed's own classes (scripts/make_megvii_fixtures.py; format in megvii_records.py). These
tests need no seed, so the drop-in claim is checked on every clone; test_blocks.py and
test_network.py compare against the seed's code live where it is present, and
test_megvii_fixtures_seed.py checks the file against it.
"""

from __future__ import annotations

import pytest
from megvii_records import FIXTURE, FORMAT, assert_matches_record, decode_state, load, records, run_record
from torch import nn

import shufflenet_fused as sf

RECORDS = records()


def build(name: str, *, fused: bool) -> nn.Module:
    """Our model for a record: ``ShuffleV1Block`` or ``ShuffleNetV1``."""
    config = dict(RECORDS[name]["config"])
    if name == "network":
        return sf.ShuffleNetV1(**config, fused=fused)
    inp, oup = config.pop("inp"), config.pop("oup")
    return sf.ShuffleV1Block(inp, oup, **config, fused=fused)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("name", list(RECORDS))
def test_matches_the_recorded_megvii_results(name, fused):
    assert_matches_record(run_record(build(name, fused=fused), RECORDS[name]), RECORDS[name])


@pytest.mark.parametrize("name", ["block-g8-s2-first", "network"])
def test_a_slightly_different_model_fails(name):
    # The comparison catches a model that diverges a little: one depthwise weight 1e-6 off.
    record = RECORDS[name]
    state = decode_state(record["state"], record["scales"])
    key = next(k for k in state if k.endswith("branch_main_1.3.weight"))
    state[key].view(-1)[0] *= 1 + 1e-6
    got = run_record(build(name, fused=True), record, state)
    with pytest.raises(AssertionError):
        assert_matches_record(got, record)


def test_fixture_file():
    data = load()
    assert data["format"] == FORMAT
    assert FIXTURE.stat().st_size <= 2_000_000
    assert {"torch", "seed_files", "generator_seed"} <= data["provenance"].keys()
    configs = [r["config"] for r in data["blocks"].values()]
    for key, values in (("stride", {1, 2}), ("group", {3, 8}), ("first_group", {True, False})):
        assert {c[key] for c in configs} == values, key
