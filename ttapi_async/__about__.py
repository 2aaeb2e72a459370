"""The installed version, read once from the package metadata. Strictly private."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


__all__ = ["VERSION"]

try:
    VERSION = version("ttapi-async")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
