"""Loads the seed's Megvii ShuffleNetV1 code, the behaviour to match.

The seed code lives outside the repository, in ``<repo>/../shared/seed`` (or the folder
named by ``SHUFFLENET_FUSED_SEED_DIR``), as ``megvii_blocks.py`` and ``megvii_network.py``
(or ShuffleNet-Series' own ``blocks.py`` and ``network.py``). Used by tests/conftest.py and
by scripts/make_megvii_fixtures.py, which records its results in tests/fixtures/ for the
clones that do not have it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
SEED_DIR = Path(os.environ.get("SHUFFLENET_FUSED_SEED_DIR") or _REPO.parent / "shared" / "seed")


def _find(*names: str) -> Path | None:
    for name in names:
        if (SEED_DIR / name).is_file():
            return SEED_DIR / name
    return None


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_files() -> tuple[Path, Path] | None:
    """The seed's blocks and network files, or None without the seed."""
    blocks_path = _find("megvii_blocks.py", "blocks.py")
    network_path = _find("megvii_network.py", "network.py")
    if blocks_path is None or network_path is None:
        return None
    return blocks_path, network_path


def load_megvii() -> types.SimpleNamespace | None:
    """The seed's ``ShuffleV1Block`` and ``ShuffleNetV1`` classes, or None without the seed."""
    files = seed_files()
    if files is None:
        return None
    blocks_path, network_path = files
    blocks = _load("_megvii_blocks", blocks_path)
    # The seed's network.py does `from blocks import ShuffleV1Block`: lend it our copy of
    # the seed's blocks module under that name while it imports, then put things back.
    saved = sys.modules.get("blocks")
    sys.modules["blocks"] = blocks
    try:
        network = _load("_megvii_network", network_path)
    finally:
        if saved is None:
            del sys.modules["blocks"]
        else:
            sys.modules["blocks"] = saved
    return types.SimpleNamespace(ShuffleV1Block=blocks.ShuffleV1Block, ShuffleNetV1=network.ShuffleNetV1)
