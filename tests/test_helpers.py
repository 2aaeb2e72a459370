"""The shared test helpers: the service-binary rule CI relies on."""

from __future__ import annotations

from pathlib import Path

import pytest


pytest_plugins = ["pytester"]

_PROBE = """
from helpers import require_binary

def test_needs_it():
    require_binary("surely-not-a-binary-ttapi")
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makepyfile(test_probe=_PROBE)
    return pytester.runpytest_inprocess("-rs", "-p", "no:randomly")


def test_missing_service_skips_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TTAPI_REQUIRE_SERVICES", raising=False)
    result = _run(pytester)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*surely-not-a-binary-ttapi is not installed*"])


def test_missing_service_fails_when_services_are_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTAPI_REQUIRE_SERVICES", "1")
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TTAPI_REQUIRE_SERVICES=1 but surely-not-a-binary-ttapi*"])


def test_present_service_gives_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import require_binary  # noqa: PLC0415 - the module under test

    monkeypatch.setenv("TTAPI_REQUIRE_SERVICES", "1")
    assert Path(require_binary("sh")).name == "sh"
