"""Bulk runs: 1,000 4o-image prompts, 64 in flight, against the emulator in its own process.

Run: ``python benchmarks/bench_bulk.py`` (full: 1,000 jobs, about 4 minutes) or
``python benchmarks/bench_bulk.py --quick`` (200 jobs, a smoke run). Options: ``--jobs``,
``--concurrency``, ``--min``/``--max`` (job durations, uniform), ``--seed``, ``--modes``,
``--queued`` (inputs of the memory check). Writes ``benchmarks/results/bulk.md``.

Modes, side by side in one invocation:

* ``plain``: a plain asyncio loop, the baseline: ``asyncio.Semaphore(C)`` + ``gather`` over
  raw ``aiohttp`` calls on one shared session (default connector, 100 connections, as the
  SDK's default ``max_connections``): ``POST /openai/4o-image/generations``, then
  ``POST /openai/4o-image/fetch`` every 0.25 s until the job is SUCCESS or FAILED.
* ``polling``: ``client.bulk(requests, max_jobs=C)`` on a default ``Client`` (the waiter
  polls with its adaptive ``PollPolicy``); journal and downloads off.
* ``webhook``: the same with ``Client(webhook=receiver)``, the ``WebhookReceiver`` serving
  on 127.0.0.1 in the benchmark process; each callback is confirmed by one fetch (the
  default). ``webhook-noconfirm``: the same with ``confirm_callbacks=False``.
* ``polling-dense`` (opt-in, ``--modes``): ``polling`` with
  ``PollPolicy(dense_interval=0.25)``, the plain loop's interval, also before anything is
  learned.
* ``journal``: ``polling`` + ``journal=<tmp>/run.db``; ``downloads``: ``polling`` + journal
  + ``save_to=<tmp dir>`` (each PNG downloaded and saved, with its JSON sidecar).
* ``memory``: 10,000 queued ``GPT4oRequest`` inputs (a list, then a generator) against an
  emulator whose jobs last 30 s: tracemalloc measures what the started run holds once
  ``C`` jobs are in flight, then the block is left early and the exit is timed.

How it measures:

* Every mode gets a **fresh emulator process** (``--serve``, the library's ``Emulator`` hosted
  by this script so that its counters and job records can be read over a stdin/stdout
  control line) with the **same seed**: the i-th job submitted gets the same duration in
  every mode. Every mode also runs in a **fresh worker process** (``--worker``), so client
  CPU (``time.process_time`` of the worker, which hosts no emulator) and peak RSS
  (``ru_maxrss`` minus the RSS before the run) belong to that mode alone.
* **Wall**: from the first submit to the last outcome (the bulk block exited; the plain
  loop's ``gather`` returned). The client or session is opened before the clock starts.
* **Ideal**: sum of the job durations the emulator drew for the run (its job records,
  ``ends_at - created_at``) / C: a perfect client keeping C jobs running with no gap. It is
  a number, not a run; the tail (the last jobs end unevenly) is not in it, so the greedy
  schedule of the same durations (C slots, each taking the next job when free) is shown too.
* **Fetches**: the emulator's own count of fetch requests (``counters.fetches``), which
  includes the webhook mode's confirmations; the client-side count (the plain loop's own
  counter, ``client.waiter.stats.polls_sent`` for the SDK) is kept as a cross-check.
* **Server CPU** is the emulator process's CPU over the worker's lifetime, to show it is
  not the bottleneck. The machine has two cores: expect a few percent of noise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
KEY = "bench-key"
SUBMIT = "/openai/4o-image/generations"
FETCH = "/openai/4o-image/fetch"
PLAIN_INTERVAL = 0.25
MODES = [
    "plain",
    "polling",
    "webhook",
    "webhook-noconfirm",
    "polling-dense",
    "journal",
    "downloads",
    "memory",
]
#: Run unless --modes says otherwise (``polling-dense`` is opt-in).
DEFAULT_MODES = [m for m in MODES if m != "polling-dense"]
#: The one knob the ``polling-dense`` row turns: poll every 0.25 s where jobs finish.
DENSE_INTERVAL = 0.25
LABELS = {
    "plain": "plain loop (Semaphore + gather, fetch every 0.25 s)",
    "polling": "ttapi-async polling",
    "webhook": "ttapi-async webhook",
    "webhook-noconfirm": "ttapi-async webhook, confirm_callbacks=False",
    "polling-dense": f"ttapi-async polling, PollPolicy(dense_interval={DENSE_INTERVAL})",
    "journal": "polling + journal",
    "downloads": "polling + journal + downloads",
}


def prompt(i: int) -> str:
    return f"bench {i:05d}: a red fox in the snow, watercolour"


def current_rss() -> int:
    resident_pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ----------------------------------------------------------------------------- emulator host


async def serve(args: argparse.Namespace) -> None:
    """Host the emulator in this (separate) process; answer ``stats`` lines on stdin."""
    import anyio  # noqa: PLC0415

    from ttapi_async.testing import Emulator  # noqa: PLC0415

    duration = args.min if args.min == args.max else (args.min, args.max)
    async with Emulator(KEY, job_duration=duration, seed=args.seed, draw_prompts=False) as emu:
        print(f"TTAPI emulator on {emu.url} (api key: {KEY})", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:  # stdin closed: stop
                return
            jobs = list(emu.jobs.values())
            reply = {
                "cpu": time.process_time(),
                "counters": emu.counters.snapshot(),
                "durations": {j.job_id: j.ends_at - j.created_at for j in jobs},
                "statuses": dict(collections.Counter(j.status for j in jobs)),
            }
            print(json.dumps(reply), flush=True)


class EmulatorProcess:
    """The emulator host started as ``python bench_bulk.py --serve`` in its own process."""

    def __init__(self, low: float, high: float, seed: int) -> None:
        cmd = [sys.executable, __file__, "--serve", "--min", str(low), "--max", str(high)]
        cmd += ["--seed", str(seed)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = next(w for w in line.split() if w.startswith("http://")).rstrip("/")

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return reply

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------- workers


async def plain_loop(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """The baseline: Semaphore + gather over raw aiohttp, fetch every 0.25 s."""
    import aiohttp  # noqa: PLC0415

    headers = {"TT-API-KEY": KEY, "Content-Type": "application/json"}
    fetches = 0
    elapsed: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, i: int) -> str:
        nonlocal fetches
        async with sem:
            start = time.perf_counter()
            body = json.dumps({"prompt": prompt(i)}).encode()
            async with session.post(url + SUBMIT, data=body, headers=headers) as resp:
                reply = json.loads(await resp.read())
                if resp.status != 200 or reply.get("status") != "SUCCESS":
                    return f"submit {resp.status}"
            job_id = reply["data"]["jobId"]
            body = json.dumps({"jobId": job_id}).encode()
            while True:
                await asyncio.sleep(PLAIN_INTERVAL)
                async with session.post(url + FETCH, data=body, headers=headers) as resp:
                    reply = json.loads(await resp.read())
                fetches += 1
                if resp.status == 200 and reply.get("status") in {"SUCCESS", "FAILED"}:
                    elapsed[job_id] = time.perf_counter() - start
                    return str(reply["status"])

    async with aiohttp.ClientSession() as session:
        rss0 = current_rss()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        results = await asyncio.gather(
            *(one(session, i) for i in range(jobs)), return_exceptions=True
        )
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    states = collections.Counter(r if isinstance(r, str) else type(r).__name__ for r in results)
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_delta": peak_rss() - rss0,
        "client_fetches": fetches,
        "ok": states.get("SUCCESS", 0),
        "states": dict(states),
        "elapsed": elapsed,
    }


async def drive_bulk(client: Any, jobs: int, concurrency: int, **bulk_args: Any) -> dict[str, Any]:
    """Run ``client.bulk`` over ``jobs`` 4o prompts; measure wall, CPU and peak RSS."""
    from ttapi_async._requests import GPT4oRequest  # noqa: PLC0415

    requests = [GPT4oRequest(prompt=prompt(i)) for i in range(jobs)]
    states: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    elapsed: dict[str, float] = {}
    gc.collect()
    rss0 = current_rss()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with client.bulk(requests, max_jobs=concurrency, **bulk_args) as outcomes:
        async for o in outcomes:
            states[o.state.value] += 1
            if o.error is not None:
                errors[type(o.error).__name__] += 1
            source = getattr(o.result, "source", None)
            if source is not None:
                sources[source] += 1
                # From just before the submit was sent to the result being known.
                elapsed[o.job_id] = o.result.elapsed
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_delta": peak_rss() - rss0,
        "client_fetches": client.waiter.stats.polls_sent,
        "ok": states.get("done", 0),
        "states": dict(states),
        "errors": dict(errors),
        "sources": dict(sources),
        "waiter": client.waiter.stats.snapshot(),
        "retries": client.stats.retries,
        "elapsed": elapsed,
    }


async def sdk_mode(mode: str, url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    import anyio  # noqa: PLC0415

    import ttapi_async as tt  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        bulk_args: dict[str, Any] = {}
        if mode in {"journal", "downloads"}:
            bulk_args["journal"] = Path(tmp) / "run.db"
        if mode == "downloads":
            bulk_args["save_to"] = Path(tmp) / "out"
        if mode.startswith("webhook"):
            port = free_port()
            receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
            async with anyio.create_task_group() as tg:
                await tg.start(receiver.serve, "127.0.0.1", port)
                async with tt.Client(
                    KEY,
                    base_url=url,
                    webhook=receiver,
                    confirm_callbacks=mode == "webhook",
                ) as client:
                    result = await drive_bulk(client, jobs, concurrency, **bulk_args)
                tg.cancel_scope.cancel()
            result["callbacks_accepted"] = receiver.accepted
            result["callbacks_refused"] = receiver.refused
        else:
            policy = (
                tt.PollPolicy(dense_interval=DENSE_INTERVAL) if mode == "polling-dense" else None
            )
            async with tt.Client(KEY, base_url=url, poll_policy=policy) as client:
                result = await drive_bulk(client, jobs, concurrency, **bulk_args)
        if mode == "downloads":
            result["files_saved"] = sum(1 for _ in (Path(tmp) / "out").glob("*.png"))
    return result


async def memory_mode(url: str, queued: int, concurrency: int) -> dict[str, Any]:
    """What a started run holds with ``queued`` inputs waiting and ``concurrency`` in flight."""
    import tracemalloc  # noqa: PLC0415

    import anyio  # noqa: PLC0415

    import ttapi_async as tt  # noqa: PLC0415
    from ttapi_async._requests import GPT4oRequest  # noqa: PLC0415

    def traced(since: tracemalloc.Snapshot) -> int:
        gc.collect()
        now = tracemalloc.take_snapshot()
        return sum(s.size_diff for s in now.compare_to(since, "filename"))

    out: dict[str, Any] = {"queued": queued}
    async with tt.Client(KEY, base_url=url) as client:
        for kind in ("list", "generator"):
            gc.collect()
            tracemalloc.start()
            start = tracemalloc.take_snapshot()
            if kind == "list":
                requests: Any = [GPT4oRequest(prompt=prompt(i)) for i in range(queued)]
            else:
                requests = (GPT4oRequest(prompt=prompt(i)) for i in range(queued))
            inputs = traced(start)
            before_run = tracemalloc.take_snapshot()
            full = anyio.Event()

            def on_progress(progress: Any, full: anyio.Event = full) -> None:
                if progress.running >= concurrency:
                    full.set()

            t0 = anyio.current_time()
            run = client.bulk(requests, max_jobs=concurrency, on_progress=on_progress)
            async with run:
                # Wait until every slot holds an accepted job, and at least 2 s.
                with anyio.move_on_after(30):
                    await full.wait()
                running = run.progress.running
                await anyio.sleep(max(0.0, 2.0 - (anyio.current_time() - t0)))
                held = traced(before_run)
                exit0 = time.perf_counter()
            exit_seconds = time.perf_counter() - exit0
            tracemalloc.stop()
            out[kind] = {
                "inputs_bytes": inputs,
                "run_bytes": held,
                "running": running,
                "submitted": run.progress.submitted,
                "exit_seconds": exit_seconds,
            }
            del requests, run
    return out


def run_worker(args: argparse.Namespace) -> None:
    mode = args.worker
    if mode == "plain":
        coro = plain_loop(args.url, args.jobs, args.concurrency)
    elif mode == "memory":
        coro = memory_mode(args.url, args.queued, args.concurrency)
    else:
        coro = sdk_mode(mode, args.url, args.jobs, args.concurrency)
    print(json.dumps(asyncio.run(coro)), flush=True)


# ----------------------------------------------------------------------------- orchestration


def greedy_makespan(durations: list[float], slots: int) -> float:
    """Makespan of ``slots`` workers each taking the next job, in order, when free."""
    import heapq  # noqa: PLC0415

    free = [0.0] * slots
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    low, high = (30.0, 30.0) if mode == "memory" else (args.min, args.max)
    emu = EmulatorProcess(low, high, args.seed)
    try:
        before = emu.stats()
        cmd = [sys.executable, __file__, "--worker", mode, "--url", emu.url]
        cmd += ["--jobs", str(args.jobs), "--concurrency", str(args.concurrency)]
        cmd += ["--queued", str(args.queued)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lifetime = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"worker {mode} failed:\n{out.stderr}")
        if out.stderr.strip():
            print(f"[{mode} stderr]\n{out.stderr.strip()}", file=sys.stderr)
        after = emu.stats()
    finally:
        emu.close()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["mode"] = mode
    if mode != "memory":
        c0, c1 = before["counters"], after["counters"]
        result["fetches"] = c1["fetches"] - c0["fetches"]
        result["submits"] = c1["requests"].get(SUBMIT, 0)
        result["responses"] = c1["responses"]
        result["callbacks_sent"] = c1["callbacks_sent"]
        result["callbacks_failed"] = c1["callbacks_failed"]
        result["files_served"] = c1["files_served"]
        durations = after["durations"]
        result["durations"] = list(durations.values())
        elapsed = result.pop("elapsed")
        result["delays"] = sorted(t - durations[j] for j, t in elapsed.items())
        result["job_statuses"] = after["statuses"]
        result["server_cpu_pct"] = 100 * (after["cpu"] - before["cpu"]) / lifetime
    return result


def delay_text(delays: list[float]) -> str:
    """Mean and p95 of the sorted result delays, in ms."""
    if not delays:
        return "-"
    mean = sum(delays) / len(delays)
    p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
    return f"{mean * 1000:.0f} / {p95 * 1000:.0f} ms"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if abs(n) >= 1e6 else f"{n / 1e3:.1f} KB"


def report(args: argparse.Namespace, runs: dict[str, dict[str, Any]], argv: list[str]) -> str:
    import aiohttp  # noqa: PLC0415

    jobs, conc = args.jobs, args.concurrency
    lines = [
        f"Command: `{' '.join(['python benchmarks/bench_bulk.py', *argv])}`",
        "",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}, {os.cpu_count()} cores. Workload: {jobs} 4o-image "
        f"prompts, {conc} in flight, job durations uniform {args.min:g}-{args.max:g} s "
        f"(emulator seed {args.seed}). A fresh emulator process and a fresh worker process per "
        "mode; same seed, so the same durations in submit order.",
        "",
    ]
    timed = [m for m in runs if m != "memory"]
    ideal = greedy = None
    if timed:
        durations = runs[timed[0]]["durations"]
        ideal = sum(durations) / conc
        greedy = greedy_makespan(durations, conc)
        same = all(
            len(runs[m]["durations"]) == len(durations)
            and abs(sum(runs[m]["durations"]) - sum(durations)) < 1e-6
            for m in timed
        )
        lines += [
            f"Ideal = sum of the {len(durations)} drawn durations ({sum(durations):.1f} s) / "
            f"{conc} = **{ideal:.2f} s**"
            + ("" if same else " (WARNING: the modes did not all see the same durations)")
            + f"; the greedy schedule of the same durations ({conc} slots, no gaps, tail "
            f"included) takes {greedy:.2f} s ({greedy / ideal:.2f}x ideal).",
            "",
            "| mode | wall | vs ideal | fetches | fetches/job | client CPU | CPU/job "
            "| peak RSS Δ | result delay mean / p95 | done | server CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| ideal (sum of durations / {conc}) | {ideal:.2f} s | 1.00x | | | | | | | | |",
        ]
        for m in timed:
            r = runs[m]
            lines.append(
                f"| {LABELS[m]} | {r['wall']:.2f} s | {r['wall'] / ideal:.2f}x | {r['fetches']} "
                f"| {r['fetches'] / jobs:.2f} | {r['cpu']:.2f} s | {r['cpu'] / jobs * 1e6:.0f} µs "
                f"| {fmt_bytes(r['rss_delta'])} | {delay_text(r['delays'])} | {r['ok']}/{jobs} "
                f"| {r['server_cpu_pct']:.0f}% |"
            )
        lines += [
            "",
            "Result delay: from just before a job's submit was sent to its result being known, "
            "minus the duration the emulator drew for that job id (detection delay plus one "
            "submit round trip). A job holds its slot for its duration plus this delay, so "
            f"wall ≈ (sum of durations + sum of delays) / {conc} + the tail.",
            "",
        ]
        if "polling" in runs and ({"journal", "downloads"} & set(runs)):
            base = runs["polling"]["cpu"] / jobs * 1e6
            lines += [
                "Cost of the journal and the downloads (CPU per job added to `polling`):",
                "",
                "| mode | CPU/job | added vs polling | wall | vs ideal |",
                "|---|---:|---:|---:|---:|",
            ]
            for m in ("polling", "journal", "downloads"):
                if m in runs:
                    r = runs[m]
                    us = r["cpu"] / jobs * 1e6
                    lines.append(
                        f"| {LABELS[m]} | {us:.0f} µs | {us - base:+.0f} µs | {r['wall']:.2f} s "
                        f"| {r['wall'] / ideal:.2f}x |"
                    )
            lines.append("")
        lines += ["Targets:", ""]
        if "webhook" in runs:
            x = runs["webhook"]["wall"] / ideal
            lines.append(
                f"- webhook wall ≤ 1.1x ideal: {x:.2f}x: **{'met' if x <= 1.1 else 'missed'}**"
            )
        if "webhook-noconfirm" in runs:
            x = runs["webhook-noconfirm"]["wall"] / ideal
            lines.append(
                f"- (webhook, confirm_callbacks=False) wall ≤ 1.1x ideal: {x:.2f}x: "
                f"**{'met' if x <= 1.1 else 'missed'}**"
            )
        for m in ("polling", "polling-dense"):
            if {m, "plain"} <= set(runs):
                p, q = runs[m], runs["plain"]
                met = p["wall"] <= q["wall"] and p["fetches"] < q["fetches"]
                lines.append(
                    f"- {m} wall ≤ plain loop wall with fewer fetches: {p['wall']:.2f} s vs "
                    f"{q['wall']:.2f} s ({p['wall'] / q['wall']:.2f}x), "
                    f"{p['fetches'] / jobs:.2f} vs {q['fetches'] / jobs:.2f} fetches/job: "
                    f"**{'met' if met else 'missed'}**"
                    + (" (not the default policy)" if m == "polling-dense" else "")
                )
        if "plain" in runs:
            base = runs["plain"]["cpu"] / jobs * 1e6
            for m in ("polling", "webhook", "webhook-noconfirm", "polling-dense"):
                if m in runs:
                    us = runs[m]["cpu"] / jobs * 1e6
                    lines.append(
                        f"- {m} CPU/job ≤ plain loop CPU/job: {us:.0f} µs vs {base:.0f} µs "
                        f"({us / base:.2f}x): **{'met' if us <= base else 'missed'}**"
                    )
        lines.append("")
        anomalies = []
        for m in timed:
            r = runs[m]
            bad = {k: v for k, v in r["responses"].items() if k != "200"}
            if r["ok"] != jobs or bad or r.get("errors"):
                anomalies.append(
                    f"{m}: {r['ok']}/{jobs} done, states {r['states']}, "
                    f"errors {r.get('errors', {})}, non-200 responses {bad}"
                )
            if r["submits"] != jobs:
                anomalies.append(f"{m}: {r['submits']} submits for {jobs} jobs")
        lines.append(
            "Anomalies: "
            + (
                "; ".join(anomalies)
                if anomalies
                else "none (every job done, every response 200, one submit per job)."
            )
        )
        lines.append("")
        details = []
        for m in timed:
            r = runs[m]
            extra = f"client-side fetch count {r['client_fetches']}"
            if r.get("sources"):
                extra += f", results by source {r['sources']}"
            if m.startswith("webhook"):
                extra += (
                    f", callbacks sent {r['callbacks_sent']} (failed {r['callbacks_failed']}), "
                    f"accepted {r['callbacks_accepted']}"
                )
            if m == "downloads":
                extra += f", images served {r['files_served']}, saved {r.get('files_saved')}"
            details.append(f"- {m}: {extra}")
        lines += ["Cross-checks:", "", *details, ""]
    if "memory" in runs:
        mem = runs["memory"]
        q = mem["queued"]
        lines += [
            f"Memory with {q} queued inputs ({conc} jobs in flight, 30 s jobs; tracemalloc, "
            "measured 2 s after the run started, relative to just before `client.bulk`):",
            "",
            "| input | inputs themselves | held by the started run | per queued input "
            "| per job in flight | jobs in flight | leaving the block early |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in ("list", "generator"):
            k = mem[kind]
            lines.append(
                f"| {kind} of {q} `GPT4oRequest` | {fmt_bytes(k['inputs_bytes'])} "
                f"({k['inputs_bytes'] / q:.0f} B each) | {fmt_bytes(k['run_bytes'])} "
                f"| {k['run_bytes'] / q:.0f} B | {fmt_bytes(k['run_bytes'] / max(1, k['running']))} "
                f"| {k['running']} "
                f"| {k['exit_seconds'] * 1000:.0f} ms |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=None, help="4o prompts (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="jobs in flight")
    parser.add_argument("--min", type=float, default=1.0, help="shortest job, seconds")
    parser.add_argument("--max", type=float, default=3.0, help="longest job, seconds")
    parser.add_argument("--seed", type=int, default=7, help="the emulator's seed")
    parser.add_argument("--queued", type=int, default=10_000, help="inputs of the memory check")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=DEFAULT_MODES)
    parser.add_argument("--quick", action="store_true", help="200 jobs: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bulk.md")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = 200 if args.quick else 1000
    if args.serve:
        asyncio.run(serve(args))
        return
    if args.worker:
        run_worker(args)
        return
    runs: dict[str, dict[str, Any]] = {}
    for mode in args.modes:
        print(f"running {mode} ...", flush=True)
        runs[mode] = measure(mode, args)
        r = runs[mode]
        if mode != "memory":
            print(
                f"  wall {r['wall']:.2f} s, {r['fetches']} fetches, CPU {r['cpu']:.2f} s, "
                f"{r['ok']}/{args.jobs} done",
                flush=True,
            )
    text = report(args, runs, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
