"""The package version, in a module of its own so that low layers (io, similarity) can
record it without importing the top-level package and its lazy ``selip.load``."""

__version__ = "0.1.0"  # keep equal to pyproject.toml's version
