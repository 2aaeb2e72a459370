"""Several workers through Redis: callbacks on random workers, and a shared bulk run.

Run: ``python benchmarks/bench_fleet.py`` (2,000 jobs at 200/s; a 1,000-job shared bulk
run), or ``--quick`` (600 jobs; 300 bulk jobs). Writes ``benchmarks/results/fleet.md``.

How it measures, so the figures mean something:

* One ``redis-server`` on a free port in a temporary folder, flushed between modes, and
  the emulator in this process (its job records give each callback's send time). Every
  worker is a fresh process (``--worker``) with its own client, receiver and
  ``RedisBroker``; all workers listen on one port (``SO_REUSEPORT``) and the emulator
  opens a new connection per callback, so the kernel hands each callback to any worker.
* **Callbacks**: the workers submit ``--jobs`` 4o jobs together at ``--rate`` per second
  (each its share), every job lasting ``--duration`` s, and each awaits its own jobs.
  Latency is from the emulator posting a job's callback to the awaiting coroutine waking
  (``time.monotonic()``, one clock for every process of the machine), p50 and p99.
  ``confirm_callbacks=False`` runs beside the default, so the confirming fetch's share
  shows. 1 process and N processes run in the same invocation, one after the other.
* **Shared bulk run**: ``--bulk-jobs`` 4o jobs (durations uniform 1-3 s, same seed in
  every mode) run by ``client.bulk(max_jobs=64, journal=RedisJournal(...))`` in webhook
  mode, by 1 process and by 3 sharing the run. Ideal = sum of the job durations / all the
  job slots (64 per process).
* Redis round trips: the commands Redis counted (``INFO commandstats``) per job.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import ttapi_async as tt
from ttapi_async.testing import Emulator


HERE = Path(__file__).resolve().parent
HOOK_PATH = "/hook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def greedy(durations: list[float], slots: int) -> float:
    """The makespan of running ``durations`` in order on ``slots`` slots, none idle: the
    best any in-order runner can do (it includes the tail of the last jobs)."""
    free = [0.0] * slots
    heapq.heapify(free)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        end = max(end, start + duration)
        heapq.heappush(free, start + duration)
    return end


def _created(job: Any) -> float:
    return float(job.created_at)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------------------- workers


async def serve_receiver(receiver: tt.WebhookReceiver, port: int) -> Any:
    """The receiver on a port several processes share (the kernel picks the worker)."""
    from aiohttp import web  # noqa: PLC0415

    app = web.Application()
    receiver.add_to_app(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
    return runner


async def callbacks_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Submit and await this worker's share; print the report; serve until told to stop."""
    receiver = tt.WebhookReceiver(f"http://127.0.0.1:{args.hook_port}{HOOK_PATH}")
    broker = tt.RedisBroker(args.redis)
    client = tt.Client(
        args.key,
        base_url=args.api,
        webhook=receiver,
        broker=broker,
        confirm_callbacks=args.confirm,
        max_connections=256,
    )
    woke: dict[str, float] = {}
    async with client:
        runner = await serve_receiver(receiver, args.hook_port)
        print("ready", flush=True)
        sys.stdin.readline()  # every worker is listening: go
        start = time.monotonic()
        cpu = time.process_time()
        async with anyio.create_task_group() as tg:

            async def one() -> None:
                job = await client.gpt4o.submit(prompt="bench")
                await job.wait(timeout=120)
                woke[job.job_id] = time.monotonic()

            for i in range(args.jobs):
                await anyio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                tg.start_soon(one)
        cpu = time.process_time() - cpu
        report = {"woke": woke, "polls": client.waiter.stats.polls_sent, "cpu": cpu}
        # Keep serving until every worker is done: a worker that leaves early would take
        # callbacks for the others' jobs with it (a deploy's shutdown, not this measure).
        print(json.dumps(report | {"broker": broker.stats.snapshot()}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        await runner.cleanup()
    return {}


async def bulk_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run the shared bulk run with the others; print the report; serve until told to."""
    receiver = tt.WebhookReceiver(f"http://127.0.0.1:{args.hook_port}{HOOK_PATH}")
    broker = tt.RedisBroker(args.redis)
    client = tt.Client(args.key, base_url=args.api, webhook=receiver, broker=broker)
    requests = [tt.GPT4oRequest(prompt=f"bulk {i}") for i in range(args.jobs)]
    async with client, tt.RedisJournal.open(args.redis, args.run, lease=10) as journal:
        runner = await serve_receiver(receiver, args.hook_port)
        print("ready", flush=True)
        sys.stdin.readline()
        cpu = time.process_time()
        mine = 0
        async with client.bulk(requests, max_jobs=64, journal=journal) as outcomes:
            async for outcome in outcomes:
                mine += outcome.ok
        cpu = time.process_time() - cpu
        print(json.dumps({"mine": mine, "cpu": cpu}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # as in callbacks_worker
        await runner.cleanup()
    return {}


# ----------------------------------------------------------------------------- driver


async def redis_commands(url: str) -> int:
    import redis.asyncio as aioredis  # noqa: PLC0415

    raw = aioredis.Redis.from_url(url)
    async with raw:
        stats = await raw.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if not k.endswith(("info", "flushall")))


async def flush(url: str) -> None:
    import redis.asyncio as aioredis  # noqa: PLC0415

    raw = aioredis.Redis.from_url(url)
    async with raw:
        await raw.flushall()
        await raw.config_resetstat()


async def run_workers(
    kind: str, procs: int, emu: Emulator, url: str, extra: list[str]
) -> list[dict[str, Any]]:
    """Start ``procs`` workers, let them all go at once, and collect their reports."""
    hook_port = free_port()
    args = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--api",
        emu.url,
        "--key",
        emu.api_key,
        "--redis",
        url,
        "--hook-port",
        str(hook_port),
        *extra,
    ]
    workers = [
        await anyio.open_process(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(procs)
    ]
    for proc in workers:  # each says "ready" once its receiver listens
        assert proc.stdout is not None
        buf = b""
        while not buf.endswith(b"ready\n"):
            buf += await proc.stdout.receive(1)
    for proc in workers:
        assert proc.stdin is not None
        await proc.stdin.send(b"go\n")
    reports = []
    for proc in workers:  # each reports once its own jobs are done, and keeps serving
        assert proc.stdout is not None
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = await proc.stdout.receive(1)
            if not chunk:
                raise RuntimeError(f"a {kind} worker exited early")
            buf += chunk
        reports.append(json.loads(buf))
    for proc in workers:  # then all stop together
        assert proc.stdin is not None
        await proc.stdin.send(b"stop\n")
    for proc in workers:
        await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"a {kind} worker failed with {proc.returncode}")
    return reports


async def callbacks_mode(
    url: str, procs: int, confirm: bool, jobs: int, rate: float, duration: float
) -> dict[str, Any]:
    await flush(url)
    async with Emulator(job_duration=duration, seed=3, draw_prompts=False) as emu:
        per = jobs // procs
        extra = ["--jobs", str(per), "--rate", str(rate / procs)]
        if not confirm:
            extra.append("--no-confirm")
        before = await redis_commands(url)
        reports = await run_workers("callbacks", procs, emu, url, extra)
        commands = await redis_commands(url) - before
        woke = {job: t for r in reports for job, t in r["woke"].items()}
        latency = [
            (t - emu.jobs[job].callback_at) * 1000
            for job, t in woke.items()
            if emu.jobs[job].callback_at is not None
        ]
        total = per * procs
        late = sorted(
            (round(t - emu.jobs[job].ends_at, 2), job, emu.jobs[job].callbacks)
            for job, t in woke.items()
            if t - emu.jobs[job].ends_at > 1.0
        )
        if late or emu.counters.callbacks_failed:
            print(
                f"  late: {late[:10]}; callbacks failed: {emu.counters.callbacks_failed}",
                flush=True,
            )
        first = min(j.created_at for j in emu.jobs.values())
        wall = max(woke.values()) - first
        return {
            "mode": f"{procs} process{'es' if procs > 1 else ''}"
            + ("" if confirm else ", confirm_callbacks=False"),
            "jobs": total,
            "resolved": len(woke),
            "throughput": total / wall,
            "fetches": emu.counters.fetches / total,
            "p50": statistics.median(latency),
            "p99": pct(latency, 0.99),
            "polls": sum(r["polls"] for r in reports),
            "redis": commands / total,
            "cpu": sum(r["cpu"] for r in reports) / total * 1e6,
        }


async def bulk_mode(url: str, procs: int, jobs: int) -> dict[str, Any]:
    await flush(url)
    async with Emulator(job_duration=(1.0, 3.0), seed=7, draw_prompts=False) as emu:
        before = await redis_commands(url)
        started = time.monotonic()
        reports = await run_workers(
            "bulk", procs, emu, url, ["--jobs", str(jobs), "--run", f"bench-{procs}"]
        )
        wall = time.monotonic() - started
        commands = await redis_commands(url) - before
        drawn = [j.ends_at - j.created_at for j in sorted(emu.jobs.values(), key=_created)]
        ideal = sum(drawn) / (64 * procs)
        billed = emu.counters.submits_by_prompt
        return {
            "mode": f"{procs} process{'es' if procs > 1 else ''}, 64 job slots each",
            "wall": wall,
            "ideal": ideal,
            "ratio": wall / ideal,
            "greedy": greedy(drawn, 64 * procs),
            "fetches": emu.counters.fetches / jobs,
            "redis": commands / jobs,
            "shares": [r["mine"] for r in reports],
            "twice": sum(1 for n in billed.values() if n > 1),
            "billed": sum(billed.values()),
        }


async def main_async(args: argparse.Namespace) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    folder = tempfile.mkdtemp(prefix="bench-fleet-")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with anyio.fail_after(10):
            while True:
                try:
                    await flush(url)
                    break
                except OSError:
                    await anyio.sleep(0.05)  # starting: nothing to wait on but its port
                except Exception:
                    await anyio.sleep(0.05)
        rows = []
        for procs, confirm in ((1, True), (args.workers, True), (args.workers, False)):
            if "callbacks" not in args.parts:
                break
            print(f"callbacks: {procs} process(es), confirm={confirm} ...", flush=True)
            rows.append(
                await callbacks_mode(url, procs, confirm, args.jobs, args.rate, args.duration)
            )
        bulk = []
        for procs in (1, 3) if "bulk" in args.parts else ():
            print(f"shared bulk run: {procs} process(es) ...", flush=True)
            bulk.append(await bulk_mode(url, procs, args.bulk_jobs))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    write(args, rows, bulk)


def write(args: argparse.Namespace, rows: list[dict[str, Any]], bulk: list[dict[str, Any]]) -> None:
    lines = [
        f"Command: `python benchmarks/bench_fleet.py{' --quick' if args.quick else ''}`",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cores, redis-server on loopback.",
        "",
        f"Callbacks: {args.jobs} jobs of {args.duration:g} s submitted at {args.rate:g}/s in "
        "all, callbacks on random workers; latency from the emulator posting a callback to "
        "the awaiting coroutine waking.",
        "",
        "| mode | jobs resolved | jobs/s | fetches/job | callback to wake p50 | p99 "
        "| Redis commands/job | client CPU/job |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['resolved']}/{r['jobs']} | {r['throughput']:.0f} | "
            f"{r['fetches']:.2f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
            f"{r['redis']:.1f} | {r['cpu']:.0f} µs |"
        )
    lines += [
        "",
        f"Shared bulk run: {args.bulk_jobs} 4o jobs (1-3 s, seed 7), webhook mode, "
        "RedisJournal; ideal = sum of durations / all job slots; greedy schedule = the same "
        "durations run in submit order on all the slots with no gap (the tail included).",
        "",
        "| mode | wall | ideal | vs ideal | greedy schedule | vs greedy | fetches/job "
        "| Redis commands/job | items per process | submitted twice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for b in bulk:
        lines.append(
            f"| {b['mode']} | {b['wall']:.2f} s | {b['ideal']:.2f} s | {b['ratio']:.2f}x | "
            f"{b['greedy']:.2f} s | {b['wall'] / b['greedy']:.2f}x | {b['fetches']:.2f} | {b['redis']:.1f} | {' / '.join(map(str, b['shares']))} | "
            f"{b['twice']} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=["callbacks", "bulk"])
    parser.add_argument("--api")
    parser.add_argument("--key")
    parser.add_argument("--redis")
    parser.add_argument("--hook-port", type=int)
    parser.add_argument("--run", default="bench")
    parser.add_argument("--no-confirm", dest="confirm", action="store_false")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--bulk-jobs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--parts", nargs="+", choices=["callbacks", "bulk"], default=["callbacks", "bulk"]
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fleet.md")
    args = parser.parse_args()
    if os.environ.get("BENCH_LOG_DIR"):  # diagnostics: each worker logs to its own file
        import logging  # noqa: PLC0415

        logging.basicConfig(
            filename=f"{os.environ['BENCH_LOG_DIR']}/worker-{os.getpid()}.log",
            level=logging.DEBUG,
            format="%(created).3f %(name)s %(message)s",
        )
    if args.worker == "callbacks":
        print(json.dumps(asyncio.run(callbacks_worker(args))), flush=True)
        return
    if args.worker == "bulk":
        print(json.dumps(asyncio.run(bulk_worker(args))), flush=True)
        return
    if args.quick:
        args.jobs, args.bulk_jobs = 600, 300
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
