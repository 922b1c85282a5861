# The one version literal: pyproject.toml reads it (statically, without importing torch).
__version__ = "0.1.0"
