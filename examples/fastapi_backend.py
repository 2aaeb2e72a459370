"""A FastAPI backend: the webhook receiver is mounted as an ASGI app.

``POST /images {"prompt": ...}`` submits a 4o-image job; ``GET /images/{job_id}?wait=30``
returns its image URL once done. The client lives in the app's lifespan, so its waiter runs
for the app's lifetime. Needs ``pip install fastapi uvicorn``.

    uvicorn examples.fastapi_backend:app           # PUBLIC_URL tells TTAPI where to call back
    python examples/fastapi_backend.py --demo      # start on a free port, call itself, stop
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import ttapi_async as tt


# Run as a script (python examples/fastapi_backend.py), the script's folder is on sys.path;
# imported as examples.fastapi_backend from the root (uvicorn, gunicorn), it is not. By name,
# not a second static import: one file, one module name for type checkers.
try:
    _common = importlib.import_module("_common")
except ModuleNotFoundError:
    _common = importlib.import_module("examples._common")
exercise, free_port, ttapi_client = _common.exercise, _common.free_port, _common.ttapi_client


class ImageRequest(BaseModel):
    """The body of POST /images."""

    prompt: str


def make_app(public_url: str) -> FastAPI:
    """The app; ``public_url`` is where TTAPI can reach it."""
    receiver = tt.WebhookReceiver(public_url.rstrip("/") + "/ttapi/hook")
    state: dict[str, tt.Client] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with ttapi_client(webhook=receiver) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/ttapi/hook", receiver.asgi_app)

    @app.post("/images", status_code=202)
    async def submit(body: ImageRequest) -> dict[str, str]:
        try:
            job = await state["client"].gpt4o.submit(prompt=body.prompt)
        except tt.ValidationError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"job_id": job.job_id}

    @app.get("/images/{job_id}")
    async def result(job_id: str, wait: float = 30) -> dict[str, str | None]:
        try:
            res = await state["client"].waiter.wait(job_id, timeout=wait)
        except tt.JobTimeoutError:
            return {"status": "running"}
        except tt.JobFailedError as exc:
            return {"status": "failed", "reason": exc.reason}
        return {"status": "done", "image_url": res.image_url, "via": res.source}

    return app


app = make_app(os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000"))


async def demo() -> None:
    """Run uvicorn on a free port, submit two jobs over HTTP, print the results."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(f"http://127.0.0.1:{port}"), port=port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        await exercise(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task


if __name__ == "__main__":
    if "--demo" in sys.argv:
        asyncio.run(demo())
    else:
        uvicorn.run(app, port=int(os.environ.get("PORT", "8000")))
