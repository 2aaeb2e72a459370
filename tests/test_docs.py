"""Every code block of README.md and docs/*.md runs, as shown, against the emulator.

One test per block that runs (its id is ``page:line`` of the opening fence, e.g.
``README.md:123``), and one summary test that lists the blocks that do not run, with their
reasons. Beside them: docs/errors.md must draw every exported error under its parent, and
docs/reference/*.md must name every public name. The rules a block is held to; write new
blocks to fit them:

* ``python`` blocks run in order, page by page, in one namespace per page: a block may use
  what an earlier block of its page defined. Before each block the namespace is given
  ``tt`` (``import ttapi_async as tt``) and ``client``, an open ``tt.Client`` on the
  emulator; both are set again before every block, so a block that rebinds ``client``
  (``async with tt.Client() as client:``) does not change the next one's. Any other name
  a block imports or defines itself, or an earlier block of its page did.
* A block may use ``await``, ``async with`` and ``async for`` at the top level, as in
  ``python -m asyncio`` or a notebook: it runs on the event loop that serves ``client``.
  A block without them runs as a script does (in the test's thread, with no loop running),
  so a complete script ending in ``asyncio.run(main())`` runs as it is.
* The environment points ``tt.Client()`` without arguments at the emulator
  (``TTAPI_API_KEY``, ``TTAPI_BASE_URL``), and sets ``TTAPI_HOOK_URL`` (a public address,
  never called) and, for a block that names it, ``TTAPI_REDIS_URL``: a ``redis-server`` of
  the test's own (a block needing it skips without one, or fails under
  ``TTAPI_REQUIRE_SERVICES=1``).
* Each page runs in a temporary folder of its own, holding the files the pages mention:
  ``a.png``, ``b.webp`` and ``mask.png`` (real images), ``prompts.txt`` and a copy of
  ``examples/prompts.{txt,jsonl,csv}``.
* A ``python`` block right after a line ``<!-- run: pytest -->`` is a test module: it is
  written to a file in the page's folder and run by pytest in a child process (all such
  blocks of a page in one run, for one start-up; each block's test reads its own
  module's result). A block must hold at least one test, and all of them must pass.
* ``bash``, ``sh`` and ``shell`` blocks run with ``bash -e -o pipefail`` in the page's
  folder. ``console`` blocks run one ``$ `` command at a time: the lines after a command
  are its output, and when there are any, what it prints to stdout must read the same
  (trailing spaces aside; ``COLUMNS=80``). A plain ``ttapi-async ...`` command (no pipes,
  redirections, variables or globs) runs the CLI's ``main`` in this process, with fast
  waits, the same environment and folder, which saves a child interpreter (about a second
  each); any other command runs in bash. In a shell block, the ``ttapi-async`` on PATH is
  this repository's, with fast waits on (as the suite's ``cli`` fixture runs it), and
  ``python`` is this interpreter.
* A block whose first line is ``# not run by the docs test: <reason>`` is not run, and says
  so to the reader; the summary test prints every such block and its reason, and fails
  when there are more than ``MAX_NOT_RUN``, a reason is empty, or the marker is anywhere
  but the first line.
* Other fences (``text``, ``toml``, ``yaml``, ``json``, ...) are not code to run. A fence
  with no language at all fails the summary test (label it ``text``), so that no shell or
  Python block goes unrun by mistake.

Every client is made with fast waits on (``ttapi_async.testing.fast_waits``), so a 4o job
of the emulator is seen done within a few hundredths of a second.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any
from xml.etree import ElementTree as ET

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner
from PIL import Image

import ttapi_async as tt
from ttapi_async._cli import main as cli_main
from ttapi_async.testing import Emulator, fast_waits


ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = "# not run by the docs test:"
RUN_PYTEST = "<!-- run: pytest -->"
PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"bash", "sh", "shell", "console"})
#: More blocks left unrun than this fails the summary: each one is a promise not checked.
MAX_NOT_RUN = 12
#: Bound of one block (a shell block's child process, or a block on the event loop).
BLOCK_TIMEOUT = 90.0
#: A public hook address for snippets that build a receiver; nothing ever calls it.
HOOK_URL = "https://api.example.com/ttapi/hook"
# The CLI's own entry point, run after turning fast waits on in the child process.
_FAST_CLI = (
    "from ttapi_async.testing import set_fast_waits; set_fast_waits(True); "
    "from ttapi_async._cli import main; main(prog_name='ttapi-async')"
)
# A console command with any of these is run by bash; a plain `ttapi-async ...` in-process.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?~!{}]")
_BASH = ("bash", "-e", "-o", "pipefail", "-c")
#: The variables a block's environment sets (restored after each test).
_BLOCK_ENV = ("TTAPI_API_KEY", "TTAPI_BASE_URL", "TTAPI_HOOK_URL", "TTAPI_REDIS_URL")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # the page's path from the repository root
    line: int  # line number (from 1) of the opening fence
    lang: str  # the fence's language, lower case ("" when none)
    code: str  # the block's text, its indentation removed
    pytest: bool  # preceded by the run-with-pytest marker

    @property
    def id(self) -> str:
        """``page:line``, the test id."""
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        """``python``, ``pytest``, ``shell`` or ``text`` (not code to run)."""
        if self.lang in PYTHON:
            return "pytest" if self.pytest else "python"
        return "shell" if self.lang in SHELL else "text"

    @property
    def first_line(self) -> str:
        """The block's first line, stripped."""
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def not_run_reason(self) -> str | None:
        """The reason given on a not-run marker line, or None when the block runs."""
        if self.first_line.startswith(NOT_RUN):
            return self.first_line.removeprefix(NOT_RUN).strip()
        return None


def parse_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced block of a Markdown page, with the line of its opening fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(root).as_posix()
    blocks: list[Block] = []
    previous = ""  # the last non-blank line before a fence
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                break
            body.append(lines[j].removeprefix(indent))
            j += 1
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(page, i + 1, lang, "\n".join(body), previous == RUN_PYTEST))
        previous = ""
        i = j + 1
    return blocks


BLOCKS = [block for page in PAGES for block in parse_blocks(page)]
RUNNABLE = [b for b in BLOCKS if b.kind != "text" and b.not_run_reason is None]


def console_steps(text: str) -> list[tuple[str, str]]:
    """A console transcript's ``(command, output)`` pairs: each ``$ `` line (with its
    backslash continuations) and the lines that follow it, up to the next command."""
    steps: list[tuple[str, list[str]]] = []
    continued = False
    for line in text.splitlines():
        if continued:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append((line.removeprefix("$ "), []))
            continued = line.endswith("\\")
        elif steps:
            steps[-1][1].append(line)
    return [(command, _normalised("\n".join(output))) for command, output in steps]


def _normalised(text: str) -> str:
    """``text`` without trailing spaces or surrounding blank lines."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def _write_inputs(folder: Path) -> None:
    """The files the pages mention, as real images and prompt files."""
    Image.new("RGB", (256, 256), (200, 80, 40)).save(folder / "a.png")
    Image.new("RGB", (256, 256), (40, 80, 200)).save(folder / "b.webp")
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(folder / "mask.png")
    (folder / "prompts.txt").write_text("a lighthouse at dawn\na red fox in snow\na paper boat\n")
    (folder / "examples").mkdir()
    for name in ("prompts.txt", "prompts.jsonl", "prompts.csv"):
        shutil.copy(ROOT / "examples" / name, folder / "examples" / name)


@dataclass
class PageRun:
    """What the blocks of one page share: a namespace, a folder, how far they got."""

    folder: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    done: int = 0  # how many of the page's runnable blocks have run
    failed: list[str] = field(default_factory=list)  # ids of blocks of the page that failed
    # The page's pytest modules' results (module name: "" or what failed), once run.
    pytest_results: dict[str, str] | None = None


@dataclass
class DocsEnv:
    """The emulator, a client on it, and each page's state, for the whole module."""

    portal: BlockingPortal
    emulator: Emulator
    client: tt.Client
    root: Path
    bin: Path
    pages: dict[str, PageRun] = field(default_factory=dict)
    redis_url: str | None = None
    redis: Any = None  # a helpers.RedisServer, started for the first block that needs one

    def page(self, name: str) -> PageRun:
        """The state of page ``name``, created (with its folder and files) on first use."""
        if name not in self.pages:
            folder = self.root / name.replace("/", "_").removesuffix(".md")
            folder.mkdir()
            _write_inputs(folder)
            self.pages[name] = PageRun(folder)
        return self.pages[name]

    def environ(self) -> dict[str, str]:
        """The environment blocks run in (the child processes' too)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env["TTAPI_API_KEY"] = self.emulator.api_key
        env["TTAPI_BASE_URL"] = self.emulator.url
        env["TTAPI_HOOK_URL"] = HOOK_URL
        env["COLUMNS"] = "80"  # help texts wrap as the pages show them
        if self.redis_url is not None:
            env["TTAPI_REDIS_URL"] = self.redis_url
        env["PATH"] = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent)]) + (
            os.pathsep + env["PATH"] if env.get("PATH") else ""
        )
        return env

    def need_redis(self) -> None:
        """Start this module's redis-server (or skip the block when there is none)."""
        if self.redis is not None:
            return
        from helpers import RedisServer  # noqa: PLC0415 - only for blocks that need Redis

        server = RedisServer(str(self.root / "redis"))  # skips (or fails) without a binary
        server.start()
        self.redis, self.redis_url = server, server.url


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsEnv]:
    """An emulator and an open client, served by an event loop of their own in a thread,
    so blocks that block (scripts, child processes) leave them answering."""
    root = tmp_path_factory.mktemp("docs")
    shim = root / "bin"
    shim.mkdir()
    cli = shim / "ttapi-async"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{_FAST_CLI}" "$@"\n')
    cli.chmod(0o755)
    with (
        fast_waits(),
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(Emulator(job_duration=(0.05, 0.15), seed=7)) as emu,
        portal.wrap_async_context_manager(tt.Client(emu.api_key, base_url=emu.url)) as client,
    ):
        env = DocsEnv(portal, emu, client, root, shim)
        try:
            yield env
        finally:
            if env.redis is not None:
                env.redis.stop()


async def _await_block(code: CodeType, namespace: dict[str, Any]) -> None:
    """Run a block compiled with top-level await, on the portal's event loop."""
    with anyio.fail_after(BLOCK_TIMEOUT):
        await eval(code, namespace)  # noqa: S307 - the documentation's own code


def _run_python(block: Block, env: DocsEnv, run: PageRun) -> None:
    # Blank lines first, so a traceback names the page and the line the reader sees.
    source = "\n" * block.line + block.code
    code = compile(
        source, block.page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    run.namespace.setdefault("__name__", "__docs__")
    run.namespace.update(tt=tt, client=env.client)
    if code.co_flags & inspect.CO_COROUTINE:
        env.portal.call(_await_block, code, run.namespace)
    else:
        exec(code, run.namespace)  # noqa: S102 - the documentation's own code


def _run_child(block: Block, env: DocsEnv, run: PageRun, argv: list[str]) -> str:
    """Run ``argv`` in the page's folder; it must exit 0. Returns its stdout."""
    proc = subprocess.run(
        argv,
        cwd=run.folder,
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{block.id} exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n"
        f"--- stderr\n{proc.stderr}"
    )
    return proc.stdout


def _plain_cli(command: str) -> list[str] | None:
    """The arguments of a plain ``ttapi-async ...`` command line (no shell syntax), or None."""
    if _SHELL_SYNTAX.search(command.replace("\\\n", " ")):
        return None
    argv = shlex.split(command.replace("\\\n", " "))
    return argv[1:] if argv and argv[0] == "ttapi-async" else None


def _run_cli(block: Block, env: DocsEnv, argv: list[str]) -> str:
    """Run the CLI's ``main`` in this process (as the console shows it); it must exit 0."""
    environ = env.environ()
    result = CliRunner().invoke(
        cli_main,
        argv,
        prog_name="ttapi-async",
        env={k: environ.get(k) for k in _BLOCK_ENV},
        terminal_width=78,  # what click uses on an 80-column terminal
    )
    assert result.exit_code == 0, (
        f"{block.id}: `ttapi-async {shlex.join(argv)}` exited with {result.exit_code}\n"
        f"{result.output}\n{result.exception!r}"
    )
    return result.stdout


def _module_name(block: Block) -> str:
    """The module a pytest block is written to (without ``.py``)."""
    stem = re.sub(r"\W", "_", block.page.removesuffix(".md"))
    return f"test_{stem}_{block.line}"


def _run_pytest_modules(page: str, env: DocsEnv, run: PageRun) -> dict[str, str]:
    """Run every pytest block of ``page`` in one child pytest (one start-up, not one each).

    Returns each module's result: "" when its tests passed, else what failed; a module
    that collected no test is absent.
    """
    blocks = [b for b in RUNNABLE if b.page == page and b.kind == "pytest"]
    for b in blocks:
        (run.folder / f"{_module_name(b)}.py").write_text(b.code + "\n")
    report = run.folder / "pytest-report.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["--continue-on-collection-errors"]  # one bad block does not hide the others
    argv += [f"--junitxml={report.name}", *(f"{_module_name(b)}.py" for b in blocks)]
    proc = subprocess.run(
        argv,
        cwd=run.folder,
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    # 0: all passed; 1: some failed (the report says which). Anything else: pytest itself.
    failed_itself = f"pytest exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode in {0, 1}, failed_itself
    assert report.exists(), failed_itself
    results: dict[str, str] = {}
    tree = ET.parse(report)  # noqa: S314 - the report the child just wrote
    for case in tree.iter("testcase"):
        module = (case.get("classname") or case.get("name") or "").split(".")[0]
        problems = [p for p in case if p.tag in {"failure", "error"}]
        text = "\n".join(f"{case.get('name')}: {p.get('message')}\n{p.text}" for p in problems)
        results[module] = "\n".join(filter(None, [results.get(module, ""), text]))
    if any(results.values()):
        results = {m: r and f"{r}\n--- pytest's output\n{proc.stdout}" for m, r in results.items()}
    return results


def run_block(block: Block, env: DocsEnv) -> None:
    """Run one block by its kind, in its page's folder, namespace and environment."""
    run = env.page(block.page)
    if "TTAPI_REDIS_URL" in block.code:
        env.need_redis()
    environ = env.environ()
    os.environ.update({k: environ[k] for k in (*_BLOCK_ENV, "PATH") if k in environ})
    if block.kind == "python":
        _run_python(block, env, run)
    elif block.kind == "pytest":
        if run.pytest_results is None:
            run.pytest_results = _run_pytest_modules(block.page, env, run)
        failure = run.pytest_results.get(_module_name(block))
        assert failure is not None, f"{block.id}: pytest collected no test from this block"
        assert not failure, f"{block.id} failed under pytest:\n{failure}"
    elif block.lang == "console":
        for command, expected in console_steps(block.code):
            argv = _plain_cli(command)
            if argv is None:
                out = _run_child(block, env, run, [*_BASH, command])
            else:
                out = _run_cli(block, env, argv)
            if expected:
                assert _normalised(out) == expected, (
                    f"{block.id}: `{command}` printed something else than the page shows; "
                    f"the page should read:\n{_normalised(out)}"
                )
    else:
        _run_child(block, env, run, [*_BASH, block.code])


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_block_runs(block: Block, docs_env: DocsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs without an error (a shell block or a pytest module exits 0).

    Blocks of a page run in order: when this one is run alone (``-k``), the earlier
    blocks of its page run first, as its set-up.
    """
    run = docs_env.page(block.page)
    monkeypatch.chdir(run.folder)
    for env_name in _BLOCK_ENV:
        monkeypatch.delenv(env_name, raising=False)  # restored after the test
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    page_blocks = [b for b in RUNNABLE if b.page == block.page]
    position = page_blocks.index(block)
    for earlier in page_blocks[run.done : position]:
        try:
            run_block(earlier, docs_env)
        except Exception as exc:  # not a skip: a block needing Redis skips this one too
            pytest.fail(f"{earlier.id}, run first as this block's set-up, failed: {exc!r}")
        finally:
            run.done += 1
    try:
        run_block(block, docs_env)
    except BaseException:
        run.failed.append(block.id)
        raise
    finally:
        run.done = max(run.done, position + 1)


def test_every_block_is_run_or_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    """Each block of code runs, or its first line says it does not, and why.

    The count and the reasons are written to the terminal (not captured) in a serial run.
    """
    unlabelled = [b.id for b in BLOCKS if not b.lang]
    assert not unlabelled, f"fences without a language (label them, e.g. `text`): {unlabelled}"
    misplaced = [b.id for b in BLOCKS if NOT_RUN in b.code and not b.first_line.startswith(NOT_RUN)]
    assert not misplaced, f"the not-run marker must be the block's first line: {misplaced}"
    code = [b for b in BLOCKS if b.kind != "text"]
    not_run = [b for b in code if b.not_run_reason is not None]
    no_reason = [b.id for b in not_run if not b.not_run_reason]
    assert not no_reason, f"not-run markers without a reason: {no_reason}"
    # Tests reach nothing beyond 127.0.0.1: a block that installs from the package index
    # must say it is not run.
    installs = [b.id for b in RUNNABLE if b.kind == "shell" and "pip install" in b.code]
    assert not installs, f"blocks that would install from the package index: {installs}"
    stray_pytest = [b.id for b in BLOCKS if b.pytest and b.kind != "pytest"]
    assert not stray_pytest, f"{RUN_PYTEST} must precede a python block: {stray_pytest}"
    lines = [f"{b.id} ({b.lang}): {b.not_run_reason}" for b in not_run]
    with capsys.disabled():
        sys.stdout.write(
            f"\n{len(code) - len(not_run)} code blocks run, {len(not_run)} not run:\n  "
            + "\n  ".join(lines)
            + "\n"
        )
    assert len(RUNNABLE) == len(code) - len(not_run)
    assert len(not_run) <= MAX_NOT_RUN, (
        f"{len(not_run)} blocks are not run (at most {MAX_NOT_RUN}): "
        + ", ".join(b.id for b in not_run)
    )


def test_the_parser_finds_blocks_and_markers(tmp_path: Path) -> None:
    """The block parser: languages, lines, indented fences, markers and transcripts."""
    page = tmp_path / "check.md"
    text = (
        "# t\n\n```python\nx = 1\n```\n\n- item\n\n  ```bash\n  # not run by the docs "
        "test: a server\n  serve\n  ```\n\n<!-- run: pytest -->\n\n```python\ndef test_a()"
        ": ...\n```\n\n````text\n```\n````\n"
    )
    page.write_text(text)
    blocks = parse_blocks(page, tmp_path)
    assert [(b.line, b.lang, b.kind) for b in blocks] == [
        (3, "python", "python"),
        (9, "bash", "shell"),
        (16, "python", "pytest"),
        (20, "text", "text"),
    ]
    assert blocks[0].code == "x = 1"
    assert blocks[1].not_run_reason == "a server"
    assert blocks[1].code.endswith("\nserve")
    assert blocks[3].code == "```"
    assert console_steps("$ a \\\n  --b\nout  \n\n$ c\n") == [("a \\\n  --b", "out"), ("c", "")]


def _public_errors() -> list[str]:
    """The names of every exported ``TTAPIError`` class (the base included)."""
    exported = (getattr(tt, name) for name in tt.__all__ if name != "__version__")
    return sorted(
        obj.__name__ for obj in exported if isinstance(obj, type) and issubclass(obj, tt.TTAPIError)
    )


def test_the_error_page_draws_every_error_under_its_parent() -> None:
    """docs/errors.md's tree holds every exported error, each under its own parent class,
    and its table says what raises each one."""
    page = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    tree = next(b.code for b in parse_blocks(ROOT / "docs" / "errors.md") if b.lang == "text")
    depth: dict[str, int] = {}
    parent_at: list[str] = []
    parents: dict[str, str | None] = {}
    for line in tree.splitlines():
        found = re.search(r"[A-Za-z]+Error\b|\bRequestTimeout\b", line)
        if found is None:
            continue
        name, level = found.group(), found.start() // 4
        depth[name] = level
        del parent_at[level:]
        parents[name] = parent_at[-1] if parent_at else None
        parent_at.append(name)
    errors = _public_errors()
    assert sorted(parents) == errors
    for name, parent in parents.items():
        cls = getattr(tt, name)
        if parent is None:
            assert cls is tt.TTAPIError
        else:
            assert getattr(tt, parent) in cls.__mro__[1:], f"{name} is drawn under {parent}"
            direct = next(b for b in cls.__mro__[1:] if issubclass(b, tt.TTAPIError))
            assert direct.__name__.lstrip("_") in {parent, "RetryAfterMixin"}, name
    untold = [n for n in errors if n != "TTAPIError" and f"| `{n}` |" not in page]
    assert not untold, f"docs/errors.md's table does not say what raises {untold}"


def test_the_api_reference_covers_every_public_name() -> None:
    """Every name of ``ttapi_async.__all__`` has its entry on an API reference page."""
    documented: set[str] = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        documented.update(re.findall(r"^::: ttapi_async\.(\w+)$", page.read_text(), re.MULTILINE))
    missing = sorted(set(tt.__all__) - {"__version__"} - documented)
    assert not missing, f"not in docs/reference/*.md: {missing}"
    assert documented - {"testing"} <= set(tt.__all__), documented - set(tt.__all__)
