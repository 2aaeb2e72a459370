"""JobWaiter benchmarks: fetches per job and detection delay; memory; CPU per poll; webhooks.

Run: ``python benchmarks/bench_waiter.py polling`` (fixed 1 s vs backoff vs adaptive, side by
side), ``... memory``, ``... cpu`` (10,000 pending jobs, emulator in another process) and
``... webhook`` (callback arrival to the waiting coroutine waking, 1,000 callbacks/s).

Polling: each mode gets its own in-process emulator seeded alike, so every mode sees the
same job durations in the same order; the modes run at the same time in one event loop.
The detection delay of a job is the time its wait returned minus the moment the emulator
ended it (both on the same loop clock).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio

import ttapi_async as tt
from ttapi_async.testing import Emulator


HERE = Path(__file__).resolve().parent
MODES: dict[str, tt.PollPolicy] = {
    "fixed 1 s": tt.PollPolicy.fixed(1.0),
    "backoff x2, cap 8 s": tt.PollPolicy(
        initial_delay=1.0, growth=2.0, max_interval=8.0, jitter=0.0, adaptive=False
    ),
    "ttapi-async adaptive": tt.PollPolicy(),
    # The same waiter on the /openai/gpt route (client.gpt): its figures should match.
    "ttapi-async adaptive, /openai/gpt jobs": tt.PollPolicy(),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_mode(
    name: str,
    policy: tt.PollPolicy,
    jobs: int,
    duration: tuple[float, float],
    spread: float,
    seed: int,
) -> dict[str, Any]:
    async with (
        Emulator(job_duration=duration, seed=seed, draw_prompts=False) as emu,
        tt.Client(
            emu.api_key,
            base_url=emu.url,
            poll_policy=policy,
            max_connections=200,
            max_concurrent_polls=200,
        ) as client,
    ):
        delays: list[float] = []

        async def one(i: int) -> None:
            await anyio.sleep(spread * i / jobs)
            route = client.gpt if name.endswith("/openai/gpt jobs") else client.gpt4o
            job = await route.submit(prompt=f"job {i}")
            await job.wait(timeout=600)
            delays.append(anyio.current_time() - emu.jobs[job.job_id].ends_at)

        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(one, i)
        fetches = emu.counters.fetches
    return {
        "mode": name,
        "fetches_per_job": fetches / jobs,
        "mean_delay": statistics.fmean(delays),
        "p95_delay": pct(delays, 0.95),
        "polls": client.waiter.stats.polls_sent,
    }


async def polling(args: argparse.Namespace) -> str:
    lines = [
        f"{args.jobs} jobs per workload; arrivals spread over the given seconds; all modes run "
        "at the same time, each on its own emulator with the same seed.",
        "",
        "| workload | arrivals | mode | fetches/job | vs fixed 1 s | mean delay | p95 delay |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for low, high in ((2.0, 10.0), (20.0, 90.0)):
        for spread in args.spread:
            results = []

            async def collect(name: str, policy: tt.PollPolicy) -> None:
                results.append(
                    await run_mode(name, policy, args.jobs, (low, high), spread, args.seed)
                )

            async with anyio.create_task_group() as tg:
                for name, policy in MODES.items():
                    tg.start_soon(collect, name, policy)
            base = next(r for r in results if r["mode"] == "fixed 1 s")["fetches_per_job"]
            for r in sorted(results, key=lambda r: list(MODES).index(r["mode"])):
                line = (
                    f"| {low:.0f}-{high:.0f} s | {'all at once' if spread == 0 else f'over {spread:.0f} s'} "
                    f"| {r['mode']} | {r['fetches_per_job']:.2f} | {r['fetches_per_job'] / base:.2f}x "
                    f"| {r['mean_delay']:.2f} s | {r['p95_delay']:.2f} s |"
                )
                lines.append(line)
                print(line, flush=True)
    return "\n".join(lines)


async def memory(args: argparse.Namespace) -> str:
    """Bytes of memory per pending job: 10,000 tracked jobs, measured with tracemalloc."""
    async with (
        Emulator(draw_prompts=False) as emu,
        tt.Client(
            emu.api_key, base_url=emu.url, poll_policy=tt.PollPolicy(initial_delay=3600)
        ) as client,
    ):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        start = anyio.current_time()
        for i in range(args.pending):
            client.waiter.track(f"job-{i:06d}-{'x' * 24}", started=start)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        size = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert client.waiter.pending == args.pending
    per_job = size / args.pending
    line = f"{args.pending} pending jobs: {size / 1e6:.2f} MB traced, {per_job:.0f} bytes per pending job (id of 36 chars included)."
    print(line)
    return line


def start_emulator(duration: float) -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process (key "k", fixed job duration); returns it and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttapi_async.testing",
            "--port",
            "0",
            "--api-key",
            "k",
            "--job-duration",
            str(duration),
            str(duration),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = next(w for w in proc.stdout.readline().split() if w.startswith("http://"))
    return proc, url.rstrip("/")


async def cpu(args: argparse.Namespace) -> str:
    """The client's CPU per poll with 10,000 jobs pending, the emulator in another process."""
    proc, url = start_emulator(600.0)
    try:
        policy = tt.PollPolicy.fixed(args.interval)
        async with tt.Client(
            "k", base_url=url, poll_policy=policy, max_connections=64, max_concurrent_polls=64
        ) as client:
            jobs = []
            for batch in range(0, args.pending, 500):
                jobs += await asyncio.gather(
                    *(client.gpt4o.submit(prompt=f"j{i}") for i in range(batch, batch + 500))
                )
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(_wait_quietly, job)
                await anyio.sleep(args.interval + 1)  # let the polls settle into their rhythm
                polls0, cpu0, wall0 = (
                    client.waiter.stats.polls_sent,
                    time.process_time(),
                    time.perf_counter(),
                )
                await anyio.sleep(args.seconds)
                polls = client.waiter.stats.polls_sent - polls0
                used, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                errors = client.waiter.stats.poll_errors
                tg.cancel_scope.cancel()
    finally:
        proc.terminate()
        proc.wait(10)
    line = (
        f"{args.pending} pending jobs polled every {args.interval:.0f} s: {polls / wall:.0f} polls/s, "
        f"{used / polls * 1e6:.0f} µs of client CPU per poll ({used / wall * 100:.0f}% of a core), "
        f"{errors} poll errors."
    )
    print(line)
    return line


async def _wait_quietly(job: tt.Job) -> None:
    try:
        await job.wait(timeout=None)
    except tt.TTAPIError:
        pass


class _TimedReceiver(tt.WebhookReceiver):
    """Records when each callback arrives, for the latency benchmark."""

    arrived: dict[str, float]

    def handle(self, token: str, body: bytes) -> tuple[int, str]:
        try:
            job_id = json.loads(body)["jobId"]
        except (ValueError, KeyError, TypeError):
            job_id = None
        if job_id is not None:
            self.arrived[job_id] = time.perf_counter()
        return super().handle(token, body)


async def webhook(args: argparse.Namespace) -> str:
    """Callback arrival to wake-up latency at ``rate`` callbacks/s, confirmation off and on."""
    lines = []
    for confirm in (False, True):
        proc, url = start_emulator(1.0)
        try:
            import socket  # noqa: PLC0415

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            rec = _TimedReceiver(f"http://127.0.0.1:{port}/hook")
            rec.arrived = {}
            latencies: list[float] = []
            async with anyio.create_task_group() as outer:
                await outer.start(rec.serve, "127.0.0.1", port)
                async with tt.Client(
                    "k", base_url=url, webhook=rec, confirm_callbacks=confirm, max_connections=200
                ) as client:

                    async def one(i: int) -> None:
                        await anyio.sleep(i / args.rate)
                        job = await client.gpt4o.submit(prompt=f"w{i}")
                        await job.wait(timeout=60)
                        woke = time.perf_counter()
                        latencies.append(woke - rec.arrived[job.job_id])

                    async with anyio.create_task_group() as tg:
                        for i in range(args.callbacks):
                            tg.start_soon(one, i)
                outer.cancel_scope.cancel()
        finally:
            proc.terminate()
            proc.wait(10)
        ms = [x * 1000 for x in latencies]
        line = (
            f"confirmation {'on ' if confirm else 'off'}: {args.callbacks} callbacks at {args.rate:.0f}/s: "
            f"p50 {pct(ms, 0.5):.2f} ms, p99 {pct(ms, 0.99):.2f} ms, max {max(ms):.2f} ms"
        )
        print(line, flush=True)
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["polling", "memory", "cpu", "webhook", "all"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--spread", type=float, nargs="+", default=[0.0, 30.0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--callbacks", type=int, default=3000)
    args = parser.parse_args()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    kinds = ["polling", "memory", "cpu", "webhook"] if args.what == "all" else [args.what]
    for kind in kinds:
        text = asyncio.run(globals()[kind](args))
        (out / f"waiter-{kind}.md").write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
