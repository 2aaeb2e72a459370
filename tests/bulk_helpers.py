"""What the bulk-run tests share: clients, inputs, journal checks, gated image servers."""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from aiohttp import web
from PIL import Image

from ttapi_async import Client, GenerateRequest, GPT4oRequest, ItemState
from ttapi_async._journal import Journal
from ttapi_async.testing import Emulator


Serve = Callable[[web.Application], Awaitable[str]]


def client_for(emu: Emulator, **kw: object) -> Client:
    kw.setdefault("timeout", 30)
    return Client(emu.api_key, base_url=emu.url, **kw)  # type: ignore[arg-type]


def prompts(n: int, prefix: str = "p") -> list[GPT4oRequest]:
    return [GPT4oRequest(prompt=f"{prefix} {i}") for i in range(n)]


def generations(n: int, prefix: str = "g") -> list[GenerateRequest]:
    return [
        GenerateRequest(prompt=f"{prefix} {i}", model="gpt-image-1", quality="low")
        for i in range(n)
    ]


def billed(emu: Emulator) -> int:
    return sum(emu.counters.submits_by_prompt.values())


def journal_states(path: Path) -> tuple[dict[int, ItemState], int]:
    """Every row's state, and how many rows opening the journal found in ``submitting``."""
    with Journal.open(path) as j:
        return {i: e.state for i, e in j.entries().items()}, j.recovered


def assert_journal_matches_the_bill(path: Path, reqs: list[GPT4oRequest], emu: Emulator) -> None:
    """Billed items are submitted or done, the rest pending (or never reached): none in between."""
    states, recovered = journal_states(path)
    assert recovered == 0
    sent = {i for i, r in enumerate(reqs) if emu.counters.submits_by_prompt[r.prompt]}
    assert {i for i, s in states.items() if s in {ItemState.SUBMITTED, ItemState.DONE}} == sent
    assert {i for i, s in states.items() if s is ItemState.PENDING} == set(states) - sent


def a_png() -> bytes:
    """A real PNG of about 270 KB (noise does not compress): several 64 KiB chunks."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(buf, "PNG")
    return buf.getvalue()


def gated_images(
    body: bytes, started: anyio.Event, release: anyio.Event, app: web.Application | None = None
) -> web.Application:
    """Serve ``body`` at /gated.png: 70,000 bytes, then the rest once ``release`` is set."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "image/png", "Content-Length": str(len(body))}
        )
        await resp.prepare(request)
        await resp.write(body[:70_000])
        started.set()
        await release.wait()
        await resp.write(body[70_000:])
        return resp

    app = app if app is not None else web.Application()
    app.router.add_get("/gated.png", handler)
    return app
