"""``python -m examples.gallery``: serve the gallery until Ctrl-C (run from the repo's root).

Without ``TTAPI_API_KEY`` it runs against the embedded emulator and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import tempfile
from pathlib import Path

import anyio

from ._serve import DEMO_JOB_DURATION, serve


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.gallery",
        description="A web page that generates images with TTAPI's job route and shows "
        "each job's status live.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    parser.add_argument("--model", default=None, help="gpt route model (default: TTAPI's)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the images in this folder (default: a temporary one, removed on exit)",
    )
    parser.add_argument(
        "--job-duration",
        type=float,
        default=None,
        help="seconds each emulated job takes (emulator only; default: 2 to 4)",
    )
    return parser.parse_args()


async def _main(args: argparse.Namespace, folder: Path) -> None:
    # Ctrl-C and SIGTERM cancel the task group: every part stops in order, nothing is
    # interrupted halfway by a KeyboardInterrupt.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            url = await tg.start(
                functools.partial(
                    serve,
                    folder,
                    host=args.host,
                    port=args.port,
                    model=args.model,
                    job_duration=args.job_duration or DEMO_JOB_DURATION,
                )
            )
            print(f"Gallery: open {url} (Ctrl-C to stop)", flush=True)
            async for _ in signals:
                print("Stopping...", flush=True)
                tg.cancel_scope.cancel()
                break


def _first(error: BaseException) -> BaseException:
    """The first error a (nested) exception group holds: the one worth printing."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def main() -> None:
    args = _arguments()
    with contextlib.ExitStack() as stack:
        if args.out is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ttapi-gallery-")))
        else:
            folder = args.out
            folder.mkdir(parents=True, exist_ok=True)
        try:
            anyio.run(_main, args, folder)
        except* OSError as group:  # the port is taken, the address is not this machine's
            sys.exit(f"error: {_first(group)} (--port 0 picks a free port)")
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
