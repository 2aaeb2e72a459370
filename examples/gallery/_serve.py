"""Run the gallery: a client (TTAPI, or the embedded emulator without a key) and a server.

Everything lives in one task group: the server, and a task per generation waiting for its
job. Cancelling the group (Ctrl-C) ends the page streams, stops the server, cancels the
waits and closes the client, in that order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
from aiohttp import web

import ttapi_async as tt

from ._history import Gallery
from ._web import make_app


#: How long 4o jobs take on the embedded emulator: long enough to watch the statuses
#: change (TTAPI's take 20 to 90 s), short enough for a demo.
DEMO_JOB_DURATION = (2.0, 4.0)


@contextlib.asynccontextmanager
async def open_client(
    job_duration: float | tuple[float, float] = DEMO_JOB_DURATION,
) -> AsyncIterator[tt.Client]:
    """A client for TTAPI with ``TTAPI_API_KEY``, else for an embedded emulator (as the
    command line does), whose jobs take ``job_duration`` seconds."""
    if os.environ.get("TTAPI_API_KEY"):
        async with tt.Client() as client:
            yield client
        return
    try:
        from ttapi_async.testing import Emulator  # noqa: PLC0415 - only without a key
    except ImportError as exc:
        raise SystemExit(
            f"no TTAPI_API_KEY is set, and the embedded emulator cannot start: {exc} "
            "(pip install 'ttapi-async[testing]')"
        ) from exc
    async with Emulator(job_duration=job_duration) as emu:
        print(
            f"No TTAPI_API_KEY set: using the embedded TTAPI emulator at {emu.url} "
            "(synthetic images, nothing is billed).",
            flush=True,
        )
        async with tt.Client(emu.api_key, base_url=emu.url) as client:
            yield client


async def serve(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    model: str | None = None,
    job_duration: float | tuple[float, float] = DEMO_JOB_DURATION,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the gallery on ``host:port`` (0: any free port) until cancelled.

    With ``task_group.start(serve, ...)``, the page's URL is handed back once it answers.
    Images are saved into ``folder``.
    """
    async with open_client(job_duration) as client, anyio.create_task_group() as tg:
        gallery = Gallery(client, tg, folder, model=model)
        # Open page streams are ended by gallery.close() first; the timeout only bounds
        # a request still in flight (a submit) at shutdown.
        runner = web.AppRunner(make_app(gallery), shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            bound = runner.addresses[0][1]  # the real port, when 0 was asked
            task_status.started(f"http://{host}:{bound}/")
            await anyio.sleep_forever()
        finally:
            gallery.close()
            with anyio.CancelScope(shield=True):  # a cancelled stop would leave sockets open
                await runner.cleanup()
            tg.cancel_scope.cancel()  # the waits of jobs still running end here
