"""Helpers the test modules share (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import socket

import anyio.abc

import ttapi_async as tt


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def served(tg: anyio.abc.TaskGroup, **kwargs: object) -> tt.WebhookReceiver:
    """Start a receiver on its own free port on 127.0.0.1 (the standalone mode)."""
    port = free_port()
    rec = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook", **kwargs)  # type: ignore[arg-type]
    await tg.start(rec.serve, "127.0.0.1", port)
    return rec
