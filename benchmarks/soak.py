"""Soak: 10,000 4o-image jobs through ``client.bulk`` against a faulty emulator, about 10 minutes.

Run: ``python benchmarks/soak.py`` (full: 10,000 jobs, about 10 minutes) or
``python benchmarks/soak.py --quick`` (500 jobs, about 1 minute). Options: ``--jobs``,
``--minutes`` (the emulator's job durations are chosen so the run takes about this long),
``--concurrency`` (``max_jobs``), ``--fault-rate`` (share of API requests given a fault),
``--webhook`` (jobs end by callback through a ``WebhookReceiver`` on 127.0.0.1, with lost
and duplicated callbacks), ``--seed``, ``--keep`` (keep the temp folder), ``--trace``
(tracemalloc: which allocation sites grew after warm-up; slower). Writes a Markdown report
to stdout and to ``benchmarks/results/soak.md`` (``--out``).

What runs:

* The emulator (``ttapi_async.testing.Emulator``) in **its own process** (``--serve``),
  reached on 127.0.0.1 only; its counters and job records are read over a stdin/stdout
  control line, as in ``bench_bulk.py``. About ``--fault-rate`` (5%) of API requests, submits
  and fetches alike, get a fault from the emulator's ``Fault`` knob (weights in
  :data:`SUBMIT_FAULTS` / :data:`FETCH_FAULTS`): 429 with and without ``Retry-After``, 499,
  5xx with JSON and HTML bodies, connections dropped before and after the job was accepted,
  truncated JSON (also after acceptance), and a fetch answered with another job's id.
  Independently, a fifth as many requests are delayed 1.5 s. A few jobs end FAILED
  (``job_fail_rate``). With ``--webhook``, ``CallbackFaults`` loses and duplicates callbacks.
  Expired image URLs are not injected: the emulator's ``url_ttl`` is one value for every
  file, not a per-request fault.
* The client, in this process: one ``client.bulk`` over a generator of ``--jobs`` prompts,
  with a journal and ``save_to`` in a temp folder (each image downloaded, checked, saved with
  its JSON sidecar). The run is bounded: in count (``--jobs``) and in time (``outcomes.stop()``
  at twice the target plus a minute, cancelled two minutes later).
* A sampler task in the client's loop records, every few seconds: resident memory
  (``psutil``), ``len(asyncio.all_tasks())``, open file descriptors (``num_fds``), items
  ended, jobs running, and the state the SDK keeps on purpose: the outcomes the waiter
  remembers for late waiters (``result_ttl``) and, with ``--webhook``, the receiver's tokens.
  This script's per-item bookkeeping is preallocated (bytearrays), so it does not grow.

What is checked at the end (nothing from the SDK's own counters):

* Outcomes: every input ended exactly once (a result, an error or ``outcome_unknown``).
* The emulator's records: ``counters.submits_by_prompt`` (a prompt accepted twice is a
  double submit), and each done item's job id names a SUCCESS job of the same prompt; every
  job the server accepted is accounted for (its item is done/failed with that job id, or
  ``outcome_unknown``, the "accepted but unknown" column).
* The files on disk: each done item has exactly one image, whose sidecar names the item's
  index, prompt and job id, and whose SHA-256 and size match the sidecar; no image without
  a sidecar, no stray image, no ``.part-*`` leftover.
* The journal (read with ``sqlite3``, read-only): one row per input, in the state its
  outcome reported, listing the files on disk.
* Memory: RSS after warm-up (the first 10% of items ended) vs at the end, and the least
  squares slope in MB per 1,000 items over the samples after warm-up; tasks and file
  descriptors before, during and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import gc
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from bench_bulk import KEY, EmulatorProcess, free_port


HERE = Path(__file__).resolve().parent
SUBMIT = "/openai/4o-image/generations"
FETCH = "/openai/4o-image/fetch"
HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)
#: The job id of the forged fetch reply (a fetch answered with another job's id).
FORGED_JOB = "00000000-0000-4000-8000-00000000f0e1"
#: Share of the inputs that must have ended before memory counts as warmed up.
WARMUP = 0.10
#: "Flat" thresholds of the verdict: RSS slope after warm-up, and total RSS growth.
SLOPE_LIMIT_MB = 0.5
GROWTH_LIMIT_MB = 8.0
#: Share of the emulator's jobs that end FAILED (``job_fail_rate``), as a share of the
#: fault rate.
FAIL_SHARE = 0.1
#: Latency faults, independent of the reply faults, as a share of the fault rate.
LATENCY_SHARE = 0.2
LATENCY = 1.5

# (label, Fault keyword arguments, weight): each fault's share of the faulted requests.
SUBMIT_FAULTS: list[tuple[str, dict[str, Any], float]] = [
    ("429 with Retry-After: 0.5", {"status": 429, "retry_after": 0.5}, 0.20),
    ("429 without Retry-After", {"status": 429}, 0.20),
    ("499 queue full", {"status": 499}, 0.05),
    ("502 with an HTML body, before accepting", {"status": 502, "body": HTML_502}, 0.10),
    ("503 after accepting (job created)", {"status": 503, "after_accept": True}, 0.10),
    ("connection dropped before accepting", {"kind": "drop"}, 0.10),
    ("connection dropped after accepting", {"kind": "drop", "after_accept": True}, 0.10),
    ("truncated JSON, before accepting", {"kind": "malformed"}, 0.05),
    ("truncated JSON after accepting", {"kind": "malformed", "after_accept": True}, 0.10),
]
FETCH_FAULTS: list[tuple[str, dict[str, Any], float]] = [
    ("429 with Retry-After: 0.5", {"status": 429, "retry_after": 0.5}, 0.15),
    ("429 without Retry-After", {"status": 429}, 0.15),
    ("500 with a JSON body", {"status": 500}, 0.15),
    ("502 with an HTML body", {"status": 502, "body": HTML_502}, 0.10),
    ("connection dropped", {"kind": "drop"}, 0.15),
    ("truncated JSON", {"kind": "malformed"}, 0.15),
    ("200 naming another job (forged SUCCESS)", {"kind": "malformed"}, 0.15),
]
#: Journal counts of inputs with no outcome that the run never reached (not lost when the
#: time bound stopped the run: they stay pending for a resumed run).
NOT_REACHED_PENDING = "no outcome, row still pending (not reached)"
NOT_REACHED_NO_ROW = "no outcome, no row (not reached)"
STATE_CODES = {"done": 1, "failed": 2, "outcome_unknown": 3, "submitted": 4}
STATE_NAMES = {v: k for k, v in STATE_CODES.items()} | {0: "(no outcome)", 5: "other"}


def prompt(i: int) -> str:
    return f"soak {i:05d}: a lighthouse at dusk, oil on canvas"


def index_of(text: str) -> int | None:
    """The input index a prompt of this script names, or None for anything else."""
    if not text.startswith("soak ") or text[10:11] != ":" or not text[5:10].isdigit():
        return None
    return int(text[5:10])


def plan_durations(jobs: int, slots: int, minutes: float) -> tuple[float, float]:
    """Uniform job durations (low, high) so ``jobs`` jobs in ``slots`` take about ``minutes``.

    A greedy schedule takes about ``jobs / slots`` mean durations plus one for the tail;
    each job also holds its slot for the detection delay and the fault retries, hence 0.85.
    """
    mean = minutes * 60.0 / (jobs / slots + 1.0) * 0.85
    return round(mean * 0.5, 3), round(mean * 1.5, 3)


def conditional_rates(rate: float, plan: list[tuple[str, dict[str, Any], float]]) -> list[float]:
    """Per-fault rates so that each fires on ``rate * weight`` of the requests.

    The emulator tries a route's reply faults in order and stops at the first that fires,
    so fault k only sees the requests the earlier ones left alone.
    """
    out, taken = [], 0.0
    for _, _, weight in plan:
        share = rate * weight
        out.append(min(1.0, share / (1.0 - taken)) if taken < 1.0 else 0.0)
        taken += share
    return out


# ----------------------------------------------------------------------------- emulator host


async def serve(args: argparse.Namespace) -> None:
    """Host the faulty emulator in this (separate) process; answer control lines on stdin."""
    import anyio  # noqa: PLC0415

    from ttapi_async.testing import CallbackFaults, Emulator, Fault  # noqa: PLC0415

    rate = args.fault_rate
    callbacks = CallbackFaults(lose_rate=rate / 2, duplicate_rate=rate / 2)
    async with Emulator(
        KEY,
        job_duration=(args.min, args.max),
        job_fail_rate=rate * FAIL_SHARE,
        callbacks=callbacks,
        seed=args.seed,
        draw_prompts=False,  # thousands of distinct prompts: no picture drawn per job
    ) as emu:
        forged = {
            "status": "SUCCESS",
            "message": "success",
            "jobId": FORGED_JOB,
            "data": {
                "prompt": "someone else's job",
                "referImages": [],
                "imageUrl": emu.file_url("forged.png"),
                "quota": "2",
                "finishTime": "2026-01-01 00:00:00",
                "hookUrl": None,
            },
        }
        faults: list[tuple[str, str, Any]] = []
        for route, plan in ((SUBMIT, SUBMIT_FAULTS), (FETCH, FETCH_FAULTS)):
            for (label, knobs, _), r in zip(plan, conditional_rates(rate, plan), strict=True):
                kw = dict(knobs)
                if label.startswith("200 naming another job"):
                    kw["body"] = json.dumps(forged).encode()
                faults.append((route, label, emu.add_fault(Fault(route=route, rate=r, **kw))))
            label = f"{LATENCY:g} s latency (independent of the above)"
            fault = Fault(route=route, kind="latency", delay=LATENCY, rate=rate * LATENCY_SHARE)
            faults.append((route, label, emu.add_fault(fault)))
        print(f"TTAPI emulator on {emu.url} (api key: {KEY})", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:  # stdin closed: stop
                return
            reply: dict[str, Any] = {
                "cpu": time.process_time(),
                "counters": emu.counters.snapshot(),
                "faults": [[route, label, f.fired] for route, label, f in faults],
            }
            if line.strip() == "final":
                reply["jobs"] = {j.job_id: [j.prompt, j.status] for j in emu.jobs.values()}
            print(json.dumps(reply), flush=True)


class SoakEmulator(EmulatorProcess):
    """The faulty emulator host, ``python soak.py --serve``, in its own process."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--serve", "--min", str(args.min), "--max", str(args.max)]
        cmd += ["--seed", str(args.seed), "--fault-rate", str(args.fault_rate)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = next(w for w in line.split() if w.startswith("http://")).rstrip("/")

    def final(self) -> dict[str, Any]:
        """Counters plus every job the emulator made (id -> prompt, status)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("final\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return reply


# ----------------------------------------------------------------------------- the client


class LogCounter(logging.Handler):
    """Counts the SDK's log records by level and message template (keeps no records)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname, str(record.msg)[:120]] += 1


class Books:
    """What the run reported per input, in preallocated arrays (no growth while it runs)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ended = bytearray(n)  # outcomes per input (saturates at 255)
        self.state = bytearray(n)  # STATE_CODES
        self.job_ids = bytearray(16 * n)  # uuid bytes; zero when unknown
        self.odd_ids: dict[int, str] = {}  # job ids that are not UUIDs (none expected)
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples_of: dict[str, list[str]] = {}  # a few messages per error type
        self.sources: collections.Counter[str] = collections.Counter()
        self.bad_paths = 0  # done outcomes whose paths are missing or not the item's
        self.done_without_paths = 0
        self.outcomes = 0
        self.out_of_range = 0

    def record(self, o: Any) -> None:
        self.outcomes += 1
        i = o.index
        if not 0 <= i < self.n:
            self.out_of_range += 1
            return
        self.ended[i] = min(255, self.ended[i] + 1)
        self.state[i] = STATE_CODES.get(o.state.value, 5)
        if o.job_id is not None:
            try:
                self.job_ids[16 * i : 16 * i + 16] = uuid.UUID(o.job_id).bytes
            except ValueError:
                self.odd_ids[i] = o.job_id
        if o.error is not None:
            name = type(o.error).__name__
            self.errors[name] += 1
            seen = self.samples_of.setdefault(name, [])
            text = str(o.error)[:160]
            if len(seen) < 3 and text not in seen:
                seen.append(text)
        source = getattr(o.result, "source", None)
        if source is not None:
            self.sources[source] += 1
        if o.state.value == "done":
            if not o.paths:
                self.done_without_paths += 1
            for p in o.paths:
                if not p.name.startswith(f"{i:05d}-") or not p.is_file():
                    self.bad_paths += 1

    def job_id(self, i: int) -> str | None:
        raw = bytes(self.job_ids[16 * i : 16 * i + 16])
        if raw == bytes(16):
            return self.odd_ids.get(i)
        return str(uuid.UUID(bytes=raw))


def probe(
    proc: Any, done: int, running: int, t0: float, client: Any, receiver: Any
) -> dict[str, Any]:
    """One sample; ``remembered`` and ``tokens`` are the SDK's by-design retained state."""
    return {
        "t": time.monotonic() - t0,
        "done": done,
        "running": running,
        "rss": proc.memory_info().rss,
        "tasks": len(asyncio.all_tasks()),
        "fds": proc.num_fds(),
        # Outcomes the waiter keeps for late waiters (result_ttl), and the receiver's tokens.
        "remembered": None
        if client is None
        else len(client.waiter._unclaimed) + len(client.waiter._taken),
        "tokens": None if receiver is None else len(receiver._hooks),
    }


async def soak(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    """Run the bulk, sampling as it goes; return the books and the samples."""
    import anyio  # noqa: PLC0415
    import psutil  # noqa: PLC0415

    import ttapi_async as tt  # noqa: PLC0415

    proc = psutil.Process()
    books = Books(args.jobs)
    samples: list[dict[str, Any]] = []
    marks: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    soft = 2 * args.minutes * 60 + 60
    hard = soft + 120
    receiver: Any = None
    counter = LogCounter()
    # The SDK's records and stamina's (its retry loop) are counted, not printed: with 5%
    # faults thousands of retries are expected.
    loggers = [logging.getLogger("ttapi_async"), logging.getLogger("stamina")]
    for logger in loggers:
        logger.addHandler(counter)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def requests() -> Any:
        for i in range(args.jobs):
            yield tt.GPT4oRequest(prompt=prompt(i))

    warm_at = max(1, int(args.jobs * WARMUP))
    traced: dict[str, Any] = {}
    if args.trace:
        tracemalloc.start(8)
    status: dict[str, Any] = {"stopped_by_time": False, "cancelled_by_time": False, "error": None}
    marks["before"] = probe(proc, 0, 0, t0, None, None)
    async with contextlib.AsyncExitStack() as stack:
        if args.webhook:
            port = free_port()
            receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
            tg = await stack.enter_async_context(anyio.create_task_group())
            await tg.start(receiver.serve, "127.0.0.1", port)
            stack.callback(tg.cancel_scope.cancel)
        client = await stack.enter_async_context(tt.Client(KEY, base_url=url, webhook=receiver))
        marks["opened"] = probe(proc, 0, 0, t0, client, receiver)
        run = client.bulk(
            requests(),
            max_jobs=args.concurrency,
            save_to=tmp / "out",
            journal=tmp / "run.db",
        )
        finished = anyio.Event()

        async def sampler() -> None:
            while not finished.is_set():
                p = run.progress
                samples.append(probe(proc, books.outcomes, p.running, t0, client, receiver))
                with anyio.move_on_after(args.sample):
                    await finished.wait()

        run_t0 = time.monotonic()
        async with anyio.create_task_group() as sampling:
            sampling.start_soon(sampler)
            with anyio.move_on_after(hard) as scope:
                try:
                    async with run as outcomes:
                        async for o in outcomes:
                            books.record(o)
                            if args.trace and books.outcomes == warm_at:
                                traced["warm"] = take_snapshot()
                            if not status["stopped_by_time"] and time.monotonic() - run_t0 > soft:
                                status["stopped_by_time"] = True
                                outcomes.stop()
                except tt.TTAPIError as exc:  # e.g. BulkPausedError: reported, not raised
                    status["error"] = f"{type(exc).__name__}: {exc}"
            status["cancelled_by_time"] = scope.cancelled_caught
            status["wall"] = time.monotonic() - run_t0
            finished.set()
        marks["end"] = probe(proc, books.outcomes, 0, t0, client, receiver)
        if args.trace:
            traced["end"] = take_snapshot()
            tracemalloc.stop()
        status["progress"] = str(run.progress)
        status["client_stats"] = {
            "retries": client.stats.retries,
            "outcome_unknown": client.stats.outcome_unknown,
        }
        status["waiter"] = client.waiter.stats.snapshot()
        if receiver is not None:
            status["receiver"] = {"accepted": receiver.accepted, "refused": receiver.refused}
    # Closed transports finish on the next loop iterations; give them a moment before counting.
    await asyncio.sleep(0.25)
    marks["closed"] = probe(proc, books.outcomes, 0, t0, None, None)
    for logger in loggers:
        logger.removeHandler(counter)
    return {
        "books": books,
        "samples": samples,
        "marks": marks,
        "status": status,
        "logs": counter.counts,
        "growth": traced_growth(traced),
    }


def take_snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    )


def traced_growth(traced: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Top allocation sites that grew from warm-up to the end: (site, bytes, blocks)."""
    if "warm" not in traced or "end" not in traced:
        return []
    stats = traced["end"].compare_to(traced["warm"], "traceback")
    out = []
    for stat in stats[:15]:
        if stat.size_diff <= 0:
            continue
        frames = [f for f in stat.traceback if "site-packages" not in f.filename] or list(
            stat.traceback
        )
        site = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[-3:][::-1])
        out.append((site, stat.size_diff, stat.count_diff))
    return out


# ----------------------------------------------------------------------------- the checks


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_disk(books: Books, folder: Path) -> dict[str, Any]:
    """The files on disk against the outcomes: one checked image per done item, nothing else."""
    c: collections.Counter[str] = collections.Counter()
    images_of: dict[int, list[str]] = collections.defaultdict(list)
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    present = set(names)
    described: set[str] = set()
    for name in names:
        if name.startswith(".part"):
            c["part files left"] += 1
            continue
        if not name.endswith(".json"):
            continue
        c["sidecars"] += 1
        try:
            doc = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            c["sidecar unreadable"] += 1
            continue
        image = str(doc.get("file"))
        described.add(image)
        if image not in present:
            c["sidecar without its image"] += 1
            continue
        i = doc.get("index")
        if not isinstance(i, int) or not 0 <= i < books.n:
            c["sidecar with no valid index"] += 1
            continue
        images_of[i].append(image)
        path = folder / image
        if sha256_of(path) != doc.get("sha256"):
            c["sha256 mismatch"] += 1
        if path.stat().st_size != doc.get("bytes"):
            c["size mismatch"] += 1
        if doc.get("prompt") != prompt(i):
            c["sidecar prompt is not the item's"] += 1
        if doc.get("job_id") != books.job_id(i):
            c["sidecar job id is not the outcome's"] += 1
    c["images"] = sum(1 for n in names if not n.endswith(".json") and not n.startswith(".part"))
    c["images without a sidecar"] = sum(
        1
        for n in names
        if not n.endswith(".json") and not n.startswith(".part") and n not in described
    )
    for i in range(books.n):
        have = len(images_of.get(i, ()))
        if books.state[i] == STATE_CODES["done"]:
            if have == 0:
                c["done item without an image"] += 1
            elif have > 1:
                c["done item with more than one image"] += 1
        elif have:
            c["image of an item not done"] += 1
    return {"counts": c, "images_of": images_of}


def check_journal(
    books: Books, path: Path, folder: Path, images_of: dict[int, list[str]]
) -> dict[str, int]:
    """The journal's rows against the outcomes and the files on disk."""
    c: collections.Counter[str] = collections.Counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT idx, state, job_id, files FROM items").fetchall()
    finally:
        conn.close()
    c["rows"] = len(rows)
    seen = set()
    for idx, state, job_id, files in rows:
        seen.add(idx)
        if not 0 <= idx < books.n:
            c["row of no input"] += 1
            continue
        c[f"state {state}"] += 1
        if state == "pending" and not books.ended[idx]:
            c[NOT_REACHED_PENDING] += 1  # fine only when the time bound stopped the run
            continue
        if STATE_CODES.get(state, 5) != books.state[idx]:
            c["state differs from the outcome"] += 1
        known = books.job_id(idx)
        if job_id is not None and known is not None and job_id != known:
            c["job id differs from the outcome's"] += 1
        if state == "done":
            listed = sorted(Path(f).name for f in json.loads(files))
            if listed != sorted(images_of.get(idx, [])):
                c["done row whose files differ from the disk"] += 1
            for f in json.loads(files):
                if Path(f).parent != folder or not Path(f).is_file():
                    c["done row naming a missing file"] += 1
    c[NOT_REACHED_NO_ROW] = sum(1 for i in range(books.n) if i not in seen and not books.ended[i])
    c["outcome but no row"] = sum(1 for i in range(books.n) if i not in seen and books.ended[i])
    return dict(c)


def check_server(books: Books, final: dict[str, Any]) -> dict[str, Any]:
    """The emulator's own records against the outcomes."""
    c: collections.Counter[str] = collections.Counter()
    by_prompt = final["counters"]["submits_by_prompt"]
    jobs: dict[str, list[str]] = final["jobs"]
    jobs_of: dict[int, list[str]] = collections.defaultdict(list)
    for made_id, (text, _) in jobs.items():
        i = index_of(text)
        if i is None or not 0 <= i < books.n:
            c["jobs of no input"] += 1
        else:
            jobs_of[i].append(made_id)
    for text, count in by_prompt.items():
        if index_of(text) is None:
            c["accepted prompts of no input"] += count
    for i in range(books.n):
        accepted = by_prompt.get(prompt(i), 0)
        state = STATE_NAMES.get(books.state[i], "other")
        job_id = books.job_id(i)
        c["accepted"] += accepted
        if accepted > 1:
            c["double-submitted inputs"] += 1
        if state == "done":
            job = jobs.get(job_id or "")
            if job is None:
                c["done with a job id the server never made (wrong result)"] += 1
            elif job[0] != prompt(i):
                c["done with another input's job (wrong result)"] += 1
            elif job[1] != "SUCCESS":
                c["done though the server's job is not SUCCESS (wrong result)"] += 1
        elif state == "failed":
            job = jobs.get(job_id or "")
            if job is not None and job[1] == "FAILED" and job[0] == prompt(i):
                c["failed: the job ended FAILED on the server"] += 1
            elif job is not None and job[1] == "SUCCESS":
                c["failed though the server's job succeeded"] += 1
            elif accepted:
                c["failed after the server accepted it (no matching job id)"] += 1
            else:
                c["failed, never accepted by the server"] += 1
        elif state == "outcome_unknown":
            if accepted:
                c["outcome_unknown, accepted by the server (accepted but unknown)"] += 1
            else:
                c["outcome_unknown, not accepted by the server"] += 1
        # Every job the server made for this input must be the one the client reported,
        # unless the client said it cannot know (outcome_unknown).
        if state != "outcome_unknown":
            for made in jobs_of.get(i, ()):
                if made != job_id:
                    c["server jobs the client lost track of"] += 1
    return dict(c)


# ----------------------------------------------------------------------------- the report


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least squares slope of y over x, or None with fewer than 3 points or no spread."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def report(args: argparse.Namespace, out: dict[str, Any], argv: list[str]) -> str:
    import aiohttp  # noqa: PLC0415

    books: Books = out["books"]
    samples: list[dict[str, Any]] = out["samples"]
    marks = out["marks"]
    status = out["status"]
    disk, journal, server = out["disk"], out["journal"], out["server"]
    final, first = out["final"], out["first"]
    n = books.n
    wall = status["wall"]
    ended = sum(1 for i in range(n) if books.ended[i])
    stopped = bool(status["stopped_by_time"] or status["cancelled_by_time"] or status["error"])
    not_reached_keys = {NOT_REACHED_PENDING, NOT_REACHED_NO_ROW}
    # Inputs the run never reached are not lost when it was stopped (they stay pending for a
    # resumed run); when it ended by itself, every input without an outcome is lost.
    unreached = sum(journal.get(k, 0) for k in not_reached_keys) if stopped else 0
    lost = n - ended - unreached
    twice = sum(1 for i in range(n) if books.ended[i] > 1)
    states = collections.Counter(STATE_NAMES.get(s, "other") for s in books.state)
    mode = "webhook (WebhookReceiver on 127.0.0.1, polling backstop)" if args.webhook else "polling"

    warm_at = max(1, int(n * WARMUP))
    after = [s for s in samples if s["done"] >= warm_at]
    warm = after[0] if after else None
    end = marks["end"]
    points = [(s["done"] / 1000, s["rss"] / 1e6) for s in after] + [
        (end["done"] / 1000, end["rss"] / 1e6)
    ]
    rss_slope = slope(points)
    growth = (end["rss"] - warm["rss"]) if warm else None
    during = after or samples
    tasks = [s["tasks"] for s in during]
    fds = [s["fds"] for s in during]

    def verdict(ok: bool) -> str:
        return "**yes**" if ok else "**NO**"

    c0, c1 = first["counters"], final["counters"]
    bad_disk = {k: v for k, v in disk.items() if k not in {"images", "sidecars"} and v}
    bad_journal = {
        k: v
        for k, v in journal.items()
        if k != "rows"
        and not k.startswith("state ")
        and not (stopped and k in not_reached_keys)
        and v
    }
    wrong = sum(v for k, v in server.items() if "wrong result" in k)
    double = server.get("double-submitted inputs", 0)
    orphans = server.get("server jobs the client lost track of", 0)
    memory_flat = (
        rss_slope is not None
        and rss_slope <= SLOPE_LIMIT_MB
        and growth is not None
        and growth / 1e6 <= GROWTH_LIMIT_MB
    )
    tasks_back = marks["closed"]["tasks"] <= marks["before"]["tasks"]
    fds_back = marks["closed"]["fds"] <= marks["before"]["fds"]

    lines = [
        "# Soak: 4o-image jobs through `client.bulk` with mixed faults",
        "",
        f"Command: `{' '.join(['python benchmarks/soak.py', *argv])}`",
        "",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}, {os.cpu_count()} cores. Workload: {n} 4o-image prompts "
        f"(a generator), `max_jobs={args.concurrency}`, mode {mode}, journal and `save_to` in a "
        f"temp folder; emulator in its own process on 127.0.0.1, job durations uniform "
        f"{args.min:g}-{args.max:g} s (seed {args.seed}), fault rate {args.fault_rate:.1%} of API "
        f"requests. Wall {wall:.0f} s (target {args.minutes * 60:.0f} s), "
        f"{ended / wall:.1f} items/s.",
        "",
    ]
    if status["stopped_by_time"] or status["cancelled_by_time"] or status["error"]:
        lines += [
            f"**The run did not end on its own**: stopped by the time bound "
            f"{status['stopped_by_time']}, cancelled {status['cancelled_by_time']}, "
            f"error {status['error']}. {unreached} inputs were never reached (no journal row, or "
            "still pending): not counted as lost.",
            "",
        ]
    lines += [
        "## Verdict",
        "",
        f"- Every input ended exactly once: {verdict(lost == 0 and twice == 0 and not books.out_of_range)} "
        f"({ended}/{n} ended; lost (no outcome) {lost}; not reached {unreached}; ended twice {twice}; outcomes of no input "
        f"{books.out_of_range}; {books.outcomes} outcomes in all).",
        f"- Server side (emulator records): double-submitted {double}, wrong results {wrong}, "
        f"server jobs the client lost track of {orphans}: {verdict(double == 0 and wrong == 0 and orphans == 0)}.",
        f"- Disk: every done item has exactly one image whose SHA-256 and size match its sidecar, "
        f"nothing else: {verdict(not bad_disk and not books.bad_paths and not books.done_without_paths)}"
        + (
            f" ({bad_disk}, outcome paths bad {books.bad_paths}, done without paths {books.done_without_paths})"
            if bad_disk or books.bad_paths or books.done_without_paths
            else ""
        )
        + ".",
        f"- Journal agrees with the outcomes and the disk: {verdict(not bad_journal)}"
        + (f" ({bad_journal})" if bad_journal else "")
        + ".",
    ]
    if warm is not None:
        slope_text = (
            "n/a (too few samples)" if rss_slope is None else f"{rss_slope:+.3f} MB per 1,000 items"
        )
        lines.append(
            f"- Memory flat after warm-up (slope ≤ {SLOPE_LIMIT_MB} MB per 1,000 items and growth "
            f"≤ {GROWTH_LIMIT_MB:g} MB): {verdict(memory_flat)}: RSS {mb(warm['rss'])} MB at "
            f"warm-up ({warm['done']} items ended, t={warm['t']:.0f} s) → {mb(end['rss'])} MB at "
            f"the end ({end['done']} ended), {(growth or 0) / 1e6:+.1f} MB; least squares "
            f"slope {slope_text} over {len(points)} samples."
        )
        kept0, kept1 = warm["remembered"] or 0, end["remembered"] or 0
        # Per outcome only when the store grew by a meaningful amount (a flat store makes
        # the ratio noise).
        per = (
            f", {(growth or 0) / (kept1 - kept0) / 1e3:.2f} KB of RSS growth per outcome kept"
            if kept1 - kept0 >= 100
            else ""
        )
        lines.append(
            f"  - Retained by design: the waiter remembers {kept1} outcomes at the end "
            f"({kept0} at warm-up) for repeated waits (60 s after a wait took them; "
            f"`result_ttl`, 600 s, for jobs nobody waited on yet){per}"
            + (
                f"; the receiver holds {end['tokens']} tokens (each kept `grace`, 120 s, after its job ended)"
                if end["tokens"] is not None
                else ""
            )
            + ". `--trace` names the allocation sites that grew."
        )
    else:
        lines.append("- Memory: no sample after warm-up (the run was too short to judge).")
    lines += [
        f"- Tasks and file descriptors back to their baseline after the run: "
        f"{verdict(tasks_back and fds_back)}: tasks {marks['before']['tasks']} before, "
        f"{marks['opened']['tasks']} with the client open, {min(tasks)}-{max(tasks)} while running "
        f"(after warm-up), {marks['end']['tasks']} after the run, {marks['closed']['tasks']} after "
        f"closing; fds {marks['before']['fds']} before, {marks['opened']['fds']} open, "
        f"{min(fds)}-{max(fds)} while running, {marks['end']['fds']} after the run, "
        f"{marks['closed']['fds']} after closing.",
        "",
        "## Outcomes (client side)",
        "",
        "| state | items |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in sorted(states.items())),
        "",
    ]
    if books.errors:
        lines += ["| error type | items | sample messages |", "|---|---:|---|"]
        for name, count in books.errors.most_common():
            msgs = "; ".join(m.replace("|", "\\|") for m in books.samples_of.get(name, []))
            lines.append(f"| {name} | {count} | {msgs} |")
        lines.append("")
    lines += [
        f"Results by source: {dict(books.sources)}. Client: {status['client_stats']}. "
        f"Final progress: {status['progress']}.",
        "",
        "## Cross-checks (emulator records, disk, journal)",
        "",
        "| check | count |",
        "|---|---:|",
        *(f"| server: {k} | {v} |" for k, v in sorted(server.items())),
        *(f"| disk: {k} | {v} |" for k, v in sorted(disk.items())),
        *(f"| journal: {k} | {v} |" for k, v in sorted(journal.items())),
        "",
        "## Faults injected (the emulator's counts)",
        "",
        "| route | fault | weight | fired |",
        "|---|---|---:|---:|",
    ]
    weights = {(SUBMIT, label): w for label, _, w in SUBMIT_FAULTS}
    weights |= {(FETCH, label): w for label, _, w in FETCH_FAULTS}
    for (route, label, fired), (_, _, fired0) in zip(final["faults"], first["faults"], strict=True):
        w = weights.get((route, label))
        lines.append(
            f"| {route} | {label} | {'' if w is None else f'{w:.0%}'} | {fired - fired0} |"
        )
    reqs = {k: v - c0["requests"].get(k, 0) for k, v in c1["requests"].items()}
    responses = {k: v - c0["responses"].get(k, 0) for k, v in c1["responses"].items()}
    lines += [
        "",
        f"Requests by route {reqs}; responses by status {responses}; drops "
        f"{c1['drops'] - c0['drops']}; fetches {c1['fetches'] - c0['fetches']} "
        f"({(c1['fetches'] - c0['fetches']) / max(1, n):.2f} per input); images served "
        f"{c1['files_served'] - c0['files_served']}; key seen on file requests "
        f"{c1['key_seen_on_files']}; in-flight peak {c1['in_flight_peak']}.",
    ]
    if args.webhook:
        lines.append(
            f"Callbacks: sent {c1['callbacks_sent']} (failed {c1['callbacks_failed']}), lost on "
            f"purpose {c1['callbacks_lost']}; receiver {status.get('receiver')}."
        )
    lines.append(f"Waiter: {status['waiter']}.")
    logs = out["logs"]
    if logs:
        lines += [
            "",
            "Log records of `ttapi_async` and `stamina` (counted, not printed):",
            "",
            "| level | message | count |",
            "|---|---|---:|",
        ]
        for (level, msg), count in logs.most_common(12):
            cell = msg.replace("|", "\\|")
            lines.append(f"| {level} | {cell} | {count} |")
    if out["growth"]:
        lines += [
            "",
            "tracemalloc (`--trace`): allocation sites that grew from warm-up to the end "
            "(innermost frame outside site-packages first):",
            "",
            "| site | bytes | blocks |",
            "|---|---:|---:|",
            *(f"| {site} | {size:+,} | {count:+,} |" for site, size, count in out["growth"]),
        ]
    lines += [
        "",
        f"## Curve (one sample every {args.sample:g} s in the client's loop; warm-up = "
        f"{warm_at} items ended)",
        "",
        "| t (s) | ended | running | RSS MB | tasks | fds | outcomes kept |"
        + (" tokens |" if args.webhook else ""),
        "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.webhook else ""),
    ]
    shown = [marks["before"], marks["opened"]]
    step = max(1, len(samples) // 16)
    shown += [*samples[::step], marks["end"], marks["closed"]]
    for s in shown:
        kept = "" if s["remembered"] is None else s["remembered"]
        row = f"| {s['t']:.0f} | {s['done']} | {s['running']} | {mb(s['rss'])} | {s['tasks']} | {s['fds']} | {kept} |"
        if args.webhook:
            row += f" {'' if s['tokens'] is None else s['tokens']} |"
        lines.append(row)
    lines += [
        "",
        "Rows: before the client opened, with it open, one sample in "
        f"{step}, after the run (client open), after closing it. "
        + (
            "The receiver keeps each token `grace` (120 s) after its job ended, and the token of "
            "a submit whose outcome is unknown (no job id to end) for `token_ttl` (3 h): "
            "bounded, by design."
            if args.webhook
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=None, help="inputs (default 10000)")
    parser.add_argument("--minutes", type=float, default=None, help="target length (default 10)")
    parser.add_argument("--quick", action="store_true", help="500 jobs in about 1 minute")
    parser.add_argument("--concurrency", type=int, default=64, help="max_jobs")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="share of requests faulted")
    parser.add_argument("--webhook", action="store_true", help="end jobs by callback")
    parser.add_argument("--seed", type=int, default=11, help="the emulator's seed")
    parser.add_argument("--sample", type=float, default=None, help="seconds between samples")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="tracemalloc: report what grew from warm-up to the end (slower; RSS is then "
        "the traced process's, not comparable with a plain run)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.md")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--min", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max", type=float, default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args))
        return
    if args.jobs is None:
        args.jobs = 500 if args.quick else 10_000
    if not 0 < args.jobs < 100_000:
        parser.error("--jobs must be between 1 and 99999 (prompts carry a 5-digit index)")
    if args.minutes is None:
        args.minutes = 1.0 if args.quick else 10.0
    if args.sample is None:
        args.sample = max(1.0, args.minutes * 60 / 120)
    args.min, args.max = plan_durations(args.jobs, args.concurrency, args.minutes)
    emu = SoakEmulator(args)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        first = emu.stats()
        print(
            f"soak: {args.jobs} jobs, {args.concurrency} slots, durations {args.min:g}-"
            f"{args.max:g} s, {args.fault_rate:.0%} faults, in {tmp} ...",
            file=sys.stderr,
            flush=True,
        )
        out = asyncio.run(soak(args, emu.url, tmp))
        final = emu.final()
        books: Books = out["books"]
        disk = check_disk(books, tmp / "out")
        out["disk"] = dict(disk["counts"])
        out["journal"] = check_journal(books, tmp / "run.db", tmp / "out", disk["images_of"])
        out["server"] = check_server(books, final)
        out["final"], out["first"] = final, first
    finally:
        emu.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(args, out, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
