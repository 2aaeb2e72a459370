"""The public door: one sorted __all__, every name importable, version from metadata."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

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


def test_every_public_name_is_looked_up_in_its_module() -> None:
    """The lazy table and __all__ agree: each name resolves to the module's own object."""
    import importlib  # noqa: PLC0415

    lazy = tt._EXPORTS
    assert set(lazy) == set(tt.__all__) - {"__version__"}
    for name, module in lazy.items():
        assert getattr(tt, name) is getattr(importlib.import_module(module, "ttapi_async"), name)


def test_importing_the_package_imports_no_http_stack() -> None:
    """`import ttapi_async` (which the pytest plugin's loading runs) stays cheap: aiohttp,
    the client, Pillow and rich come with the first name used."""

    code = (
        "import sys, ttapi_async\n"
        "heavy = ('aiohttp', 'ttapi_async._client', 'PIL', 'rich')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy) or '-')\n"
        "ttapi_async.Client\n"
        "print('aiohttp' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["-", "True"]


def test_help_on_the_package_works_without_the_testing_extra(tmp_path: Path) -> None:
    """pydoc reads every name dir() lists: none may need Pillow (``testing`` is not listed)."""
    blocked = tmp_path / "PIL"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('No module named PIL')\n")
    code = "import pydoc, ttapi_async; print(len(pydoc.render_doc(ttapi_async)) > 1000)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.stdout.split() == ["True"], proc.stderr
