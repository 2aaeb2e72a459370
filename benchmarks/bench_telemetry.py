"""What telemetry costs on the send path: images.generate with it off, on, and on over the API alone.

Run: ``python benchmarks/bench_telemetry.py`` (options: ``--seconds``, ``--rounds``,
``--concurrency 1 64``, ``--reply url|b64``, ``--modes``, ``--before DIR``).

Measured as ``bench_generate.py`` measures the SDK, so the figures compare:

* The server is ``minimal_server.py`` in its own process (no validation, no bookkeeping),
  answering the small ``url`` reply by default: the client's own overhead shows most there.
* Each mode runs in its own fresh process, one at a time, for a fixed wall time after a
  warm-up; it reports calls completed and its own CPU time (``time.process_time``).
  Modes run interleaved in rounds; the median round is reported, as ratios to ``off``.

The modes:

* ``off``: no ``telemetry=`` (the default). The send path pays one None-check.
* ``on``: ``Telemetry`` over an SDK ``TracerProvider`` (a ``BatchSpanProcessor`` into an
  exporter that drops what it gets) and an SDK ``MeterProvider`` (an in-memory reader):
  a span, its attributes and the duration histogram per call, as in production, minus
  the network export.
* ``on-api``: ``Telemetry`` with only the API's default providers (no SDK set up): what
  a library user pays when the application installed the extra but exports nothing.
* ``off@before``: ``off`` with the SDK imported from ``--before DIR`` (an older checkout,
  e.g. ``git archive HEAD | tar -x -C /tmp/before``): the None-check against no check.

Each mode also has a ``sender:`` twin (``--sender``, on by default): ``Sender.call`` alone,
``--sender-calls`` times in a row over a transport that answers from memory (no socket, no
aiohttp, no server), so the send path's own CPU is all there is to measure and a few
per cent show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_generate import _drive  # the same measured loop as the generate benchmark


HERE = Path(__file__).resolve().parent
KEY = "bench-key"
BODIES: dict[str, dict[str, Any]] = {
    "b64": {"model": "gpt-image-1", "prompt": "a red fox", "size": "1024x1024", "quality": "low"},
    "url": {
        "model": "dall-e-2",
        "prompt": "a red fox",
        "size": "256x256",
        "response_format": "url",
    },
}
MODES = ["off", "on", "on-api"]


def _telemetry(mode: str) -> Any:
    """The ``telemetry=`` argument of a mode (None: off)."""
    if mode.startswith("off"):
        return None
    import ttapi_async as tt  # noqa: PLC0415

    if mode == "on-api":
        return tt.Telemetry()
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            del spans  # dropped: the export's network cost is not the SDK's
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tt.Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


async def sender_worker(mode: str, calls: int) -> dict[str, Any]:
    """``Sender.call`` alone over an in-memory transport: CPU per call of the send path."""
    import inspect  # noqa: PLC0415

    from ttapi_async._errors import Redactor  # noqa: PLC0415
    from ttapi_async._http import RawResponse  # noqa: PLC0415
    from ttapi_async._protocol import build_generate, parse_images  # noqa: PLC0415
    from ttapi_async._retry import RetryPolicy  # noqa: PLC0415
    from ttapi_async._sender import Sender  # noqa: PLC0415

    body = json.dumps({"created": 1, "data": [{"url": "https://example.invalid/a.png"}]})
    reply = RawResponse(200, {"Content-Type": "application/json"}, body.encode())

    class Memory:
        """The one transport method ``Sender.call`` uses, answered from memory."""

        closed = False

        async def send(self, *args: Any) -> RawResponse:  # (spec, state, timeout)
            del args
            return reply

        async def aclose(self) -> None:
            self.closed = True

    telemetry = _telemetry(mode.removeprefix("sender:"))
    extra: dict[str, Any] = {}
    if telemetry is not None:
        extra["telemetry"] = telemetry._recorder("http://127.0.0.1:9")
    open_memory: Any = Memory  # the one Transport method the send path uses
    sender = Sender(
        open_memory, timeout=None, retry=RetryPolicy(), redactor=Redactor(("k",)), **extra
    )
    spec = build_generate(BODIES["url"])
    # As the resources call it: with model= where the send path takes it.
    kwargs: dict[str, Any] = {}
    if "model" in inspect.signature(Sender.call).parameters:
        kwargs["model"] = "dall-e-2"

    def parse(raw: RawResponse, info: Any) -> Any:
        return parse_images(raw.status, raw.headers, raw.body, info)

    for _ in range(calls // 10):  # warm-up
        await sender.call(spec, parse, None, **kwargs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await sender.call(spec, parse, None, **kwargs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"mode": mode, "calls": calls, "wall": wall, "cpu": cpu}


async def worker(
    mode: str, url: str, concurrency: int, seconds: float, reply: str
) -> dict[str, Any]:
    """One mode in this process: drive images.generate, report calls and CPU as JSON."""
    import ttapi_async as tt  # noqa: PLC0415

    params = BODIES[reply]
    telemetry = _telemetry(mode)
    # Off, the argument is left out: an older checkout (off@before) has no such parameter.
    extra = {} if telemetry is None else {"telemetry": telemetry}
    async with tt.Client(KEY, base_url=url, max_connections=concurrency, **extra) as client:

        async def call() -> None:
            await client.images.generate(**params)

        n, wall, cpu = await _drive(call, concurrency, seconds)
    return {"mode": mode, "calls": n, "wall": wall, "cpu": cpu}


def start_server(reply: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, str(HERE / "minimal_server.py"), "--port", "0", "--reply", reply]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if proc.stdout is None:
        raise RuntimeError("no stdout from the server")
    line = proc.stdout.readline()
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url.rstrip("/")


def measure(mode: str, url: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    env["TTAPI_ASYNC_JSON"] = "stdlib"
    if mode.endswith("@before"):
        if args.before is None:
            raise SystemExit(f"{mode} needs --before DIR")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.before), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--worker", mode, "--url", url]
    cmd += ["--sender-calls", str(args.sender_calls)]
    cmd += [
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(args.seconds),
        "--reply",
        args.reply,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker")
    parser.add_argument("--url")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--reply", choices=sorted(BODIES), default="url")
    parser.add_argument("--before", type=Path, help="an older checkout, for off@before")
    parser.add_argument("--sender", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sender-calls", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "telemetry.md")
    args = parser.parse_args()
    if args.worker:
        if args.worker.startswith("sender:"):
            result = asyncio.run(sender_worker(args.worker, args.sender_calls))
        else:
            result = asyncio.run(
                worker(args.worker, args.url, args.concurrency[0], args.seconds, args.reply)
            )
        print(json.dumps(result))
        return

    proc, url = start_server(args.reply)
    lines = [
        f"Server: minimal, in its own process; reply: {args.reply}; {args.seconds:.0f} s per "
        f"run, median of {args.rounds} rounds; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores. Ratios are against the first mode (`off`) in the same run; "
        "`sender:` rows time `Sender.call` alone over an in-memory transport.",
        "",
        "| in flight | mode | calls/s | vs off | client CPU/call | CPU vs off |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    groups = [(str(conc), list(args.modes)) for conc in args.concurrency]
    if args.sender:  # "in flight" is one: calls in a row
        groups.append(("sender", [f"sender:{m}" for m in args.modes]))
    try:
        for label, modes in groups:
            conc = 1 if label == "sender" else int(label)
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
            for _ in range(args.rounds):
                for mode in modes:
                    runs[mode].append(measure(mode, url, conc, args))
            base = runs[modes[0]]
            base_thr = statistics.median(r["calls"] / r["wall"] for r in base)
            base_cpu = statistics.median(r["cpu"] / r["calls"] for r in base)
            for mode in modes:
                thr = statistics.median(r["calls"] / r["wall"] for r in runs[mode])
                cpu = statistics.median(r["cpu"] / r["calls"] for r in runs[mode])
                row = (
                    f"| {conc} | {mode} | {thr:.0f} | {thr / base_thr:.2f}x | "
                    f"{cpu * 1e6:.1f} µs | {cpu / base_cpu:.2f}x |"
                )
                lines.append(row)
                print(row, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
