"""tests/fixtures/megvii_v1.pt is what the seed's Megvii code computes (skipped without the seed).

Catches a fixture gone stale: a seed that changed, or a torch whose float64 results moved.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from megvii_records import assert_matches_record, records, run_record

RECORDS = records()


@pytest.mark.parametrize("name", list(RECORDS))
def test_fixture_is_what_the_seed_computes(megvii, name):
    record = RECORDS[name]
    config = dict(record["config"])
    if name == "network":
        with contextlib.redirect_stdout(io.StringIO()):  # the seed prints in its constructor
            model = megvii.ShuffleNetV1(**config)
    else:
        inp, oup = config.pop("inp"), config.pop("oup")
        model = megvii.ShuffleV1Block(inp, oup, **config)
    assert_matches_record(run_record(model, record), record)
