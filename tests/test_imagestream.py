"""Streamed image calls (stream=True) through the SDK against the emulator's SSE."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

import ttapi_async as tt
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", tt.RetryPolicy(initial_delay=0.01, max_delay=0.05))
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


async def test_partials_then_the_image_arrive_as_they_come(emulator: Emulator) -> None:
    async with sdk(emulator) as c:
        started = time.monotonic()
        stream = await c.images.generate(
            prompt="a fox", model="gpt-image-1", quality="low", stream=True, partial_images=2
        )
        async with stream:
            events = []
            arrivals = []
            async for event in stream:
                events.append(event)
                arrivals.append(time.monotonic() - started)
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [e.partial_image_index for e in events] == [0, 1, None]
    assert events[-1].usage is not None
    with Image.open(io.BytesIO(events[-1].decode())) as img:
        assert img.format == "PNG"
    # Handed over as they arrive (the emulator spaces them), not all at the end.
    assert arrivals[-1] - arrivals[0] > 0.005
    assert stream.completed == [events[-1]]


async def test_n_images_interleave_and_an_edit_streams_too(emulator: Emulator) -> None:
    async with sdk(emulator) as c:
        stream = await c.images.generate(
            prompt="two foxes", model="gpt-image-1.5", n=2, stream=True, partial_images=1
        )
        async with stream:
            types = [e.type async for e in stream]
        assert types.count("image_generation.completed") == 2
        edit = await c.images.edit(
            image=png((64, 64)), prompt="a hat", model="gpt-image-1", stream=True
        )
        async with edit:
            got = [e async for e in edit]
    assert [e.type for e in got] == ["image_edit.completed"]


async def test_a_stream_cut_midway_is_an_unknown_outcome_with_what_came(
    emulator: Emulator,
) -> None:
    async with sdk(emulator) as c:
        stream = await c.images.generate(
            prompt="[stream-cut] a fox", model="gpt-image-1", stream=True, partial_images=2
        )
        received = []
        with pytest.raises(tt.StreamInterruptedError) as info:
            async with stream:
                async for event in stream:
                    received.append(event)
    assert isinstance(info.value, tt.OutcomeUnknownError)
    assert [e.type for e in info.value.partials] == ["image_generation.partial_image"]
    assert info.value.partials == tuple(received)
    assert emulator.counters.billed["/v1/images/generations"] == 1  # never retried


async def test_an_error_event_is_a_typed_error(emulator: Emulator) -> None:
    async with sdk(emulator) as c:
        stream = await c.images.generate(
            prompt="[stream-error] a fox", model="gpt-image-1", stream=True, partial_images=2
        )
        with pytest.raises(tt.APIStatusError, match="could not be generated"):
            async with stream:
                async for _ in stream:
                    pass


async def test_a_429_before_the_stream_is_retried(emulator: Emulator) -> None:
    emulator.add_fault(Fault(route="/v1/images/generations", status=429, count=1))
    async with sdk(emulator) as c:
        stream = await c.images.generate(prompt="a fox", model="gpt-image-1", stream=True)
        async with stream:
            events = [e async for e in stream]
    assert [e.type for e in events] == ["image_generation.completed"]
    assert c.stats.retries == 1


async def test_rules_are_checked_before_sending(emulator: Emulator) -> None:
    async with sdk(emulator) as c:
        with pytest.raises(tt.ValidationError, match="stream"):
            await c.images.generate(prompt="x", model="dall-e-2", stream=True)
        with pytest.raises(tt.ValidationError, match="0 to 3"):
            await c.images.generate(prompt="x", model="gpt-image-1", stream=True, partial_images=4)
        with pytest.raises(tt.ValidationError, match="stream=True"):
            await c.images.generate(prompt="x", model="gpt-image-1", partial_images=1)
    assert emulator.counters.requests["/v1/images/generations"] == 0


async def test_a_buffered_json_reply_is_read_as_completed_events(serve: object) -> None:
    """A server that answers stream=True with plain JSON (it buffered the stream)."""
    body = {"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}], "usage": {"total_tokens": 3}}

    async def handler(request: web.Request) -> web.Response:
        assert (await request.json())["stream"] is True
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/images/generations", handler)
    url = await serve(app)  # type: ignore[operator]
    async with tt.Client("sk-test", base_url=url) as c:
        stream = await c.images.generate(prompt="x", model="gpt-image-1", stream=True)
        async with stream:
            events = [e async for e in stream]
    assert [e.type for e in events] == ["image_generation.completed"]
    assert events[0].usage is not None


async def test_completed_events_are_saved(emulator: Emulator, tmp_path: Path) -> None:
    async with sdk(emulator) as c:
        stream = await c.images.generate(
            prompt="a fox", model="gpt-image-1", stream=True, partial_images=1
        )
        async with stream:
            events = [e async for e in stream]
        saved = await c.save(events, tmp_path, stem="fox")
    assert [s.path.name for s in saved] == ["fox-0.png"]
