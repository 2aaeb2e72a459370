"""images.generate throughput and client CPU per call: ttapi-async vs raw aiohttp vs AsyncOpenAI.

Run: ``python benchmarks/bench_generate.py`` (or ``nox -s bench``). Options: ``--seconds``,
``--rounds``, ``--concurrency 1 64 256``, ``--server emulator|minimal``, ``--modes``,
``--reply b64|url`` (a 1024x1024 gpt-image-1 image in the body, or a small dall-e-2 reply
that only holds a URL: there the client's own overhead shows most), and ``--before DIR``
(a checkout of an older commit: modes ending in ``@before`` import the SDK from there, so
before/after land side by side in one run).

How it measures, so the ratios mean something:

* The server runs in its own process (the emulator, ``python -m ttapi_async.testing``, or a
  minimal aiohttp app returning the same bytes). Its CPU use is sampled with psutil and
  reported, to show it is not the bottleneck.
* Each client runs in its own fresh process, one at a time, for a fixed wall time after a
  warm-up; it reports calls completed and its own CPU time (``time.process_time``).
* Every client gets the same connection limit (= the concurrency), sends the same body
  and decodes the JSON it gets. The raw baseline is ``aiohttp.ClientSession.post`` +
  ``json.loads``; the SDK builds, validates, sends, parses into frozen models.
* Like for like: each mode is compared with the raw baseline that uses the same JSON
  library and event loop (``sdk+orjson`` with ``raw+orjson``, ``sdk+orjson+uvloop`` with
  ``raw+orjson+uvloop``); plain ``raw`` when that baseline was not run.
* Modes run interleaved in rounds, and the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil


HERE = Path(__file__).resolve().parent
KEY = "bench-key"
BODIES: dict[str, dict[str, Any]] = {
    "b64": {
        "model": "gpt-image-1",
        "prompt": "a red fox in the snow",
        "size": "1024x1024",
        "quality": "low",
    },
    "url": {
        "model": "dall-e-2",
        "prompt": "a red fox in the snow",
        "size": "256x256",
        "response_format": "url",
    },
}
MODES = ["raw", "sdk", "openai"]
EXTRA_MODES = ["raw+orjson", "sdk+orjson", "raw+orjson+uvloop", "sdk+orjson+uvloop"]


def baseline(mode: str, modes: list[str]) -> str:
    """The raw mode a mode is compared with: same JSON library, same event loop."""
    plain = mode.removesuffix("@before")
    if plain.startswith("sdk") and plain != "sdk":
        candidate = "raw" + plain.removeprefix("sdk")
        if candidate in modes:
            return candidate
    if plain.startswith("raw") and plain in modes:
        return plain
    return "raw"


# ----------------------------------------------------------------------------- workers


async def _drive(
    call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float, warmup: float = 1.0
) -> tuple[int, float, float]:
    """Run ``concurrency`` loops of ``call``: a warm-up, then a measured window.

    Returns (calls completed in the window, window wall seconds, process CPU seconds).
    """
    stop = False
    measuring = False
    counted = 0

    async def loop() -> None:
        nonlocal counted
        while not stop:
            await call()
            if measuring:
                counted += 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(loop())
        await asyncio.sleep(warmup)
        measuring = True
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        measuring = False
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stop = True
    return counted, wall, cpu


async def worker(
    mode: str, url: str, concurrency: int, seconds: float, reply: str
) -> dict[str, Any]:
    """One client kind in this process; prints its measurement as JSON."""
    body_params = BODIES[reply]
    if mode.startswith("raw"):
        import aiohttp  # noqa: PLC0415

        dumps: Callable[[Any], bytes]
        loads: Callable[[bytes], Any]
        if "orjson" in mode:
            import orjson  # noqa: PLC0415

            dumps, loads = orjson.dumps, orjson.loads
        else:

            def dumps(obj: Any) -> bytes:
                return json.dumps(obj).encode()

            loads = json.loads
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {"TT-API-KEY": KEY, "Content-Type": "application/json"}
            target = url + "/v1/images/generations"

            async def call() -> None:
                # Encode per call, as any real caller does (the SDK builds a body per call too).
                async with session.post(target, data=dumps(body_params), headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(resp.status)
                    loads(body)

            n, wall, cpu = await _drive(call, concurrency, seconds)
    elif mode.startswith("sdk"):
        import ttapi_async as tt  # noqa: PLC0415

        async with tt.Client(KEY, base_url=url, max_connections=concurrency) as client:

            async def call() -> None:
                await client.images.generate(**body_params)

            n, wall, cpu = await _drive(call, concurrency, seconds)
    elif mode == "openai":
        import openai  # noqa: PLC0415

        # openai 3.x ships its own httpx fork, httpx2; older releases use httpx.
        try:
            httpx: Any = importlib.import_module("httpx2")
        except ImportError:
            httpx = importlib.import_module("httpx")

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with openai.AsyncOpenAI(
            api_key=KEY,
            base_url=url + "/v1",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        ) as oai:

            async def call() -> None:
                await oai.images.generate(**body_params)

            n, wall, cpu = await _drive(call, concurrency, seconds)
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"mode": mode, "calls": n, "wall": wall, "cpu": cpu}


def run_worker(args: argparse.Namespace) -> None:
    if "uvloop" in args.worker:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    result = asyncio.run(worker(args.worker, args.url, args.concurrency, args.seconds, args.reply))
    print(json.dumps(result))


# ----------------------------------------------------------------------------- orchestration


def start_server(kind: str, reply: str) -> tuple[subprocess.Popen[str], str]:
    if kind == "emulator":
        cmd = [
            sys.executable,
            "-m",
            "ttapi_async.testing",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--no-draw-prompts",
        ]
    else:
        cmd = [sys.executable, str(HERE / "minimal_server.py"), "--port", "0", "--reply", reply]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if proc.stdout is None:
        raise RuntimeError("no stdout from the server")
    line = proc.stdout.readline()
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url.rstrip("/")


def measure(
    mode: str, url: str, concurrency: int, args: argparse.Namespace, server: psutil.Process
) -> dict[str, Any]:
    seconds = args.seconds
    env = dict(os.environ)
    if "orjson" not in mode:
        env["TTAPI_ASYNC_JSON"] = "stdlib"
    if mode.endswith("@before"):
        if args.before is None:
            raise SystemExit(f"{mode} needs --before DIR")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.before), env.get("PYTHONPATH")]))
    before = server.cpu_times()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--url",
            url,
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
            "--reply",
            args.reply,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    after = server.cpu_times()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # The server's CPU over the whole worker run (warm-up included) over the same span.
    span = seconds + 1.0
    result["server_cpu_pct"] = (
        100 * ((after.user - before.user) + (after.system - before.system)) / span
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker")
    parser.add_argument("--url")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["emulator", "minimal"], default="emulator")
    parser.add_argument("--modes", nargs="+", default=MODES + EXTRA_MODES)
    parser.add_argument("--reply", choices=sorted(BODIES), default="b64")
    parser.add_argument("--before", type=Path, help="an older checkout, for the @before modes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "generate.md")
    args = parser.parse_args()
    if args.worker:
        args.concurrency = args.concurrency[0]
        run_worker(args)
        return

    proc, url = start_server(args.server, args.reply)
    server = psutil.Process(proc.pid)
    rows: list[dict[str, Any]] = []
    try:
        for conc in args.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
            for _ in range(args.rounds):
                for mode in args.modes:
                    runs[mode].append(measure(mode, url, conc, args, server))
            for mode in args.modes:
                raw = runs[baseline(mode, args.modes)]
                base = statistics.median(r["calls"] / r["wall"] for r in raw)
                base_cpu = statistics.median(r["cpu"] / r["calls"] for r in raw)
                thr = statistics.median(r["calls"] / r["wall"] for r in runs[mode])
                cpu = statistics.median(r["cpu"] / r["calls"] for r in runs[mode])
                srv = max(r["server_cpu_pct"] for r in runs[mode])
                rows.append(
                    {
                        "concurrency": conc,
                        "mode": mode,
                        "baseline": baseline(mode, args.modes),
                        "calls_per_s": thr,
                        "ratio": thr / base,
                        "cpu_us": cpu * 1e6,
                        "cpu_ratio": cpu / base_cpu,
                        "server_cpu_pct": srv,
                    }
                )
                print(
                    f"c={conc:<4} {mode:<26} {thr:8.0f}/s  x{thr / base:4.2f}  "
                    f"cpu/call {cpu * 1e6:7.0f} us  x{cpu / base_cpu:4.2f}  server cpu {srv:4.0f}%",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(10)

    header = (
        f"Server: {args.server} in its own process; reply: {args.reply}; {args.seconds:.0f} s "
        f"per run, median of {args.rounds} rounds; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores. Ratios are against the raw mode named in the row."
    )
    lines = [
        header,
        "",
        (
            "| in flight | client | vs | calls/s | vs raw aiohttp | client CPU/call | CPU vs raw "
            "| server CPU (max) |"
        ),
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['mode']} | {r['baseline']} | {r['calls_per_s']:.0f} | {r['ratio']:.2f}x | "
            f"{r['cpu_us']:.0f} µs | {r['cpu_ratio']:.2f}x | {r['server_cpu_pct']:.0f}% |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
