"""Tiny aiohttp apps with scripted replies, and a client pointed at one (plain helpers).

Shared by the tests of the transport, the sender, the resources, the inputs and the
client; the ``serve`` fixture that starts an app on 127.0.0.1 lives in conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

import ttapi_async as tt


Serve = Callable[[web.Application], Awaitable[str]]
FAST = tt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)
OK_IMAGES = {"created": 1, "data": [{"b64_json": "aGk="}]}
ON_QUEUE = {"status": "ON_QUEUE", "message": None, "jobId": "j1", "data": {"imageUrl": None}}


class Recorder:
    """An app whose replies are scripted per call; it records every request it sees."""

    def __init__(self, *replies: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.replies = list(replies)
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "query": dict(request.query),
            }
        )
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        return await reply(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def reply_json(
    obj: object, status: int = 200, headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(obj, status=status, headers=headers)

    return handler


def reply_raw(
    raw: bytes, status: int = 200
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, status=status, content_type="application/json")

    return handler


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering."""
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0.05)
    return web.Response()


def sleeper(seconds: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(OK_IMAGES)

    return handler


def gated(release: asyncio.Event) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A reply held until ``release`` is set: its call keeps its connection until then."""

    async def handler(_: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response(OK_IMAGES)

    return handler


def client(url: str, **kwargs: Any) -> tt.Client:
    kwargs.setdefault("retry", FAST)
    return tt.Client("test-key-123", base_url=url, **kwargs)
