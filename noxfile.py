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
def bench(session: nox.Session) -> None:
    """Throughput and client CPU per call, then bulk runs, side by side (about 10 minutes)."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bench_generate.py", *session.posargs)
    session.run("python", "benchmarks/bench_bulk.py")
