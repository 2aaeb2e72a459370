"""Streamed image calls (stream=True) through the SDK against the emulator's SSE."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
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


def sse_app(frames: list[bytes], *, gate: anyio.Event | None = None) -> web.Application:
    """A tiny server streaming ``frames`` (waiting on ``gate`` before the last one)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, frame in enumerate(frames):
            if gate is not None and i == len(frames) - 1:
                await gate.wait()
            await response.write(frame)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/images/generations", handler)
    return app


def frame(event: Mapping[str, object]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def test_an_image_of_megabytes_on_one_line_is_read(serve: object) -> None:
    """A real completed event is one data: line of megabytes (past aiohttp's line limit)."""
    b64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 3_000_000).decode()
    app = sse_app([frame({"type": "image_generation.completed", "b64_json": b64})])
    url = await serve(app)  # type: ignore[operator]
    async with tt.Client("sk-test", base_url=url) as c:
        stream = await c.images.generate(prompt="x", model="gpt-image-1", stream=True)
        async with stream:
            events = [e async for e in stream]
    assert len(events[0].decode()) == 3_000_008


async def test_a_timed_out_read_leaves_the_stream_readable(serve: object) -> None:
    gate = anyio.Event()
    partial = {
        "type": "image_generation.partial_image",
        "b64_json": "AA==",
        "partial_image_index": 0,
    }
    done = {"type": "image_generation.completed", "b64_json": "AA=="}
    url = await serve(sse_app([frame(partial), frame(done)], gate=gate))  # type: ignore[operator]
    async with tt.Client("sk-test", base_url=url) as c:
        stream = await c.images.generate(
            prompt="x", model="gpt-image-1", stream=True, partial_images=1
        )
        async with stream:
            assert (await anext(stream)).partial_image_index == 0
            with anyio.move_on_after(0.05):
                await anext(stream)  # the completed image is held back: this read times out
            gate.set()
            last = await anext(stream)
    assert last.completed


@pytest.mark.parametrize("usage", ["abc", [1], {"input_tokens": "x"}, {"total_tokens": 1e400}])
async def test_a_malformed_event_is_a_format_error_and_closes(serve: object, usage: object) -> None:
    event = {"type": "image_generation.completed", "b64_json": "AA==", "usage": usage}
    url = await serve(sse_app([frame(event)]))  # type: ignore[operator]
    async with tt.Client("sk-test", base_url=url) as c:
        stream = await c.images.generate(prompt="x", model="gpt-image-1", stream=True)
        if isinstance(usage, dict):
            with pytest.raises(tt.ResponseFormatError):
                async with stream:
                    async for _ in stream:
                        pass
        else:  # not an object: no usage, as the tolerant reader has it
            async with stream:
                assert [e.usage async for e in stream] == [None]


async def test_a_short_stream_the_server_ended_is_an_unknown_outcome(serve: object) -> None:
    done = {"type": "image_generation.completed", "b64_json": "AA=="}
    url = await serve(sse_app([frame(done), b"data: [DONE]\n\n"]))  # type: ignore[operator]
    async with tt.Client("sk-test", base_url=url) as c:
        stream = await c.images.generate(prompt="x", model="gpt-image-1", n=2, stream=True)
        with pytest.raises(tt.StreamInterruptedError) as info:
            async with stream:
                async for _ in stream:
                    pass
    assert isinstance(info.value.cause, tt.ResponseFormatError)
    assert len(info.value.partials) == 1
