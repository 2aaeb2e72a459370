"""The official ``openai`` package talks to the emulator and parses every reply.

If these pass, the emulator's ``/v1/images/*`` speaks OpenAI's wire format as the official
client understands it (multipart field names, Bearer auth, response models, error bodies).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import aiohttp
import pytest
from PIL import Image


if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import openai

    from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    # Imported here, not at the top: about a second, paid only by a worker that runs these.
    import openai  # noqa: PLC0415

    async with openai.AsyncOpenAI(
        base_url=emulator.url + "/v1", api_key=emulator.api_key, max_retries=0
    ) as c:
        yield c


def image_bytes(fmt: str, size: tuple[int, int], *, alpha: bool = False) -> bytes:
    img = Image.new("RGBA" if alpha else "RGB", size, (0, 0, 0, 0) if alpha else (9, 9, 9))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def open_b64(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_generate_gpt_image_b64(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    """images.generate with gpt-image-1 parses into b64 data, usage and the echo fields."""
    resp = await client.images.generate(
        model="gpt-image-1",
        prompt="a sea otter",
        size="1024x1536",
        quality="medium",
        output_format="jpeg",
        n=2,
    )
    assert resp.data is not None
    assert len(resp.data) == 2
    img = open_b64(resp.data[0].b64_json)
    assert (img.format, img.size) == ("JPEG", (1024, 1536))
    assert resp.usage is not None
    assert resp.usage.output_tokens == 2 * 1584
    assert resp.usage.input_tokens_details.text_tokens > 0
    assert (resp.output_format, resp.quality, resp.size) == ("jpeg", "medium", "1024x1536")
    assert emulator.counters.billed["/v1/images/generations"] == 1


async def test_generate_dalle3_url(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    """images.generate with dall-e-3 parses a URL (that serves a PNG) and revised_prompt."""
    resp = await client.images.generate(model="dall-e-3", prompt="a lighthouse", size="1792x1024")
    assert resp.data is not None
    (item,) = resp.data
    assert item.url is not None
    assert item.url.startswith(emulator.url + "/files/")
    assert item.revised_prompt
    assert item.b64_json is None
    async with aiohttp.ClientSession() as http, http.get(item.url) as got:
        assert Image.open(io.BytesIO(await got.read())).size == (1792, 1024)
    assert emulator.counters.key_seen_on_files == 0


async def test_edit_gpt_image_two_images(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    """images.edit sends two files (tuples and BytesIO) and the emulator takes both."""
    named = io.BytesIO(image_bytes("WEBP", (40, 30)))
    named.name = "b.webp"
    resp = await client.images.edit(
        model="gpt-image-1",
        image=[("a.png", image_bytes("PNG", (64, 64)), "image/png"), named],
        prompt="put them in a gift basket",
        size="1536x1024",
        background="transparent",
    )
    assert resp.data is not None
    img = open_b64(resp.data[0].b64_json)
    assert (img.format, img.size, img.mode) == ("PNG", (1536, 1024), "RGBA")
    assert resp.usage is not None
    assert resp.usage.input_tokens_details.image_tokens == 2 * 323
    assert emulator.counters.billed["/v1/images/edits"] == 1


async def test_edit_dalle2_square_rgba(client: openai.AsyncOpenAI) -> None:
    """images.edit with dall-e-2 and a square transparent PNG parses a URL reply."""
    resp = await client.images.edit(
        model="dall-e-2",
        image=("square.png", image_bytes("PNG", (128, 128), alpha=True), "image/png"),
        prompt="add a hat",
        size="256x256",
        n=2,
    )
    assert resp.data is not None
    assert len(resp.data) == 2
    assert all(item.url for item in resp.data)


async def test_validation_error_is_bad_request(
    client: openai.AsyncOpenAI, emulator: Emulator
) -> None:
    """A rule violation surfaces as openai.BadRequestError with OpenAI's code and param."""
    import openai  # noqa: PLC0415 - see the client fixture

    with pytest.raises(openai.BadRequestError) as info:
        await client.images.generate(model="dall-e-2", prompt="p", size="1536x1024")
    assert info.value.status_code == 400
    assert info.value.code == "invalid_size"
    assert info.value.param == "size"
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.generate(model="gpt-image-1", prompt="p [moderation]")
    assert info.value.code == "moderation_blocked"
    assert emulator.counters.billed.total() == 0


async def test_bad_key_is_authentication_error(emulator: Emulator) -> None:
    """The gateway's 401 envelope surfaces as openai.AuthenticationError."""
    import openai  # noqa: PLC0415 - see the client fixture

    async with openai.AsyncOpenAI(
        base_url=emulator.url + "/v1", api_key="wrong", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.images.generate(model="gpt-image-1", prompt="p")
    assert info.value.status_code == 401
    assert "TT-API-KEY" in info.value.message


async def test_streamed_generate_and_edit(client: openai.AsyncOpenAI) -> None:
    """The official client's stream=True reads the emulator's SSE: partials, then the image."""
    stream = await client.images.generate(
        model="gpt-image-1", prompt="a sea otter", stream=True, partial_images=2
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert open_b64(events[-1].b64_json).format == "PNG"
    edit = await client.images.edit(
        model="gpt-image-1",
        image=("a.png", image_bytes("PNG", (64, 64)), "image/png"),
        prompt="a hat",
        stream=True,
        partial_images=1,
    )
    edits = [event.type async for event in edit]
    assert edits == ["image_edit.partial_image", "image_edit.completed"]
