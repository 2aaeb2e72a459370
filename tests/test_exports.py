"""The public door: one sorted __all__, every name importable, version from metadata."""

from __future__ import annotations

import importlib.metadata

import ttapi_async as tt
from ttapi_async import testing


def test_all_is_sorted_and_complete() -> None:
    """__all__ has no duplicates, names only existing objects, and covers the public names.

    Its order is ruff's (RUF022: constants, classes, then functions), checked by the linter.
    """
    for module in (tt, testing):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None
    public = {
        n for n in vars(tt) if not n.startswith("_") and not isinstance(getattr(tt, n), type(tt))
    }
    assert public - {"annotations"} <= set(tt.__all__)


def test_contract_names_exist() -> None:
    """The names the foundation issue promised are exported."""
    for name in (
        "Client",
        "Job",
        "JobSnapshot",
        "TTAPIError",
        "ValidationError",
        "OutcomeUnknownError",
    ):
        assert name in tt.__all__
    assert tt.testing is testing
    assert testing.Emulator is not None


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert tt.__version__ == importlib.metadata.version("ttapi-async")


def test_errors_share_one_root() -> None:
    """Every exception class exported derives from TTAPIError."""
    errors = [getattr(tt, n) for n in tt.__all__ if n.endswith(("Error", "Timeout"))]
    assert errors
    assert all(issubclass(e, tt.TTAPIError) for e in errors)
