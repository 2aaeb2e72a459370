"""Streamed image calls: time to the first partial image and to the image, SDK vs raw aiohttp.

Run: ``python benchmarks/bench_stream.py`` (``--calls 200``, ``--partials 2``). Writes
``benchmarks/results/stream.md``.

How it measures: the emulator runs in its own process (``python -m ttapi_async.testing``)
and streams each call's events 10 ms apart (``STREAM_GAP``). Each client runs in this
process, one call at a time, alternating call by call: ``raw`` is
``aiohttp.ClientSession.post`` reading ``resp.content`` line by line and decoding each
``data:`` line's JSON; ``sdk`` is ``client.images.generate(stream=True)`` iterated. From
the moment the call starts: the first partial image's arrival and the completed image's,
median and p95; and the client CPU per event (``time.process_time`` over the run /
events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench_generate import KEY, start_server  # one way to start the servers

import ttapi_async as tt


HERE = Path(__file__).resolve().parent
BODY = {"model": "gpt-image-1", "prompt": "a fox", "quality": "low", "stream": True}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def raw_call(
    session: aiohttp.ClientSession, url: str, partials: int
) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = done = 0.0
    events = 0
    body = {**BODY, "partial_images": partials}
    headers = {"TT-API-KEY": KEY, "Accept": "text/event-stream"}
    async with session.post(url + "/v1/images/generations", json=body, headers=headers) as resp:
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            event = json.loads(line[5:])
            events += 1
            if not first:
                first = time.perf_counter() - start
            if event["type"].endswith(".completed"):
                done = time.perf_counter() - start
    return first, done, events


async def sdk_call(client: tt.Client, partials: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = done = 0.0
    events = 0
    stream = await client.images.generate(
        prompt="a fox", model="gpt-image-1", quality="low", stream=True, partial_images=partials
    )
    async with stream:
        async for event in stream:
            events += 1
            if not first:
                first = time.perf_counter() - start
            if event.completed:
                done = time.perf_counter() - start
    return first, done, events


async def run(url: str, calls: int, partials: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {
        m: {"first": [], "done": [], "cpu": 0.0, "events": 0} for m in ("raw", "sdk")
    }
    async with aiohttp.ClientSession() as session, tt.Client(KEY, base_url=url) as client:
        for _ in range(3):  # warm both up
            await raw_call(session, url, partials)
            await sdk_call(client, partials)
        for _ in range(calls):
            for mode in ("raw", "sdk"):
                cpu = time.process_time()
                if mode == "raw":
                    first, done, events = await raw_call(session, url, partials)
                else:
                    first, done, events = await sdk_call(client, partials)
                r = results[mode]
                r["cpu"] += time.process_time() - cpu
                r["events"] += events
                r["first"].append(first * 1000)
                r["done"].append(done * 1000)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--partials", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "stream.md")
    args = parser.parse_args()
    server, url = start_server("emulator", "b64")  # the emulator in its own process
    try:
        results = asyncio.run(run(url, args.calls, args.partials))
    finally:
        server.terminate()
        server.wait()
    raw, sdk = results["raw"], results["sdk"]
    lines = [
        f"Command: `python benchmarks/bench_stream.py --calls {args.calls} --partials {args.partials}`",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {sys.version.split()[0]}; "
        f"emulator in its own process, events {args.partials + 1} per call, 10 ms apart; "
        f"{args.calls} calls per client, alternating.",
        "",
        "| client | first partial p50 | p95 | completed p50 | p95 | CPU per event |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("raw aiohttp", raw), ("ttapi-async", sdk)):
        lines.append(
            f"| {name} | {statistics.median(r['first']):.2f} ms | {pct(r['first'], 0.95):.2f} ms | "
            f"{statistics.median(r['done']):.2f} ms | {pct(r['done'], 0.95):.2f} ms | "
            f"{r['cpu'] / r['events'] * 1e6:.0f} µs |"
        )
    gap = statistics.median(sdk["first"]) - statistics.median(raw["first"])
    lines += [
        "",
        f"SDK minus raw at the median, first partial: {gap:+.2f} ms (target: within 1 ms).",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
