"""The gallery's HTTP side: the page, its API, the live events and the saved images.

``GET /``                  the page (``static/``: plain HTML, CSS and JavaScript)
``POST /api/generations``  ``{"prompt": ...}``: submit a job; 202 with the generation
``GET /api/events``        server-sent events: ``snapshot`` (the history), then ``update``s
``GET /images/{job_id}``   a generation's saved image
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from aiohttp import web

import ttapi_async as tt

from ._history import Gallery, Update


STATIC = Path(__file__).resolve().parent / "static"
GALLERY = web.AppKey("gallery", Gallery)

#: A comment line this often keeps an idle event stream open through proxies, and finds
#: out that a page went away (the write fails) when nothing else happens.
KEEPALIVE = 15.0
MAX_PROMPT = 4000


def make_app(gallery: Gallery) -> web.Application:
    """The aiohttp application serving ``gallery``."""
    app = web.Application()
    app[GALLERY] = gallery
    app.router.add_get("/", index)
    app.router.add_post("/api/generations", generate)
    app.router.add_get("/api/events", events)
    app.router.add_get("/images/{job_id}", image)
    app.router.add_static("/static/", STATIC)
    return app


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def generate(request: web.Request) -> web.Response:
    """Submit a prompt; the answer comes once TTAPI gave the job its id."""
    try:
        body = await request.json()
    except ValueError:
        return _error(400, 'send JSON: {"prompt": "..."}')
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        return _error(400, "type a prompt first")
    if len(prompt) > MAX_PROMPT:
        return _error(400, f"a prompt of at most {MAX_PROMPT} characters, please")
    try:
        generation = await request.app[GALLERY].generate(prompt.strip())
    except tt.ValidationError as exc:  # refused before sending: nothing was billed
        return _error(400, str(exc))
    except tt.OutcomeUnknownError as exc:
        return _error(502, f"TTAPI may or may not have accepted the job (check it): {exc}")
    except tt.TTAPIError as exc:  # errors are scrubbed of the key before they leave the SDK
        return _error(502, f"{type(exc).__name__}: {exc}")
    return web.json_response(generation.to_json(), status=202)


async def events(request: web.Request) -> web.StreamResponse:
    """The history, then every change to it, as server-sent events, until the page goes."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a buffering proxy would hold the events back
        }
    )
    await response.prepare(request)
    try:
        await response.write(b"retry: 1000\n\n")  # reconnect after 1 s, not the default 3
        async with request.app[GALLERY].watch() as (snapshot, updates):
            await _send(response, "snapshot", snapshot)
            while True:
                update: Update | None = None
                with anyio.move_on_after(KEEPALIVE):  # around the wait only, never a write
                    try:
                        update = await updates.receive()
                    except anyio.EndOfStream:  # the server stops, or this page was too slow
                        break
                if update is None:
                    await response.write(b": keep-alive\n\n")
                else:
                    await _send(response, "update", update)
    except ConnectionResetError:  # the page went away (closed, reloaded)
        pass
    return response


async def _send(response: web.StreamResponse, event: str, data: Update | list[Update]) -> None:
    # json.dumps escapes newlines, so the data is one line as the event format needs.
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def image(request: web.Request) -> web.FileResponse:
    path = request.app[GALLERY].image_of(request.match_info["job_id"])
    if path is None:
        raise web.HTTPNotFound(text="no such image (yet)")
    # A job's image never changes: the browser may keep it.
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400, immutable"})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
