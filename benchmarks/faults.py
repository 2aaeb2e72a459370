"""The fault matrix: every fault x every mode against the emulator, counted from the outside.

Run: ``python benchmarks/faults.py`` (full) or ``python benchmarks/faults.py --small`` (the CI
size), ``--out docs/faults.md`` to write the table, ``--check`` to exit 1 when a cell loses,
doubles or mixes up anything. ``nox -s faults`` runs the full matrix with both.

Each **cell** is one fault in one mode, on a fresh emulator (its own seed, its own faults)
with N inputs, each a 4o job with a prompt of its own:

* ``polling``: ``client.gpt4o.submit`` then ``job.wait(timeout=None)``, then
  ``client.save``; the waiter polls.
* ``webhook``: the same with ``Client(webhook=WebhookReceiver(...))`` served on 127.0.0.1;
  callbacks end the waits (each confirmed by a fetch), polling is the backstop.
* ``bulk``: ``client.bulk(requests, journal=..., save_to=...)`` with the same receiver.

**Nothing is taken from the SDK's counters.** What the server accepted and billed comes
from the emulator's ledger (``Emulator.charges``: prompt and job id of every billed call)
and job records; what the client got comes from the files on disk (each saved image
carries the id of the job it came from, see ``ttapi_async.testing.job_of_image``; the
bulk journal is read with ``sqlite3``) and from what each call returned or raised. The
columns:

* **submitted**: jobs the server accepted for the cell's prompts (each billed once).
* **resolved once**: inputs with exactly one reported end: a result, an error, or
  ``outcome_unknown``.
* **lost**: inputs with no reported end when the cell's time bound passed (or the run).
* **double-submitted**: prompts the server accepted more than once.
* **wrong result**: inputs that were handed an image (the saved file, or the result's
  URL) that is not the image of a job the server ran for that input's prompt.
* **accepted, id unknown**: jobs the server accepted whose id the client never learned
  (its reply was lost after the job was created). Reported, never retried by itself; a
  correct client ends such an input with ``outcome_unknown``.

The goal is 0 lost, 0 double-submitted and 0 wrong results in every cell.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import anyio
import attrs
from aiohttp import web

import ttapi_async as tt
from ttapi_async.testing import CallbackFaults, EmulatedJob, Emulator, Fault, job_of_image


SUBMIT: Final = "/openai/4o-image/generations"
FETCH: Final = "/openai/4o-image/fetch"
MODES: Final = ("polling", "webhook", "bulk")
_HTML_PAGE: Final = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center>"
    b"</body></html>"
)
_HOOK_PATH: Final = "/ttapi/hook"


# --------------------------------------------------------------------------- configuration


@attrs.frozen
class Size:
    """How big and how fast one run of the matrix is."""

    name: str
    #: Inputs per cell.
    inputs: int
    #: 4o job run time, drawn uniformly.
    job_duration: tuple[float, float]
    #: Default timeout of every client call (a hanging submit outlasts it).
    call_timeout: float
    #: Wall-clock bound of one cell: what has not ended by then is lost.
    cell_timeout: float
    #: Retry-After sent with the 429 bursts.
    retry_after: float
    #: Cells run at the same time.
    parallel: int
    #: The waiter's schedule.
    poll: tt.PollPolicy
    #: The client's HTTP retries.
    retry: tt.RetryPolicy


SMALL: Final = Size(
    name="small",
    inputs=8,
    job_duration=(0.02, 0.1),
    call_timeout=2.0,
    cell_timeout=12.0,
    retry_after=0.1,
    parallel=12,
    poll=tt.PollPolicy(
        initial_delay=0.05,
        dense_interval=0.05,
        min_dense_interval=0.02,
        max_interval=0.25,
        backstop_interval=0.5,
        probes=64,
    ),
    retry=tt.RetryPolicy(max_retries=2, initial_delay=0.05, max_delay=0.25),
)

FULL: Final = Size(
    name="full",
    inputs=100,
    job_duration=(0.2, 2.0),
    call_timeout=5.0,
    cell_timeout=90.0,
    retry_after=1.0,
    parallel=8,
    poll=tt.PollPolicy(max_interval=2.0, backstop_interval=3.0),
    retry=tt.RetryPolicy(max_retries=2, initial_delay=0.25, max_delay=2.0),
)


@attrs.frozen
class Scenario:
    """One row of faults: what goes wrong, and how the emulator is told."""

    name: str
    what: str
    #: Puts the faults into a fresh emulator (Fault objects count their firings, so each
    #: cell needs its own).
    setup: Callable[[Emulator, Size], None]
    #: Only meaningful with a hook URL (callback faults): n/a in polling mode.
    hooked_only: bool = False


def _add(*faults: Callable[[Size], Fault]) -> Callable[[Emulator, Size], None]:
    def setup(emu: Emulator, size: Size) -> None:
        for make in faults:
            emu.add_fault(make(size))

    return setup


def _callbacks(**knobs: float) -> Callable[[Emulator, Size], None]:
    def setup(emu: Emulator, size: Size) -> None:  # noqa: ARG001 - same shape as the others
        emu.callbacks = CallbackFaults(**knobs)  # type: ignore[arg-type]

    return setup


def _expire(emu: Emulator, size: Size) -> None:  # noqa: ARG001
    emu.url_ttl = 0.0


def _nothing(emu: Emulator, size: Size) -> None:
    pass


SCENARIOS: Final = (
    Scenario("none", "no fault (the baseline)", _nothing),
    Scenario(
        "429 burst, Retry-After",
        "the first N requests (submits and fetches) get 429 with Retry-After",
        _add(lambda s: Fault(status=429, retry_after=s.retry_after, count=s.inputs)),
    ),
    Scenario(
        "429 burst, no Retry-After",
        "the first N requests get 429 with no Retry-After (the client backs off)",
        _add(lambda s: Fault(status=429, count=s.inputs)),
    ),
    Scenario(
        "499 queue full",
        "the first N submits get 499 (TTAPI's queue is full)",
        _add(lambda s: Fault(route=SUBMIT, status=499, count=s.inputs)),
    ),
    Scenario(
        "502 HTML page",
        "30% of requests get a gateway's 502 HTML page, before the request is handled",
        _add(lambda _: Fault(status=502, body=_HTML_PAGE, content_type="text/html", rate=0.3)),
    ),
    Scenario(
        "500 JSON, after accept",
        "30% of requests are handled (a submit creates its job) and then answer a JSON 500",
        _add(lambda _: Fault(status=500, rate=0.3, after_accept=True)),
    ),
    Scenario(
        "drop before accept",
        "30% of connections close with no reply before the request is handled",
        _add(lambda _: Fault(kind="drop", rate=0.3)),
    ),
    Scenario(
        "drop after accept",
        "30% of connections close with no reply after the request is handled "
        "(a submit's job exists; its id never reaches the client)",
        _add(lambda _: Fault(kind="drop", rate=0.3, after_accept=True)),
    ),
    Scenario(
        "truncated JSON",
        "30% of replies are cut short (200, JSON ends mid-way) after the request is handled",
        _add(lambda _: Fault(kind="malformed", rate=0.3, after_accept=True)),
    ),
    Scenario(
        "hanging submit",
        "30% of submits create their job, then hold the reply past the client's timeout",
        _add(
            lambda s: Fault(
                route=SUBMIT,
                kind="latency",
                delay=2 * s.call_timeout,
                rate=0.3,
                after_accept=True,
            )
        ),
    ),
    Scenario(
        "fetch of another job",
        "30% of fetches are answered with another job's body (its jobId is not the one asked)",
        _add(lambda _: Fault(route=FETCH, kind="swap", rate=0.3)),
    ),
    Scenario(
        "expired image URLs",
        "every image URL has expired (404) by the time it is downloaded",
        _expire,
    ),
    Scenario(
        "callbacks lost",
        "no callback is ever delivered (polling is the only way to learn the end)",
        _callbacks(lose_rate=1.0),
        hooked_only=True,
    ),
    Scenario(
        "callbacks duplicated",
        "every callback is delivered twice",
        _callbacks(duplicate_rate=1.0),
        hooked_only=True,
    ),
    Scenario(
        "callbacks early",
        "half the jobs end at once and are called back before the submit reply",
        _callbacks(early_rate=0.5),
        hooked_only=True,
    ),
    Scenario(
        "callbacks forged",
        "every job gets forged SUCCESS callbacks while it runs (a made-up token, and its "
        "own hook URL with an image of no job)",
        _callbacks(forge_rate=1.0),
        hooked_only=True,
    ),
    Scenario(
        "callbacks cross-job",
        "every job's hook URL first gets another job's callback body, then its own",
        _callbacks(cross_rate=1.0),
        hooked_only=True,
    ),
)


# --------------------------------------------------------------------------- one cell


@attrs.define
class End:
    """One reported end of an input: ``ok`` (a saved result), ``error`` or ``unknown``."""

    kind: str
    error: BaseException | None = None
    job_id: str | None = None
    image_url: str | None = None
    files: tuple[Path, ...] = ()
    #: When it was reported (``time.perf_counter()``).
    at: float = attrs.field(factory=time.perf_counter)


@attrs.define
class Cell:
    """What one fault in one mode came to; every count is from the server or the disk."""

    scenario: str
    mode: str
    inputs: int = 0
    submitted: int = 0
    resolved_once: int = 0
    lost: int = 0
    double_submitted: int = 0
    wrong: int = 0
    accepted_unknown: int = 0
    fired: int = 0
    ok: int = 0
    errors: int = 0
    unknown: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    applicable: bool = True
    notes: list[str] = attrs.Factory(list)

    @property
    def clean(self) -> bool:
        """True when nothing was lost, submitted twice or mixed up."""
        return not (self.lost or self.double_submitted or self.wrong)

    def row(self) -> str:
        """The cell as a row of the Markdown table."""
        if not self.applicable:
            return f"| {self.scenario} | {self.mode} | n/a (no hook URL in this mode) ||||||||||"
        mark = "" if self.clean else " **FAIL**"
        return (
            f"| {self.scenario}{mark} | {self.mode} | {self.fired} | {self.inputs} "
            f"| {self.submitted} | {self.resolved_once} | {self.lost} | {self.double_submitted} "
            f"| {self.wrong} | {self.accepted_unknown} | {self.ok} / {self.errors} / {self.unknown} "
            f"| {self.slowest:.1f} | {', '.join(self.notes)} |"
        )


@attrs.define
class _Run:
    """What the client side of a cell saw: each input's ends and the job ids it learned."""

    ends: dict[int, list[End]] = attrs.Factory(lambda: collections.defaultdict(list))
    learned: set[str] = attrs.Factory(set)
    notes: list[str] = attrs.Factory(list)


def _end_of(exc: BaseException, job_id: str | None = None) -> End:
    if isinstance(exc, tt.OutcomeUnknownError):
        return End("unknown", exc, job_id)
    return End("error", exc, job_id)


def _client(emu: Emulator, size: Size, webhook: tt.WebhookReceiver | None) -> tt.Client:
    return tt.Client(
        emu.api_key,
        base_url=emu.url,
        timeout=size.call_timeout,
        retry=size.retry,
        poll_policy=size.poll,
        webhook=webhook,
    )


async def _one(client: tt.Client, index: int, prompt: str, folder: Path, run: _Run) -> None:
    """Submit, wait and save one input the way an application would."""
    try:
        job = await client.gpt4o.submit(prompt=prompt)
    except tt.TTAPIError as exc:
        run.ends[index].append(_end_of(exc))
        return
    except Exception as exc:  # not a TTAPIError: an escape, reported in the notes
        run.ends[index].append(End("error", exc))
        return
    run.learned.add(job.job_id)
    try:
        result = await job.wait(timeout=None)
        saved = await client.save(result, folder, stem=f"{index:05d}", sidecar=False)
    except Exception as exc:  # a TTAPIError is expected; anything else is an escape
        run.ends[index].append(_end_of(exc, job.job_id))
        return
    run.ends[index].append(
        End("ok", job_id=job.job_id, image_url=result.image_url, files=tuple(s.path for s in saved))
    )


async def _direct(
    client: tt.Client, prompts: Sequence[str], folder: Path, run: _Run, bound: float
) -> None:
    with anyio.move_on_after(bound):
        async with anyio.create_task_group() as tg:
            for index, prompt in enumerate(prompts):
                tg.start_soon(_one, client, index, prompt, folder, run)


async def _bulk(
    client: tt.Client, prompts: Sequence[str], folder: Path, run: _Run, bound: float
) -> None:
    journal = folder / "run.sqlite"
    requests = [tt.GPT4oRequest(prompt=p) for p in prompts]
    try:
        with anyio.move_on_after(bound):
            async with client.bulk(
                requests, journal=journal, save_to=folder / "images", wait_timeout=None
            ) as outcomes:
                async for o in outcomes:
                    if o.job_id is not None:
                        run.learned.add(o.job_id)
                    if o.state is tt.ItemState.DONE:
                        url = o.result.image_url if isinstance(o.result, tt.JobResult) else None
                        end = End("ok", job_id=o.job_id, image_url=url, files=o.paths)
                    elif o.state is tt.ItemState.OUTCOME_UNKNOWN:
                        end = End("unknown", o.error, o.job_id)
                    else:  # failed, or a wait that timed out (none here: no wait timeout)
                        end = End("error", o.error, o.job_id)
                    run.ends[o.index].append(end)
    except Exception as exc:  # the run itself failed: the inputs left are lost
        run.notes.append(f"bulk raised {type(exc).__name__}")
    # The journal on disk: the job ids it recorded, and whether its rows agree.
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT idx, state, job_id FROM items").fetchall()
    states = {"done": "ok", "failed": "error", "outcome_unknown": "unknown"}
    disagree = 0
    for idx, state, job_id in rows:
        if job_id:
            run.learned.add(job_id)
        ends = run.ends.get(idx, [])
        if ends and states.get(state) != ends[-1].kind:
            disagree += 1
    if disagree:
        run.notes.append(f"journal disagrees with {disagree} outcome(s)")


@contextlib.asynccontextmanager
async def _receiver() -> collections.abc.AsyncIterator[tt.WebhookReceiver]:
    """A WebhookReceiver served on 127.0.0.1 (port bound first: the URL must be known)."""
    import socket  # noqa: PLC0415 - only here

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}{_HOOK_PATH}")
    app = web.Application()
    receiver.add_to_app(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield receiver
    finally:
        await runner.cleanup()
        sock.close()


async def run_cell(scenario: Scenario, mode: str, size: Size, seed: int, root: Path) -> Cell:
    """Run one fault in one mode on a fresh emulator and count what happened."""
    cell = Cell(scenario.name, mode, inputs=size.inputs)
    if scenario.hooked_only and mode == "polling":
        cell.applicable = False
        return cell
    folder = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=root))
    prompts = [f"{scenario.name} / {mode} / input {i}" for i in range(size.inputs)]
    run = _Run()
    started = time.perf_counter()
    async with Emulator(job_duration=size.job_duration, seed=seed, draw_prompts=False) as emu:
        scenario.setup(emu, size)
        async with contextlib.AsyncExitStack() as stack:
            webhook = None if mode == "polling" else await stack.enter_async_context(_receiver())
            client = await stack.enter_async_context(_client(emu, size, webhook))
            if mode == "bulk":
                await _bulk(client, prompts, folder, run, size.cell_timeout)
            else:
                await _direct(client, prompts, folder, run, size.cell_timeout)
        cell.seconds = time.perf_counter() - started
        _count(cell, emu, prompts, run)
        cell.slowest = max((e.at - started for es in run.ends.values() for e in es), default=0)
    return cell


def _count(cell: Cell, emu: Emulator, prompts: Sequence[str], run: _Run) -> None:
    """Fill the cell's counts from the server's ledger, its jobs and the files on disk."""
    jobs_of: dict[str, list[str]] = collections.defaultdict(list)
    for charge in emu.charges:
        if charge.path == SUBMIT and charge.job_id is not None:
            jobs_of[charge.prompt].append(charge.job_id)
    by_url = {job.image_url: job for job in emu.jobs.values() if job.image_url is not None}
    kinds: collections.Counter[str] = collections.Counter()
    for index, prompt in enumerate(prompts):
        accepted = jobs_of.get(prompt, [])
        cell.submitted += len(accepted)
        cell.double_submitted += len(accepted) > 1
        cell.accepted_unknown += sum(job_id not in run.learned for job_id in accepted)
        ends = run.ends.get(index, [])
        if not ends:
            cell.lost += 1
            continue
        cell.resolved_once += len(ends) == 1
        cell.wrong += any(e.kind == "ok" and not _right_image(e, prompt, emu, by_url) for e in ends)
        end = ends[0]
        if end.kind == "ok":
            cell.ok += 1
        elif end.kind == "unknown":
            cell.unknown += 1
        else:
            cell.errors += 1
        if end.error is not None:
            name = type(end.error).__name__
            kinds[name if isinstance(end.error, tt.TTAPIError) else f"ESCAPED {name}"] += 1
    cell.notes = [f"{n} x{c}" for n, c in kinds.most_common()] + run.notes
    c = emu.counters
    cell.fired = (
        sum(f.fired for f in emu.faults if f.kind != "swap")
        + c.fetches_swapped
        + c.files_expired
        + c.callbacks_lost
        + c.callbacks_duplicated
        + c.callbacks_early
        + c.callbacks_forged
        + c.callbacks_crossed
    )


def _right_image(end: End, prompt: str, emu: Emulator, by_url: dict[str, EmulatedJob]) -> bool:
    """True when every image handed over belongs to a job the server ran for ``prompt``."""
    job = by_url.get(end.image_url or "")
    if job is None or job.prompt != prompt:
        return False
    if not end.files:
        return False
    for path in end.files:
        owner = emu.jobs.get(job_of_image(path.read_bytes()) or "")
        if owner is None or owner.prompt != prompt:
            return False
    return True


# --------------------------------------------------------------------------- the matrix


async def run_matrix(
    size: Size,
    *,
    seed: int = 1,
    only: Sequence[str] = (),
    modes: Sequence[str] = MODES,
    progress: Callable[[Cell], object] | None = None,
) -> list[Cell]:
    """Run every cell (``only``: these scenarios) and return them in table order."""
    scenarios = [s for s in SCENARIOS if not only or s.name in only]
    cells: dict[tuple[str, str], Cell] = {}
    limiter = anyio.CapacityLimiter(size.parallel)
    with tempfile.TemporaryDirectory(prefix="ttapi-faults-") as tmp:

        async def one(scenario: Scenario, mode: str, cell_seed: int) -> None:
            async with limiter:
                cell = await run_cell(scenario, mode, size, cell_seed, Path(tmp))
            cells[scenario.name, mode] = cell
            if progress is not None:
                progress(cell)

        async with anyio.create_task_group() as tg:
            for i, scenario in enumerate(scenarios):
                for j, mode in enumerate(modes):
                    tg.start_soon(one, scenario, mode, seed * 1000 + 10 * i + j)
    return [cells[s.name, m] for s in scenarios for m in modes]


def markdown(cells: Sequence[Cell], size: Size, seed: int) -> str:
    """The matrix as a Markdown document: how it was made, the table, the legend."""
    lines = [
        "# Fault matrix",
        "",
        f"Generated by `python benchmarks/faults.py{' --small' if size is SMALL else ''}` "
        f"(ttapi-async {tt.__version__}, seed {seed}): {size.inputs} inputs per cell, 4o jobs "
        f"of {size.job_duration[0]:g}-{size.job_duration[1]:g} s, client call timeout "
        f"{size.call_timeout:g} s, webhook backstop poll every "
        f"{size.poll.backstop_interval:g} s, cell bound {size.cell_timeout:g} s. Do not edit "
        "by hand: run `nox -s faults`.",
        "",
        "Counts come from the emulator's ledger and job records and from the files on disk "
        "(saved images name their job; the bulk journal is read with sqlite3), never from "
        "the SDK's counters. Goal: 0 in *lost*, *double-submitted* and *wrong result* in "
        "every cell. *accepted, id unknown* is reported, not retried. *fired*: how many "
        "requests, callbacks or downloads the fault hit (the emulator's count). *last end*: "
        "seconds from the cell's start to its last reported end (timings are indicative: "
        "cells run side by side).",
        "",
        "| fault | mode | fired | inputs | submitted | resolved once | lost | double-submitted "
        "| wrong result | accepted, id unknown | ok / error / unknown | last end (s) "
        "| errors seen |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|",
    ]
    lines += [c.row() for c in cells]
    lines += ["", "## The faults", ""]
    lines += [f"- **{s.name}**: {s.what}." for s in SCENARIOS]
    lines += [
        "",
        "## The modes",
        "",
        "- **polling**: `client.gpt4o.submit`, then `job.wait(timeout=None)`, then "
        "`client.save`; the waiter polls.",
        "- **webhook**: the same with `Client(webhook=WebhookReceiver(...))` served on "
        "127.0.0.1; each callback is confirmed by a fetch, polling is the backstop.",
        "- **bulk**: `client.bulk(requests, journal=..., save_to=...)` with the same receiver.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix, print the table (and write it with ``--out``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    p.add_argument("--small", action="store_true", help="the CI size (8 inputs, fast jobs)")
    p.add_argument("--inputs", type=int, default=None, help="inputs per cell")
    p.add_argument("--cell-timeout", type=float, default=None, help="seconds one cell may take")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", default=(), metavar="FAULT", help="these rows only")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    p.add_argument("--check", action="store_true", help="exit 1 unless every cell is clean")
    args = p.parse_args(argv)
    # The SDK warns about every unknown outcome and refused callback; here those are the
    # point, and the table counts them.
    logging.basicConfig(level=logging.ERROR)
    size = SMALL if args.small else FULL
    if args.inputs is not None:
        size = attrs.evolve(size, inputs=args.inputs)
    if args.cell_timeout is not None:
        size = attrs.evolve(size, cell_timeout=args.cell_timeout)

    def progress(cell: Cell) -> None:
        state = "n/a" if not cell.applicable else ("ok" if cell.clean else "FAIL")
        print(f"  {cell.scenario} / {cell.mode}: {state}", file=sys.stderr, flush=True)

    run: Callable[[], Awaitable[list[Cell]]] = lambda: run_matrix(  # noqa: E731
        size, seed=args.seed, only=args.only, progress=progress
    )
    cells = anyio.run(run)
    text = markdown(cells, size, args.seed)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0 if not args.check or all(c.clean for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
