"""Shared fixtures: the seed's Megvii ShuffleNetV1 classes, the behaviour to match.

The seed code lives outside the repository (see tests/megvii_seed.py for where it is
looked for). Tests that compare against it live are skipped when it is not there;
tests/test_megvii_fixtures.py checks the same behaviour against results recorded from it
(tests/fixtures/megvii_v1.pt) and runs everywhere.
"""

from __future__ import annotations

import types

import pytest
from megvii_seed import SEED_DIR, load_megvii


@pytest.fixture(scope="session")
def megvii() -> types.SimpleNamespace:
    """The seed's classes (``megvii.ShuffleV1Block``, ``megvii.ShuffleNetV1``); skips without the seed."""
    seed = load_megvii()
    if seed is None:
        pytest.skip(f"the seed's Megvii code is not in {SEED_DIR} (set SHUFFLENET_FUSED_SEED_DIR)")
    return seed
