"""Run the TTAPI emulator standalone until SIGINT or SIGTERM.

``python -m ttapi_async.testing --host 127.0.0.1 --port 8080 --api-key KEY``. It prints one
line, ``TTAPI emulator on http://HOST:PORT (api key: KEY)``, then serves (and, on stderr,
the ``export TTAPI_BASE_URL=... TTAPI_API_KEY=...`` line to paste into another shell).
With ``--port 0`` the printed URL carries the port the system picked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from ._emulator import DEFAULT_MAX_BODY, DEFAULT_READ_TIMEOUT, Emulator
from ._faults import CallbackFaults


if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = ["build_parser", "main", "serve"]

_RANGE_LEN = 2


def _duration(values: Sequence[float]) -> float | tuple[float, float]:
    if len(values) == 1:
        return values[0]
    if len(values) == _RANGE_LEN:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError("give one number of seconds, or two: LOW HIGH")


def build_parser() -> argparse.ArgumentParser:
    """Build the command line of ``python -m ttapi_async.testing``."""
    p = argparse.ArgumentParser(
        prog="python -m ttapi_async.testing",
        description="Serve a local TTAPI emulator (OpenAI image routes and 4o-image jobs).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    p.add_argument("--api-key", default=None, help="accepted key (default: generated)")
    p.add_argument(
        "--job-duration",
        type=float,
        nargs="+",
        default=[1.0, 3.0],
        metavar="SECONDS",
        help="4o job run time: one value, or LOW HIGH drawn uniformly",
    )
    p.add_argument("--job-fail-rate", type=float, default=0.0, help="share of 4o jobs that fail")
    p.add_argument(
        "--sync-latency",
        type=float,
        nargs="+",
        default=[0.0],
        metavar="SECONDS",
        help="delay before /v1 and DALL-E 3 replies: one value, or LOW HIGH",
    )
    p.add_argument("--balance", type=float, default=None, help="quota left (default: unlimited)")
    p.add_argument("--max-in-flight", type=int, default=None, help="per-key cap (HTTP 499)")
    p.add_argument("--url-ttl", type=float, default=3600.0, help="seconds image URLs stay valid")
    p.add_argument("--seed", type=int, default=None, help="seed of the emulator's RNG")
    p.add_argument("--callback-lose-rate", type=float, default=0.0)
    p.add_argument("--callback-duplicate-rate", type=float, default=0.0)
    p.add_argument("--callback-delay", type=float, default=0.0)
    p.add_argument("--callback-early-rate", type=float, default=0.0)
    p.add_argument("--callback-forge-rate", type=float, default=0.0)
    p.add_argument("--callback-cross-rate", type=float, default=0.0)
    p.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help="largest request body (413 beyond it)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        metavar="SECONDS",
        help="time a request's body may take to arrive (408 beyond it)",
    )
    p.add_argument(
        "--extra-model",
        action="append",
        default=[],
        metavar="NAME",
        help="accept this model name too (repeatable); unknown names get a 400",
    )
    p.add_argument(
        "--no-draw-prompts",
        dest="draw_prompts",
        action="store_false",
        help="one shared picture per kind instead of pictures showing their prompt",
    )
    p.add_argument("--uvloop", action="store_true", help="run on uvloop (the speedups extra)")
    return p


async def serve(args: argparse.Namespace) -> None:
    """Run the emulator described by parsed ``args`` until SIGINT or SIGTERM."""
    emulator = Emulator(
        args.api_key,
        host=args.host,
        port=args.port,
        job_duration=_duration(args.job_duration),
        job_fail_rate=args.job_fail_rate,
        sync_latency=_duration(args.sync_latency),
        balance=args.balance,
        max_in_flight=args.max_in_flight,
        url_ttl=args.url_ttl,
        callbacks=CallbackFaults(
            lose_rate=args.callback_lose_rate,
            duplicate_rate=args.callback_duplicate_rate,
            delay=args.callback_delay,
            early_rate=args.callback_early_rate,
            forge_rate=args.callback_forge_rate,
            cross_rate=args.callback_cross_rate,
        ),
        seed=args.seed,
        max_body=args.max_body,
        read_timeout=args.read_timeout,
        extra_models=args.extra_model,
        draw_prompts=args.draw_prompts,
    )
    async with emulator as emu:
        # One line on stdout, flushed: scripts and benchmarks wait for it to read the URL.
        print(f"TTAPI emulator on {emu.url} (api key: {emu.api_key})", flush=True)  # noqa: T201
        # For a person: what to paste into another shell (stderr: stdout's one line stays).
        print(  # noqa: T201
            f"In another shell:\n  export TTAPI_BASE_URL={emu.url} TTAPI_API_KEY={emu.api_key}",
            file=sys.stderr,
            flush=True,
        )
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C raises instead
            await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("job_duration", "sync_latency"):
        if len(getattr(args, name)) > _RANGE_LEN:
            parser.error(f"--{name.replace('_', '-')} takes one or two numbers")
    loop_factory = None
    if args.uvloop:
        import uvloop  # noqa: PLC0415 - optional speedup, imported only when asked for

        loop_factory = uvloop.new_event_loop
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
