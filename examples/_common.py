"""Shared by the examples: a client for TTAPI, or for the embedded emulator without a key."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp

import ttapi_async as tt
from ttapi_async.testing import Emulator


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def ttapi_client(**kwargs: object) -> AsyncIterator[tt.Client]:
    """``tt.Client(**kwargs)`` on TTAPI with TTAPI_API_KEY, else on a local emulator."""
    if os.environ.get("TTAPI_API_KEY"):
        async with tt.Client(**kwargs) as client:  # type: ignore[arg-type]
            yield client
        return
    async with Emulator(job_duration=(0.3, 1.0)) as emu:
        print(f"No TTAPI_API_KEY: using the embedded emulator at {emu.url}", flush=True)
        async with tt.Client(emu.api_key, base_url=emu.url, **kwargs) as client:  # type: ignore[arg-type]
            yield client


async def exercise(base_url: str) -> None:
    """What the backends' demos do: submit two jobs over HTTP, then print their results."""
    async with aiohttp.ClientSession(base_url) as http:
        ids = []
        for prompt in ("draw a lighthouse", "draw a fox"):
            async with http.post("/images", json={"prompt": prompt}) as resp:
                ids.append((await resp.json())["job_id"])
        for job_id in ids:
            async with http.get(f"/images/{job_id}", params={"wait": "30"}) as resp:
                print("result:", await resp.json(), flush=True)
