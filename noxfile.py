"""Task runner: ``nox`` runs lint, typecheck and tests; ``nox -s bench`` runs the benchmarks."""

from __future__ import annotations

import nox


nox.options.sessions = ["lint", "typecheck", "tests", "examples"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite against the emulator on 127.0.0.1."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def examples(session: nox.Session) -> None:
    """Only the tests that run the examples and the CLI."""
    session.install("-e", ".[test]")
    session.run(
        "python", "-m", "pytest", "tests/test_examples.py", "tests/test_cli.py", *session.posargs
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, examples and benchmarks."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def faults(session: nox.Session) -> None:
    """The full fault matrix (every fault x every mode, about a minute) into docs/faults.md.

    Fails when a cell loses an input, submits a prompt twice or hands over a wrong image.
    ``nox -s faults -- --small`` runs the CI size.
    """
    session.install("-e", ".[dev]")
    session.run(
        "python", "benchmarks/faults.py", "--out", "docs/faults.md", "--check", *session.posargs
    )


@nox.session
def audit(session: nox.Session) -> None:
    """Known vulnerabilities in every installed dependency (pip-audit against PyPI's advisories).

    Needs PyPI's JSON API (or ``-- -s osv`` for OSV); a package mirror without it reports the
    dependencies as not found, which ``--strict`` turns into a failure rather than a pass.
    """
    session.install("-e", ".[dev]", "pip-audit>=2.7")
    session.run(
        "pip-audit", "--strict", "--skip-editable", "--progress-spinner", "off", *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput and client CPU per call, then bulk runs, side by side (about 10 minutes)."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bench_generate.py", *session.posargs)
    session.run("python", "benchmarks/bench_bulk.py")
