"""The package surface: shufflenet_fused.ops (the op), shufflenet_fused.models, the top-level names."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import shufflenet_fused as sf
from shufflenet_fused import models, ops

REPO = Path(__file__).resolve().parents[1]


def test_top_level_names_are_those_of_the_subpackages():
    for name in ("shuffle_dwconv_bn", "reference", "validating", "ValidationError", "cuda_kernels_built"):
        assert getattr(sf, name) is getattr(ops, name), name
    for name in ("ShuffleV1Block", "ShuffleNetV1", "fuse", "load_megvii_checkpoint", "CheckpointError"):
        assert getattr(sf, name) is getattr(models, name), name
    for name in sf.__all__:
        assert hasattr(sf, name), name


def test_readme_paths():
    assert isinstance(sf.reference, types.ModuleType)
    assert callable(sf.reference.shuffle_dwconv_bn) and callable(sf.reference.channel_shuffle)
    from shufflenet_fused.checkpoint import preprocess_like_megvii

    assert sf.checkpoint.preprocess_like_megvii is preprocess_like_megvii is models.preprocess_like_megvii
    assert isinstance(sf.cuda_kernels_built(), bool)


def test_one_version():
    tomllib = pytest.importorskip("tomllib")
    from shufflenet_fused._version import __version__

    assert sf.__version__ == __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "shufflenet_fused._version.__version__"
