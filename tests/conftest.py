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


# Every CPU dispatch level, widest last; tests that take `cpu_isa` run once per level this
# CPU supports (the others skip) and leave the widest one in effect.
CPU_ISAS = ["baseline", "avx2", "avx512"]


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    from shufflenet_fused.ops._library import ops

    widest = ops._cpu_isa("auto")
    if CPU_ISAS.index(request.param) > CPU_ISAS.index(widest):
        pytest.skip(f"this CPU does not support {request.param}")
    ops._cpu_isa(request.param)
    yield request.param
    ops._cpu_isa("auto")
