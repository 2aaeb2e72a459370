"""An aiohttp backend: jobs are submitted with a hook URL and answered from the callback.

``POST /images {"prompt": ...}`` submits a 4o-image job and returns its id at once;
``GET /images/{job_id}?wait=30`` waits (up to ``wait`` seconds) and returns the image URL.
TTAPI's callback lands on ``/ttapi/hook/<token>`` of this same app.

    python examples/aiohttp_backend.py            # serve on :8080 (PUBLIC_URL for TTAPI)
    python examples/aiohttp_backend.py --demo     # start, call itself, print, stop
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import AsyncIterator

from aiohttp import web

import ttapi_async as tt


# Run as a script (python examples/aiohttp_backend.py), the script's folder is on sys.path;
# imported as examples.aiohttp_backend from the root (uvicorn, gunicorn), it is not. By name,
# not a second static import: one file, one module name for type checkers.
try:
    _common = importlib.import_module("_common")
except ModuleNotFoundError:
    _common = importlib.import_module("examples._common")
exercise, free_port, ttapi_client = _common.exercise, _common.free_port, _common.ttapi_client


CLIENT = web.AppKey("client", tt.Client)


def make_app(public_url: str) -> web.Application:
    """The app; ``public_url`` is where TTAPI can reach it (for the hook URLs)."""
    receiver = tt.WebhookReceiver(public_url.rstrip("/") + "/ttapi/hook")
    app = web.Application()
    receiver.add_to_app(app)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        # One client for the app's lifetime; its waiter runs inside this context.
        async with ttapi_client(webhook=receiver) as client:
            app[CLIENT] = client
            yield

    async def submit(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            job = await request.app[CLIENT].gpt4o.submit(prompt=body["prompt"])
        except tt.ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"job_id": job.job_id}, status=202)

    async def result(request: web.Request) -> web.Response:
        client = request.app[CLIENT]
        wait = float(request.query.get("wait", "30"))
        try:
            res = await client.waiter.wait(request.match_info["job_id"], timeout=wait)
        except tt.JobTimeoutError:
            return web.json_response({"status": "running"}, status=202)
        except tt.JobFailedError as exc:
            return web.json_response({"status": "failed", "reason": exc.reason}, status=200)
        return web.json_response({"status": "done", "image_url": res.image_url, "via": res.source})

    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/images", submit)
    app.router.add_get("/images/{job_id}", result)
    return app


async def demo() -> None:
    """Serve on a free port, submit two jobs through the HTTP API, print their results."""
    port = free_port()
    runner = web.AppRunner(make_app(f"http://127.0.0.1:{port}"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await exercise(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if "--demo" in sys.argv:
        asyncio.run(demo())
    else:
        port = int(os.environ.get("PORT", "8080"))
        public = os.environ.get("PUBLIC_URL", f"http://127.0.0.1:{port}")
        web.run_app(make_app(public), host="127.0.0.1", port=port)
