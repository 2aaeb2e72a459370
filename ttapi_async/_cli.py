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
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import click

from ._client import Client
from ._clijournal import JournalClashError, SharedRun, plan_journal
from ._cliview import (
    EXIT_API_ERROR,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OUTCOME_UNKNOWN,
    Display,
    ranges,
)
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
from ._journalstore import JournalEntry
from ._models import ImagesResponse, JobResult
from ._redisjournal import RedisJournal
from ._requests import KINDS, Request, read_rows, request_from_row, validate


if TYPE_CHECKING:
    from .testing import Emulator


T = TypeVar("T")

#: The size ``dalle3`` and ``batch --kind dalle3`` use when none is given.
DALLE3_DEFAULT_SIZE = "1024x1024"
#: Problems listed by a failed check of a batch file (the count is always given).
_MAX_PROBLEMS = 30


@contextlib.asynccontextmanager
async def _client(
    api_key: str | None, base_url: str | None, timeout: float, **options: Any
) -> AsyncIterator[Client]:
    """A client for TTAPI, or for a fresh embedded emulator when there is no key."""
    if api_key:
        async with Client(api_key, base_url=base_url, timeout=timeout, **options) as client:
            yield client
        return
    Emulator = _emulator_class(  # noqa: N806 - a class, imported only without a key
        "no TTAPI_API_KEY is set (nor --api-key), so the embedded emulator was to be used: "
    )
    async with Emulator(job_duration=(0.5, 1.5)) as emu:
        click.echo(
            f"No TTAPI_API_KEY set: using the embedded TTAPI emulator at {emu.url} "
            "(synthetic images, nothing is billed).",
            err=True,
        )
        async with Client(emu.api_key, base_url=emu.url, timeout=timeout, **options) as client:
            yield client


def _emulator_class(why: str = "") -> type[Emulator]:
    """The emulator, or a usage error (exit 2) that says how to install it.

    ``why`` comes first in the message: why the emulator was wanted at all.
    """
    try:
        from .testing import Emulator  # noqa: PLC0415 - only without a key
    except ImportError as exc:
        # The emulator's own ImportError names the extra to install (Pillow is all it needs).
        raise click.UsageError(f"{why}{exc}") from exc
    return Emulator


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


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Without TTAPI_API_KEY (or --api-key) every command runs against the embedded "
    "emulator (the 'testing' extra). Exit codes: 0 ok; 2 bad usage, a parameter rule, a "
    "batch journal of another input, or no emulator to run; 3 an API or network error "
    "(batch: items failed, or the run paused on an account error); 4 outcome unknown "
    "(maybe billed); 5 a job that failed; 130 interrupted.",
)
@click.version_option(package_name="ttapi-async")
def main() -> None:
    """Generate images with TTAPI's OpenAI image models from the command line."""


@main.command()
@click.argument("prompt")
@click.option(
    "--model",
    default="gpt-image-1",
    show_default=True,
    help="gpt-image-1, gpt-image-1.5, gpt-image-2, dall-e-2 or dall-e-3 (other names are "
    "sent as given).",
)
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
@click.option("--prompt", required=True, help="What to change.")
@click.option(
    "--mask",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PNG whose transparent pixels mark where to edit (the first image's size).",
)
@click.option(
    "--model",
    default="gpt-image-1",
    show_default=True,
    help="gpt-image-1, gpt-image-1.5, gpt-image-2 or dall-e-2.",
)
@click.option("--n", type=int, default=None, help="Number of images (1-10).")
@click.option("--size", default=None, help="e.g. 1024x1024, 1536x1024, auto.")
@click.option("--quality", default=None, help="GPT image models: low, medium, high or auto.")
@click.option("--background", default=None, help="GPT image models: transparent, opaque, auto.")
@click.option("--output-format", default=None, help="GPT image models: png, jpeg or webp.")
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
@click.option(
    "--quality",
    default=None,
    type=click.Choice(["standard", "hd"]),
    help="hd: finer detail (costs more).",
)
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
    # A rule broken by a command-line option is the option's problem, said once, not a
    # problem of every line of the file.
    by_flag: dict[str, list[int]] = {}
    try:
        for number, row in read_rows(path):
            try:
                if isinstance(row, ValidationError):
                    raise row
                request = request_from_row(kind, row, defaults)
                validate(request)
            except ValidationError as exc:
                flag = _FLAGS.get(exc.param, "--" + exc.param.replace("_", "-"))
                from_flag = defaults.get(exc.param) is not None
                if isinstance(row, dict) and from_flag and exc.param not in row:
                    by_flag.setdefault(f"{flag} (on the command line): {exc}", []).append(number)
                    continue
                problems.append(f"{path.name}:{number}: {exc}")
                continue
            requests.append(request)
            if lines is not None:
                lines.append(number)
    except ValidationError as exc:  # the file as a whole: unreadable, or a CSV header
        problems.append(f"{path.name}: {exc}")
    flagged = [f"{text} [rows on line(s) {ranges(rows)}]" for text, rows in by_flag.items()]
    return requests, flagged + problems


#: Batch options named otherwise than the request field they set.
_FLAGS = {"refer_images": "--refer"}


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
    help="Resumable journal: a file (default: OUT/ttapi-journal-<file name>-<kind>.sqlite, "
    "one per input), or a redis://HOST:PORT/DB URL to share the run between processes "
    "(needs --run).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start this input over: set its existing journal aside (kept as a .bak file) "
    "instead of resuming it.",
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
@click.option("--dry-run", is_flag=True, help="Check every row and the journal; send nothing.")
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
    fresh: bool,
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
    "prompt" field plus any of the endpoint's). Every row, and the journal, is checked
    before anything is sent. Each input file and --kind has its own journal in --out, so
    running the same command again resumes after a crash or Ctrl-C: finished items are
    skipped and submitted jobs are waited on, never submitted twice. The first Ctrl-C
    finishes the jobs in flight; a second one stops at once.
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
        click.echo(f"{len(problems)} problem(s) with {prompts_file}; nothing was sent.", err=True)
        sys.exit(2)
    if not requests:
        click.echo(
            f"{prompts_file} has no rows (blank lines and # comments are skipped).", err=True
        )
        sys.exit(2)
    if fresh and (no_journal or shared):
        raise click.UsageError("--fresh sets a journal file aside: not with --no-journal or redis")
    where: Path | SharedRun | None
    if no_journal:
        where = None
    elif shared:
        assert journal is not None  # noqa: S101 - shared says so
        assert run_name is not None  # noqa: S101 - checked above
        where = SharedRun(journal, run_name, lease, lines)
    else:
        where = _journal_for(
            out, prompts_file, kind, requests, lines, journal, fresh=fresh, dry_run=dry_run
        )
    if dry_run:
        click.echo(f"{len(requests)} row(s) valid for {kind}; nothing was sent (--dry-run).")
        return
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
            fresh=fresh,
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


def _journal_for(
    out: Path,
    prompts_file: Path,
    kind: str,
    requests: list[Request],
    lines: list[int],
    given: str | None,
    *,
    fresh: bool,
    dry_run: bool,
) -> Path:
    """The journal file of a run (see ``_clijournal``), its notes printed first."""
    try:
        plan = plan_journal(
            out=out,
            prompts_file=prompts_file,
            kind=kind,
            requests=requests,
            lines=lines,
            given=given,
            fresh=fresh,
            dry_run=dry_run,
        )
    except JournalClashError as exc:
        raise click.UsageError(str(exc)) from exc
    except TTAPIError as exc:  # --fresh could not open or move the old journal
        raise click.UsageError(f"--fresh: {exc}") from exc
    for note in plan.notes:
        click.echo(note, err=True)
    if plan.resumable:
        counts = ", ".join(f"{n} {state.value}" for state, n in sorted(plan.resumable.items()))
        click.echo(f"resuming {plan.path}: {counts} of {len(requests)} row(s)", err=True)
    return plan.path


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
    fresh: bool = False,
    **options: Any,
) -> int:
    """Run a batch with a display and a two-stage Ctrl-C; return the exit code."""
    display = Display(len(requests), live=live, shared=isinstance(journal, SharedRun))
    interrupts = 0
    stopped_by: TTAPIError | None = None
    unusable: TTAPIError | None = None  # the journal cannot be used: raised after cleanup
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
        # The client (and the emulator, and its notice) before the live bar starts: a line
        # printed beside a running bar is glued to it.
        client = await stack.enter_async_context(
            _client(api_key, base_url, timeout, requests_per_second=rate)
        )
        run = client.bulk(
            requests, save_to=out, journal=store, on_progress=display.update, **options
        )
        with anyio.CancelScope() as scope, display:

            def on_sigint() -> None:
                nonlocal interrupts
                interrupts += 1
                if interrupts == 1:
                    display.note(
                        "[yellow]Ctrl-C: finishing the jobs in flight (Ctrl-C again to "
                        "stop now; the journal stays consistent)"
                    )
                    display.ended(run.progress, "stopping")
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
            except (JournalCorruptError, StorageError) as exc:
                # The run could not start (or write) its journal: no summary, and no
                # advice to run again, which would meet the same file. The error says
                # what to do; _run prints it, once the journal is closed.
                unusable = exc
            except ValidationError as exc:
                if exc.param == "journal":
                    # A journal that cannot be used (in use by another run, not a journal,
                    # a shared run of other inputs): a usage error, exit 2, no summary.
                    unusable = exc
                else:
                    display.note(f"[red]stopped at the first failure: {type(exc).__name__}: {exc}")
                    stopped_by = exc
            except TTAPIError as exc:  # --fail-fast
                display.note(f"[red]stopped at the first failure: {type(exc).__name__}: {exc}")
                stopped_by = exc
            finally:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signal.SIGINT)
                    loop.remove_signal_handler(signal.SIGTERM)
                # The bar's last frame: final counts, and why it stopped in place of an ETA.
                display.ended(run.progress, _why_ended(interrupts, stopped_by))
        if isinstance(store, RedisJournal) and unusable is None:
            whole = await store.load()
    if unusable is not None:
        # Raised here, not inside the journal's block: a shared journal's task group
        # would wrap it in an exception group, which _run does not turn into a message.
        raise unusable
    p = run.progress
    if isinstance(journal, SharedRun) and whole is not None:
        taken = run.takeover.taken_over if run.takeover is not None else 0
        return display.shared_summary(
            p, out, journal, whole, taken, mine, interrupted=interrupts > 0
        )
    display.summary(
        p,
        out,
        journal if isinstance(journal, Path) else None,
        paused=isinstance(stopped_by, BulkPausedError),
        fresh=fresh,
    )
    if scope.cancelled_caught or interrupts:
        return EXIT_INTERRUPTED
    if p.unknown or isinstance(stopped_by, OutcomeUnknownError):
        return EXIT_OUTCOME_UNKNOWN
    if p.failed or p.timed_out or stopped_by is not None:
        return EXIT_API_ERROR
    return 0


def _why_ended(interrupts: int, stopped_by: TTAPIError | None) -> str | None:
    """What the bar shows in place of its ETA when the run ended early (None: it did not)."""
    if interrupts:
        return "interrupted"
    if isinstance(stopped_by, BulkPausedError):
        return "paused (account error)"
    if stopped_by is not None:
        return "stopped (--fail-fast)"
    return None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--api-key", default=None, help="Key the emulator accepts (default: random).")
def emulator(host: str, port: int, api_key: str | None) -> None:
    """Run the TTAPI emulator standalone (same as python -m ttapi_async.testing).

    It prints its URL on stdout, and on stderr the export line to paste into another
    shell. Faults, job times and a balance: python -m ttapi_async.testing --help.
    """
    _emulator_class()  # the extra is installed, or a usage error says how to get it
    from .testing.__main__ import main as emulator_main  # noqa: PLC0415

    args = ["--host", host, "--port", str(port)] + (["--api-key", api_key] if api_key else [])
    emulator_main(args)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=Path(sys.argv[0]).name)
