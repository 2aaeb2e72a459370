"""The emulator's image host over real HTTP: served files, their expiry, and keys sent
where they must not go (``ttapi_async/testing/_cdn.py``)."""

from __future__ import annotations

import aiohttp
import anyio
import pytest
from emulator_helpers import (
    GEN,
    key,
    post_json,
)

from ttapi_async.testing import (
    Emulator,
)


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- files


async def test_image_urls_expire(http: aiohttp.ClientSession) -> None:
    """A served image answers 404 once url_ttl has passed."""
    async with Emulator(url_ttl=0.2) as emu:
        _, body = await post_json(http, emu, GEN, {"prompt": "p"})
        url = body["data"][0]["url"]
        async with http.get(url) as resp:
            assert resp.status == 200
        await anyio.sleep(0.3)
        async with http.get(url) as resp:
            assert resp.status == 404
        async with http.get(emu.file_url("missing.png")) as resp:
            assert resp.status == 404
        assert emu.counters.files_served == 1
        assert emu.counters.files_expired == 1


async def test_key_seen_on_files(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A file request that carries the key is counted (a correct SDK never sends it there)."""
    _, body = await post_json(http, emulator, GEN, {"prompt": "p"})
    url = body["data"][0]["url"]
    async with http.get(url) as resp:
        assert resp.status == 200
    assert emulator.counters.key_seen_on_files == 0
    async with http.get(url, headers=key(emulator)) as resp:
        assert resp.status == 200
    async with http.get(url, headers={"Authorization": "Bearer x"}) as resp:
        assert resp.status == 200
    assert emulator.counters.key_seen_on_files == 2
    assert emulator.counters.requests.get("/files/" + url.rsplit("/", 1)[1]) is None
