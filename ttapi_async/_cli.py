"""The ``ttapi-async`` command line: thin glue over the library, no logic of its own.

Strictly private. With no ``TTAPI_API_KEY`` (and no ``--api-key``), every command runs
against the embedded emulator and says so, so the tool can be tried without an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import anyio
import attrs
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ._bulk import BulkOutcome, BulkProgress
from ._client import Client
from ._errors import (
    BulkPausedError,
    JobFailedError,
    JournalCorruptError,
    OutcomeUnknownError,
    StorageError,
    TTAPIError,
    ValidationError,
)
from ._files import safe_stem
from ._journalstore import ItemState, JournalEntry
from ._models import ImagesResponse, JobResult
from ._redisconn import shown_url
from ._redisjournal import RedisJournal
from ._requests import KINDS, Request, read_rows, request_from_row, validate


T = TypeVar("T")

#: Exit codes: 0 success; 2 bad usage or a parameter rule; 3 an API or network error;
#: 4 a billable request whose outcome is unknown; 5 a 4o-image job that failed; 130 interrupted.
#: The size ``dalle3`` and ``batch --kind dalle3`` use when none is given.
DALLE3_DEFAULT_SIZE = "1024x1024"
EXIT_API_ERROR = 3
EXIT_OUTCOME_UNKNOWN = 4
EXIT_JOB_FAILED = 5
EXIT_INTERRUPTED = 130


@contextlib.asynccontextmanager
async def _client(
    api_key: str | None, base_url: str | None, timeout: float, **options: Any
) -> AsyncIterator[Client]:
    """A client for TTAPI, or for a fresh embedded emulator when there is no key."""
    if api_key:
        async with Client(api_key, base_url=base_url, timeout=timeout, **options) as client:
            yield client
        return
    try:
        from .testing import Emulator  # noqa: PLC0415 - only without a key
    except ImportError as exc:
        raise click.ClickException(
            f"no TTAPI_API_KEY is set, and the embedded emulator cannot start: {exc}"
        ) from exc
    async with Emulator(job_duration=(0.5, 1.5)) as emu:
        click.echo(
            f"No TTAPI_API_KEY set: using the embedded TTAPI emulator at {emu.url} "
            "(synthetic images, nothing is billed).",
            err=True,
        )
        async with Client(emu.api_key, base_url=emu.url, timeout=timeout, **options) as client:
            yield client


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning SDK errors into messages and exit codes."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    except OutcomeUnknownError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_OUTCOME_UNKNOWN)
    except JobFailedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_JOB_FAILED)
    except TTAPIError as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_API_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _produce(
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    prompt: str,
    call: Callable[[Client], Awaitable[ImagesResponse | JobResult]],
) -> None:
    """Run one generating call (on TTAPI or the emulator), save its images, print paths."""

    async def run() -> None:
        async with _client(api_key, base_url, timeout) as client:
            result = await call(client)
            for saved in await client.save(result, out, stem=safe_stem(prompt)):
                click.echo(str(saved.path))
            if isinstance(result, JobResult):
                click.echo(f"job {result.job_id}: {result.elapsed:.1f} s", err=True)
            elif result.usage is not None:
                click.echo(f"usage: {result.usage.total_tokens} tokens", err=True)

    _run(run)


_common = [
    click.option(
        "--api-key",
        envvar="TTAPI_API_KEY",
        default=None,
        show_envvar=True,
        help="TT-API-KEY; without one the embedded emulator is used.",
    ),
    click.option(
        "--base-url",
        envvar="TTAPI_BASE_URL",
        default=None,
        show_envvar=True,
        help="API base URL (default https://api.ttapi.io).",
    ),
    click.option(
        "--timeout",
        type=float,
        default=600.0,
        show_default=True,
        help="Seconds allowed for the whole call.",
    ),
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("images"),
        show_default=True,
        help="Folder the images are saved into.",
    ),
]


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the options every command shares."""
    for option in reversed(_common):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ttapi-async")
def main() -> None:
    """Generate images with TTAPI's OpenAI image models from the command line."""


@main.command()
@click.argument("prompt")
@click.option("--model", default="gpt-image-1", show_default=True)
@click.option("--n", type=int, default=None, help="Number of images (1-10; dall-e-3: 1).")
@click.option("--size", default=None, help="e.g. 1024x1024, 1536x1024, auto.")
@click.option(
    "--quality", default=None, help="gpt-image-1: low/medium/high; dall-e-3: standard/hd."
)
@click.option("--style", default=None, help="dall-e-3 only: vivid or natural.")
@click.option("--background", default=None, help="gpt-image-1: transparent, opaque or auto.")
@click.option("--output-format", default=None, help="gpt-image-1: png, jpeg or webp.")
@click.option("--output-compression", type=int, default=None, help="0-100, webp/jpeg only.")
@click.option("--moderation", default=None, help="gpt-image-1: low or auto.")
@common
def generate(
    prompt: str, api_key: str | None, base_url: str | None, timeout: float, out: Path, **params: Any
) -> None:
    """Generate images from PROMPT (POST /v1/images/generations) and save them to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.images.generate(prompt=prompt, **params),
    )


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", required=True)
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--model", default="gpt-image-1", show_default=True)
@click.option("--n", type=int, default=None)
@click.option("--size", default=None)
@click.option("--quality", default=None)
@click.option("--background", default=None)
@click.option("--output-format", default=None)
@common
def edit(
    images: tuple[str, ...],
    prompt: str,
    mask: str | None,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    **params: Any,
) -> None:
    """Edit IMAGES with --prompt (POST /v1/images/edits) and save the results to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.images.edit(image=list(images), prompt=prompt, mask=mask, **params),
    )


@main.command()
@click.argument("prompt")
@click.option(
    "--size",
    default="1024x1024",
    show_default=True,
    type=click.Choice(["1024x1024", "1024x1792", "1792x1024"]),
)
@click.option("--quality", default=None, type=click.Choice(["standard", "hd"]))
@common
def dalle3(
    prompt: str,
    size: str,
    quality: str | None,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
) -> None:
    """Generate one DALL-E 3 image on the legacy route and save it to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.dalle3.generate(prompt=prompt, size=size, quality=quality),
    )


@main.command(name="4o")
@click.argument("prompt")
@click.option("--refer", "refer", multiple=True, help="URL of a reference image (repeatable).")
@common
def gpt4o(
    prompt: str,
    refer: tuple[str, ...],
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
) -> None:
    """Run one 4o-image job for PROMPT, wait for it and save the image to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.gpt4o.generate(
            prompt=prompt, refer_images=list(refer) or None, timeout=timeout
        ),
    )


@main.command(name="gpt")
@click.argument("prompt")
@click.option(
    "--model", default=None, help="gpt-image-2 (default), gpt-image-2-plus, gpt-image-1.5, ..."
)
@click.option("--aspect-ratio", default=None, help="gpt-image-2: 1:1, 3:4, 4:3, 16:9 or 9:16.")
@click.option("--size", default=None, help="gpt-image-2-plus: WIDTHxHEIGHT, e.g. 2048x1152.")
@click.option("--refer", "refer", multiple=True, help="URL of a reference image (repeatable).")
@common
def gpt(
    prompt: str,
    model: str | None,
    aspect_ratio: str | None,
    size: str | None,
    refer: tuple[str, ...],
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
) -> None:
    """Run one job on TTAPI's /openai/gpt route for PROMPT, wait, and save the image."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.gpt.generate(
            prompt=prompt,
            model=model,
            aspect_ratio=aspect_ratio,
            size=size,
            refer_images=list(refer) or None,
            timeout=timeout,
        ),
    )


# ---------------------------------------------------------------------- batch


def _load_batch(
    path: Path, kind: str, defaults: dict[str, Any], lines: list[int] | None = None
) -> tuple[list[Request], list[str]]:
    """Read and check every row of a batch file; return the requests and all problems.

    ``lines`` (if given) receives each request's line number in the file.
    """
    requests: list[Request] = []
    problems: list[str] = []
    for number, row in read_rows(path):
        try:
            if isinstance(row, ValidationError):
                raise row
            request = request_from_row(kind, row, defaults)
            validate(request)
        except ValidationError as exc:
            problems.append(f"{path.name}:{number}: {exc}")
            continue
        requests.append(request)
        if lines is not None:
            lines.append(number)
    return requests, problems


def _ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``"0-2, 5, 7-8"``."""
    spans: list[str] = []
    ordered = sorted(set(indexes))
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(spans)


#: Problems listed by a failed check of a batch file (the count is always given).
_MAX_PROBLEMS = 30


class _Display:
    """Shows a batch's progress: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, *, live: bool) -> None:
        self.console = Console(stderr=True)
        self.live = live
        self.total = total
        self._last: BulkProgress | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if live:
            self._progress = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[green]{task.fields[done]} done"),
                TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("[cyan]{task.fields[running]} running"),
                TextColumn("{task.fields[rate]}/s"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(
                "batch", total=total, done=0, failed=0, running=0, rate="0.0"
            )

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, p: BulkProgress) -> None:
        self._last = p
        if self._progress is not None and self._task is not None:
            rate = (p.done + p.failed + p.unknown) / p.elapsed if p.elapsed > 0 else 0.0
            self._progress.update(
                self._task,
                completed=p.finished,
                done=p.done + p.skipped,
                failed=p.failed + p.unknown,
                running=p.running,
                rate=f"{rate:.1f}",
            )

    def outcome(self, o: BulkOutcome) -> None:
        if self.live:
            if not o.ok and not o.resumed:
                self.console.print(f"[red]#{o.index} {o.state.value}[/red]: {o.reason or o.error}")
            return
        tail = " ".join(str(p) for p in o.paths) if o.ok else (o.reason or str(o.error))
        click.echo(f"{o.state.value}\t{o.index}\t{o.job_id or '-'}\t{tail}")

    def note(self, text: str) -> None:
        self.console.print(text)

    def shared_summary(
        self,
        p: BulkProgress,
        out: Path,
        shared: SharedRun,
        rows: Mapping[int, JournalEntry],
        taken_over: int,
        mine: list[int],
        *,
        interrupted: bool,
    ) -> int:
        """The whole shared run's summary (every worker's items), and its exit code."""
        counts = dict.fromkeys(ItemState, 0)
        for row in rows.values():
            counts[row.state] += 1
        table = Table(title=f"shared run {shared.run!r}: every worker's items", show_header=True)
        table.add_column("state")
        table.add_column("whole run", justify="right")
        table.add_column("by this process", justify="right")
        by_me = {
            ItemState.DONE: p.done,
            ItemState.FAILED: p.failed,
            ItemState.OUTCOME_UNKNOWN: p.unknown,
        }
        for state in ItemState:
            table.add_row(state.value, str(counts[state]), str(by_me.get(state, "")))
        table.add_row("taken over from a dead process", "", str(taken_over))
        table.add_row("elapsed", "", f"{p.elapsed:.1f} s")
        self.console.print(table)
        self.console.print(f"images of this process: {out}   journal: {shown_url(shared.url)}")
        click.echo(
            f"this process: {p.done} done, {p.failed} failed, {p.unknown} outcome unknown, "
            f"{taken_over} taken over from stopped processes",
            err=True,
        )
        if mine:
            click.echo(f"items this process ran: {_ranges(mine)}", err=True)
        for index, row in sorted(rows.items()):
            if row.state is ItemState.OUTCOME_UNKNOWN:
                line = shared.lines[index] if index < len(shared.lines) else "?"
                click.echo(f"item {index} (line {line}): outcome unknown: {row.reason}", err=True)
        ended = (
            counts[ItemState.DONE] + counts[ItemState.FAILED] + counts[ItemState.OUTCOME_UNKNOWN]
        )
        if interrupted or ended < len(shared.lines):
            return EXIT_INTERRUPTED
        if counts[ItemState.OUTCOME_UNKNOWN]:
            return EXIT_OUTCOME_UNKNOWN
        return EXIT_API_ERROR if counts[ItemState.FAILED] else 0

    def summary(self, p: BulkProgress, out: Path, journal: Path | None) -> None:
        table = Table(title="batch summary", show_header=True)
        table.add_column("state")
        table.add_column("items", justify="right")
        for name, count in (
            ("done", p.done),
            ("already done (journal)", p.skipped),
            ("failed", p.failed),
            ("outcome unknown", p.unknown),
            ("still running (wait timed out)", p.timed_out),
            ("not started", max(0, p.total - p.finished) if p.total is not None else 0),
        ):
            table.add_row(name, str(count))
        table.add_row("elapsed", f"{p.elapsed:.1f} s")
        table.add_row("job cap at the end", str(p.jobs_cap))
        self.console.print(table)
        self.console.print(f"images: {out}" + (f"   journal: {journal}" if journal else ""))
        if journal is not None:
            # What to run next; the same command resumes where this run stopped.
            if p.total is not None and p.finished < p.total:
                self.console.print("Run the same command again to resume.")
            if p.failed:
                self.console.print("Add --retry-failed to run the failed items again.")
            if p.timed_out:
                self.console.print("Jobs still running at TTAPI are waited on by the next run.")
            if p.unknown:
                self.console.print(
                    "Items with an unknown outcome may have been billed; add "
                    "--resubmit-unknown to submit them again anyway."
                )


@main.command()
@click.argument("prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(sorted(KINDS)),
    default="4o",
    show_default=True,
    help="Endpoint: 4o-image jobs, /openai/gpt jobs, images.generate, images.edit or the "
    "DALL-E 3 route.",
)
@click.option("--model", default=None, help="Model for generate/edit/gpt (e.g. gpt-image-1).")
@click.option("--size", default=None, help="e.g. 1024x1024 (gpt: gpt-image-2-plus only).")
@click.option("--quality", default=None, help="generate/edit/dalle3: e.g. low, high, hd.")
@click.option("--n", type=int, default=None, help="generate/edit/dalle3: images per call.")
@click.option("--aspect-ratio", default=None, help="gpt (gpt-image-2): 1:1, 16:9, 9:16, ...")
@click.option("--refer", "refer_images", multiple=True, help="4o/gpt: reference image URL.")
@click.option("--image", "image", multiple=True, help="edit: input image path.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Job slots: jobs queued or running at TTAPI at once (lowered on 499).",
)
@click.option(
    "--rate", type=float, default=None, help="Requests per second, submits and polls together."
)
@click.option(
    "--journal",
    default=None,
    help="Resumable journal: a file (default: OUT/ttapi-journal.sqlite), or a "
    "redis://HOST:PORT/DB URL to share the run between processes (needs --run).",
)
@click.option(
    "--run",
    "run_name",
    default=None,
    help="With a redis:// journal: the shared run's name; every process started with the "
    "same inputs and name works on one run.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="With a redis:// journal: seconds before a dead process's items are taken over.",
)
@click.option("--no-journal", is_flag=True, help="Run without a journal (no resume).")
@click.option("--retry-failed", is_flag=True, help="Run items that failed earlier again.")
@click.option(
    "--resubmit-unknown",
    is_flag=True,
    help="Submit again items whose outcome is unknown (they may bill twice).",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed item.")
@click.option("--ordered", is_flag=True, help="Report outcomes in input order.")
@click.option("--dry-run", is_flag=True, help="Check every row; send nothing.")
@click.option(
    "--progress/--no-progress", default=None, help="Live progress bar (default: on a terminal)."
)
@common
def batch(
    prompts_file: Path,
    kind: str,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    concurrency: int,
    rate: float | None,
    journal: str | None,
    run_name: str | None,
    lease: float,
    no_journal: bool,
    retry_failed: bool,
    resubmit_unknown: bool,
    fail_fast: bool,
    ordered: bool,
    dry_run: bool,
    progress: bool | None,
    **defaults: Any,
) -> None:
    """Run every prompt of PROMPTS_FILE and save the images to --out.

    PROMPTS_FILE is one prompt per line, or JSONL / CSV with per-row parameters (a
    ``prompt`` field plus any of the endpoint's). Every row is checked before anything
    is sent. Run the same command again to resume after a crash or Ctrl-C: finished
    items are skipped and submitted jobs are waited on, never submitted twice. The first
    Ctrl-C finishes the jobs in flight; a second one stops at once.
    """
    defaults = {k: (v or None) for k, v in defaults.items()}
    if kind == "dalle3" and defaults.get("size") is None:
        # As `ttapi-async dalle3` does: the legacy route requires a size (a row may set one).
        defaults["size"] = DALLE3_DEFAULT_SIZE
    shared = journal is not None and journal.startswith(("redis://", "rediss://", "unix://"))
    if shared and not run_name:
        raise click.UsageError("--run NAME is required with a redis:// --journal")
    if run_name and not shared:
        raise click.UsageError("--run needs a redis:// --journal (a shared run)")
    lines: list[int] = []
    requests, problems = _load_batch(prompts_file, kind, defaults, lines)
    if problems:
        for line in problems[:_MAX_PROBLEMS]:
            click.echo(line, err=True)
        if len(problems) > _MAX_PROBLEMS:
            click.echo(f"... and {len(problems) - _MAX_PROBLEMS} more", err=True)
        click.echo(f"{len(problems)} problem(s) in {prompts_file}; nothing was sent.", err=True)
        sys.exit(2)
    if not requests:
        click.echo(
            f"{prompts_file} has no rows (blank lines and # comments are skipped).", err=True
        )
        sys.exit(2)
    if dry_run:
        click.echo(f"{len(requests)} row(s) valid for {kind}; nothing was sent (--dry-run).")
        return
    where: Path | SharedRun | None
    if no_journal:
        where = None
    elif shared:
        assert journal is not None  # noqa: S101 - shared says so
        assert run_name is not None  # noqa: S101 - checked above
        where = SharedRun(journal, run_name, lease, lines)
    else:
        where = Path(journal) if journal else out / "ttapi-journal.sqlite"
    live = sys.stderr.isatty() if progress is None else progress
    code = _run(
        lambda: _batch(
            requests,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            out=out,
            rate=rate,
            live=live,
            journal=where,
            max_jobs=concurrency,
            # A sync call is a job and an HTTP request at once: let all slots be used.
            max_requests=concurrency,
            retry_failed=retry_failed,
            resubmit_unknown=resubmit_unknown,
            fail_fast=fail_fast,
            ordered=ordered,
        )
    )
    sys.exit(code)


@attrs.frozen
class SharedRun:
    """A run shared through Redis: where, its name, the lease, each item's line number."""

    url: str
    run: str
    lease: float
    lines: list[int]


async def _batch(
    requests: list[Request],
    *,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    rate: float | None,
    live: bool,
    journal: Path | SharedRun | None,
    **options: Any,
) -> int:
    """Run a batch with a display and a two-stage Ctrl-C; return the exit code."""
    display = _Display(len(requests), live=live)
    interrupts = 0
    stopped_by: TTAPIError | None = None
    whole: Mapping[int, JournalEntry] | None = None
    mine: list[int] = []  # the items this process ran to their end
    async with contextlib.AsyncExitStack() as stack:
        store: Path | RedisJournal | None = None
        if isinstance(journal, SharedRun):
            store = await stack.enter_async_context(
                RedisJournal.open(journal.url, journal.run, lease=journal.lease)
            )
        else:
            store = journal
        with anyio.CancelScope() as scope, display:
            async with _client(api_key, base_url, timeout, requests_per_second=rate) as client:
                run = client.bulk(
                    requests, save_to=out, journal=store, on_progress=display.update, **options
                )

                def on_sigint() -> None:
                    nonlocal interrupts
                    interrupts += 1
                    if interrupts == 1:
                        display.note(
                            "[yellow]Ctrl-C: finishing the jobs in flight (Ctrl-C again to "
                            "stop now; the journal stays consistent)"
                        )
                        run.stop()
                    else:
                        scope.cancel()

                loop = asyncio.get_running_loop()
                # SIGTERM (a deploy, a scheduler) as the first Ctrl-C: the jobs in flight
                # finish, a shared run's claims are let go, the journal stays consistent.
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signal.SIGINT, on_sigint)
                    loop.add_signal_handler(signal.SIGTERM, on_sigint)
                try:
                    async with run as outcomes:
                        async for outcome in outcomes:
                            display.outcome(outcome)
                            if not outcome.resumed:
                                mine.append(outcome.index)
                except BulkPausedError as exc:
                    display.note(f"[red]paused after an account error: {exc.cause}")
                    stopped_by = exc
                except (JournalCorruptError, StorageError):
                    # The run could not start (or write) its journal: no summary, and no
                    # advice to run again, which would meet the same file. The error says
                    # what to do; _run prints it.
                    raise
                except TTAPIError as exc:  # --fail-fast
                    display.note(f"[red]stopped at the first failure: {type(exc).__name__}: {exc}")
                    stopped_by = exc
                finally:
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(signal.SIGINT)
                        loop.remove_signal_handler(signal.SIGTERM)
        if isinstance(store, RedisJournal):
            whole = await store.load()
    p = run.progress
    if isinstance(journal, SharedRun) and whole is not None:
        taken = run.takeover.taken_over if run.takeover is not None else 0
        return display.shared_summary(
            p, out, journal, whole, taken, mine, interrupted=interrupts > 0
        )
    display.summary(p, out, journal if isinstance(journal, Path) else None)
    if scope.cancelled_caught or interrupts:
        return EXIT_INTERRUPTED
    if p.unknown or isinstance(stopped_by, OutcomeUnknownError):
        return EXIT_OUTCOME_UNKNOWN
    if p.failed or p.timed_out or stopped_by is not None:
        return EXIT_API_ERROR
    return 0


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--api-key", default=None, help="Key the emulator accepts (default: random).")
def emulator(host: str, port: int, api_key: str | None) -> None:
    """Run the TTAPI emulator standalone (same as python -m ttapi_async.testing)."""
    from .testing.__main__ import main as emulator_main  # noqa: PLC0415

    args = ["--host", host, "--port", str(port)] + (["--api-key", api_key] if api_key else [])
    emulator_main(args)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=Path(sys.argv[0]).name)
