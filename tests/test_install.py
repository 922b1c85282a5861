"""Installation guards: the build refuses an isolated environment without torch, and the
package refuses an extension compiled against another torch (naming both versions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shufflenet_fused  # noqa: F401  (loads the extension)
from shufflenet_fused import _build_info
from shufflenet_fused.ops import _library

REPO = Path(__file__).resolve().parents[1]


def test_build_records_the_torch_it_compiled_against():
    assert _build_info.TORCH_VERSION == torch.__version__


def test_extension_built_against_another_torch_is_refused(monkeypatch):
    monkeypatch.setattr(_build_info, "TORCH_VERSION", "0.0.1+other")
    with pytest.raises(ImportError) as err:
        _library._load_extension()
    message = str(err.value)
    assert "0.0.1+other" in message and torch.__version__ in message and "--no-build-isolation" in message


def test_isolated_build_without_torch_stops_with_instructions():
    # What pip's default (isolated) build sees: setuptools, no torch.
    code = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--version']; "
        "exec(open('setup.py').read())"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "pip install --no-build-isolation ." in res.stderr
