"""The installed m3bert's version, from package metadata (what model folders and reports record)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """``pyproject.toml``'s version as installed; ``0+unknown`` for a source tree that was never installed."""
    try:
        return version("m3bert")
    except PackageNotFoundError:
        return "0+unknown"
