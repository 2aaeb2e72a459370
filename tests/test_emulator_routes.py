"""The emulator's routes over real HTTP: the wire shapes of each endpoint, real images, and
refusals in each route's shape (``ttapi_async/testing/_routes.py``)."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import aiohttp
import pytest
from emulator_helpers import (
    DALLE3,
    EDIT,
    FETCH,
    GEN,
    MAGIC,
    PIL_FORMAT,
    SUBMIT,
    decode,
    edit_form,
    fetch,
    key,
    png,
    post_edit,
    post_json,
    submit,
    webp,
)
from PIL import Image

from ttapi_async.testing import (
    Emulator,
)


pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- /v1 generations


async def test_gpt_image_generation_shape(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """gpt-image-1 answers the raw OpenAI body: b64 items, usage and the echo fields."""
    status, body = await post_json(
        http, emulator, GEN, {"model": "gpt-image-1", "prompt": "a sea otter", "quality": "low"}
    )
    assert status == 200
    assert set(body) == {
        "created",
        "data",
        "usage",
        "background",
        "output_format",
        "quality",
        "size",
    }
    assert isinstance(body["created"], int)
    assert abs(body["created"] - time.time()) < 5
    assert [set(item) for item in body["data"]] == [{"b64_json"}]
    usage = body["usage"]
    assert set(usage) == {"input_tokens", "input_tokens_details", "output_tokens", "total_tokens"}
    assert set(usage["input_tokens_details"]) == {"image_tokens", "text_tokens"}
    assert usage["output_tokens"] == 272
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert (body["background"], body["output_format"], body["quality"], body["size"]) == (
        "opaque",
        "png",
        "low",
        "1024x1024",
    )
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["png"])
    assert (img.format, img.size) == ("PNG", (1024, 1024))


@pytest.mark.parametrize(
    ("fmt", "size", "expected"),
    [
        ("png", "1536x1024", (1536, 1024)),
        ("jpeg", "1024x1536", (1024, 1536)),
        ("webp", "auto", (1024, 1024)),
        ("jpeg", "1024x1024", (1024, 1024)),
    ],
)
async def test_gpt_image_formats_are_real(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    fmt: str,
    size: str,
    expected: tuple[int, int],
) -> None:
    """The bytes are a real image of the requested format and size."""
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "gpt-image-1", "prompt": "p", "output_format": fmt, "size": size},
    )
    assert status == 200, body
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC[fmt])
    assert img.format == PIL_FORMAT[fmt]
    assert img.size == expected
    assert img.mode in {"RGB", "P"}  # opaque: a PNG with its prompt is drawn with a palette
    assert "transparency" not in img.info
    assert body["size"] == f"{expected[0]}x{expected[1]}"


@pytest.mark.parametrize("fmt", ["png", "webp"])
async def test_transparent_background_is_rgba(
    emulator: Emulator, http: aiohttp.ClientSession, fmt: str
) -> None:
    """background=transparent gives an RGBA image whose corner is see-through."""
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "gpt-image-1", "prompt": "p", "background": "transparent", "output_format": fmt},
    )
    assert status == 200, body
    _, img = decode(body["data"][0]["b64_json"])
    assert img.mode == "RGBA"
    pixel = img.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    assert pixel[3] == 0
    assert body["background"] == "transparent"


async def test_dalle2_is_the_default_and_returns_urls(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """No model means dall-e-2, which answers served URLs of real PNGs and no usage."""
    status, body = await post_json(http, emulator, GEN, {"prompt": "p", "size": "256x256", "n": 2})
    assert status == 200, body
    assert set(body) == {"created", "data"}
    urls = [item["url"] for item in body["data"]]
    assert len(set(urls)) == 2
    assert all(u.startswith(emulator.url + "/files/") for u in urls)
    async with http.get(urls[0]) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        data = await resp.read()
        assert resp.content_length == len(data)
    assert Image.open(io.BytesIO(data)).size == (256, 256)
    assert emulator.counters.files_served == 1


async def test_dalle3_url_with_revised_prompt_or_b64(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """dall-e-3 adds revised_prompt, and honours response_format=b64_json."""
    status, body = await post_json(
        http, emulator, GEN, {"model": "dall-e-3", "prompt": "p", "size": "1792x1024"}
    )
    assert status == 200
    (item,) = body["data"]
    assert set(item) == {"url", "revised_prompt"}
    assert "p" in item["revised_prompt"]
    status, body = await post_json(
        http,
        emulator,
        GEN,
        {"model": "dall-e-3", "prompt": "p", "size": "1024x1792", "response_format": "b64_json"},
    )
    assert status == 200
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (1024, 1792)


async def test_an_unknown_model_is_refused_in_openais_shape(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A typo'd model gets OpenAI's 400 naming ``model`` on every /v1 route: it would be
    refused, or billed as something else, at TTAPI."""
    status, body = await post_json(http, emulator, GEN, {"model": "gpt-image-9", "prompt": "p"})
    assert status == 400
    assert body["error"]["param"] == "model"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'gpt-image-9'" in body["error"]["message"]
    assert "'gpt-image-1'" in body["error"]["message"]  # the accepted names are listed
    edit = {"model": "gpt-image-9", "prompt": "p", "images": [{"image_url": "https://x/a.png"}]}
    status, body = await post_json(http, emulator, "/v1/images/edits", edit)
    assert (status, body["error"]["param"]) == (400, "model")
    async with http.post(
        emulator.url + "/openai/gpt/generations",
        json={"prompt": "p", "model": "gpt-image-9"},
        headers={"TT-API-KEY": emulator.api_key},
    ) as r:
        assert r.status == 400
        assert "gpt-image-9" in (await r.json())["message"]
    assert not emulator.charges  # nothing was billed


async def test_an_extra_model_passes_through_like_gpt_image(http: aiohttp.ClientSession) -> None:
    """A name given as an extra model is accepted and answers the gpt-image way; one name
    given as a string is that name (not its letters)."""
    async with Emulator(extra_models="gpt-image-9") as emulator:
        assert emulator.extra_models == frozenset({"gpt-image-9"})
        await extra_model_answers(emulator, http)


async def test_a_model_that_is_not_a_string_is_a_400(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    edit = {"model": ["a"], "prompt": "p", "images": [{"image_url": "https://x/a.png"}]}
    status, body = await post_json(http, emulator, "/v1/images/edits", edit)
    assert (status, body["error"]["param"]) == (400, "model")


async def extra_model_answers(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    status, body = await post_json(
        http, emulator, GEN, {"model": "gpt-image-9", "prompt": "p", "size": "640x480"}
    )
    assert status == 200, body
    assert "usage" in body
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (640, 480)


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (
            {"model": "gpt-image-1", "prompt": "p", "response_format": "url"},
            "response_format",
            "unknown_parameter",
            "Unknown parameter: 'response_format'.",  # OpenAI's own words (wire section 9)
        ),
        (
            {"model": "dall-e-2", "prompt": "p", "response_format": "png"},
            "response_format",
            "invalid_value",
            (
                "Invalid 'response_format' for dall-e-2: 'png'. "
                "Supported values are: 'b64_json', 'url'."
            ),
        ),
        (
            {"model": "dall-e-2", "prompt": "p", "size": "1536x1024"},
            "size",
            "invalid_size",
            (
                "The size is not supported by this model. "
                "dall-e-2 supports '1024x1024', '256x256', '512x512'."
            ),
        ),
        (
            {"model": "dall-e-2", "prompt": "x" * 1001},
            "prompt",
            "string_above_max_length",
            (
                "Invalid 'prompt': string too long. Expected a string with maximum length 1000, "
                "but got a string with length 1001 instead."
            ),
        ),
        (
            {"model": "gpt-image-1", "prompt": "p", "n": 11},
            "n",
            "invalid_value",
            "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead.",
        ),
        (
            {"model": "gpt-image-1"},
            "prompt",
            "invalid_value",
            "Missing required parameter: 'prompt'.",
        ),
        (
            {"model": "dall-e-2", "prompt": "p", "background": "transparent"},
            "background",
            "invalid_value",
            "Invalid 'background': dall-e-2 does not take it (GPT image models only).",
        ),
    ],
    ids=[
        "gpt-response-format",
        "dalle2-response-format",
        "dalle2-size",
        "dalle2-long-prompt",
        "gpt-n",
        "no-prompt",
        "dalle2-background",
    ],
)
async def test_generation_validation_errors_have_openai_shape(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    *,
    body: dict[str, Any],
    param: str,
    code: str,
    message: str,
) -> None:
    """A broken rule is a 400 in OpenAI's error shape, with the emulator's rule message."""
    status, reply = await post_json(http, emulator, GEN, body)
    assert status == 400
    assert reply == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    assert emulator.counters.billed.total() == 0


async def test_gpt_only_parameter_without_model_is_gpt_image(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """No model and a GPT-only parameter: OpenAI serves it with gpt-image-1 (wire section 8)."""
    status, body = await post_json(
        http, emulator, GEN, {"prompt": "p", "background": "transparent", "output_format": "webp"}
    )
    assert status == 200, body
    assert "usage" in body
    assert body["background"] == "transparent"
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["webp"])
    assert img.mode == "RGBA"


async def test_malformed_json_is_an_openai_400(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A body that is not a JSON object is a 400 in OpenAI's shape."""
    for raw in (b'{"prompt": ', b"[1, 2]"):
        async with http.post(emulator.url + GEN, data=raw, headers=key(emulator)) as resp:
            assert resp.status == 400
            err = (await resp.json())["error"]
            assert err["type"] == "invalid_request_error"
            assert "JSON" in err["message"]


@pytest.mark.parametrize(
    ("model", "code"),
    [("gpt-image-1", "moderation_blocked"), ("dall-e-3", "content_policy_violation")],
)
async def test_moderation_marker_is_refused(
    emulator: Emulator, http: aiohttp.ClientSession, model: str, code: str
) -> None:
    """A prompt with [moderation] is refused by the safety system and not billed."""
    status, reply = await post_json(
        http, emulator, GEN, {"model": model, "prompt": "a [moderation] b"}
    )
    assert status == 400
    assert reply["error"]["code"] == code
    assert reply["error"]["param"] is None
    assert "safety system" in reply["error"]["message"]
    if model == "gpt-image-1":
        assert reply["error"]["type"] == "image_generation_user_error"
    assert emulator.counters.billed.total() == 0


async def test_sync_latency_delays_replies(http: aiohttp.ClientSession) -> None:
    """sync_latency holds /v1 and DALL-E 3 replies, and can change at runtime."""
    async with Emulator(sync_latency=0.2) as emu:
        start = time.perf_counter()
        await post_json(http, emu, DALLE3, {"prompt": "p", "size": "1024x1024"})
        assert time.perf_counter() - start >= 0.2
        emu.sync_latency = 0.0
        start = time.perf_counter()
        await post_json(http, emu, GEN, {"prompt": "p"})
        assert time.perf_counter() - start < 0.2


# --------------------------------------------------------------------------- /v1 edits


async def test_gpt_image_edit_with_several_images(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """gpt-image-1 edits take several image[] files and answer b64 + usage counting them."""
    form = edit_form(
        {"model": "gpt-image-1", "prompt": "gift basket", "n": "2", "size": "1536x1024"},
        [("image[]", png(64, 64), "image/png"), ("image[]", webp(32, 48), "image/webp")],
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert len(body["data"]) == 2
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 2 * 323
    _, img = decode(body["data"][0]["b64_json"])
    assert img.size == (1536, 1024)
    assert emulator.counters.billed[EDIT] == 1


async def test_edit_accepts_repeated_image_field(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Several files under a repeated ``image`` field count as several images."""
    form = edit_form(
        {"model": "gpt-image-1", "prompt": "p", "output_format": "webp"},
        [("image", png(8, 8), "image/png")] * 3,
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 3 * 323
    raw, img = decode(body["data"][0]["b64_json"])
    assert raw.startswith(MAGIC["webp"])
    assert img.size == (1024, 1024)


async def test_dalle2_edit_with_transparent_square_png(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """dall-e-2 edits a square RGBA PNG and answers a URL of the asked size."""
    form = edit_form(
        {"model": "dall-e-2", "prompt": "p", "size": "512x512"},
        [("image", png(64, 64, alpha=True), "image/png")],
    )
    status, body = await post_edit(http, emulator, form)
    assert status == 200, body
    assert "usage" not in body
    async with http.get(body["data"][0]["url"]) as resp:
        assert Image.open(io.BytesIO(await resp.read())).size == (512, 512)


@pytest.mark.parametrize(
    ("fields", "images", "mask", "param"),
    [
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 32, alpha=True)], None, "image"),
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 64)], None, "image"),
        ({"model": "dall-e-2", "prompt": "p"}, [png(64, 64)], png(32, 32, alpha=True), "mask"),
        ({"model": "gpt-image-1", "prompt": "p", "n": "two"}, [png(8, 8)], None, "n"),
        (
            {"model": "gpt-image-1", "prompt": "p", "output_compression": "x"},
            [png(8, 8)],
            None,
            "output_compression",
        ),
        ({"model": "gpt-image-1", "prompt": "p"}, [], None, "image"),
        ({"model": "dall-e-3", "prompt": "p"}, [png(8, 8)], None, "model"),
        ({"model": "gpt-image-1", "prompt": "p"}, [b"GIF89a" + bytes(20)], None, "image"),
    ],
)
async def test_edit_validation_errors(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    *,
    fields: dict[str, str],
    images: list[bytes],
    mask: bytes | None,
    param: str,
) -> None:
    """Edits are checked (images sniffed from their bytes) and refused in OpenAI's shape."""
    form = edit_form(fields, [("image", b, "image/png") for b in images], mask)
    status, body = await post_edit(http, emulator, form)
    assert status == 400, body
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"
    assert emulator.counters.billed.total() == 0


async def test_json_edit_by_reference(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A JSON edit (2026 section 4): images[] by https URL, data: URL or file id."""
    data_url = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()
    body = {
        "prompt": "a hat",
        "images": [
            {"image_url": "https://cdn.example/a.png"},
            {"image_url": data_url},
            {"file_id": "file-1"},
        ],
        "mask": {"image_url": "https://cdn.example/m.png"},
        "input_fidelity": "high",
    }
    status, reply = await post_json(http, emulator, EDIT, body)  # no model: gpt-image-1.5
    assert status == 200, reply
    assert reply["usage"]["input_tokens_details"]["image_tokens"] > 0
    assert emulator.counters.billed[EDIT] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "dall-e-2", "images": [{"image_url": "https://a.example/x.png"}]}, "model"),
        ({"images": []}, "images"),
        ({"images": [{"image_url": "https://a", "file_id": "f"}]}, "images[0]"),
        ({"images": [{"image_url": "ftp://a.example/x.png"}]}, "images[0]"),
        ({"images": [{"image_url": "data:image/png;base64,!!"}]}, "images[0]"),
        ({"images": [{"file_id": "f"}], "mask": {"url": "x"}}, "mask"),
        ({"images": [{"file_id": "f"}], "input_fidelity": "max"}, "input_fidelity"),
    ],
)
async def test_json_edit_refusals(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    status, reply = await post_json(http, emulator, EDIT, {"prompt": "p", **body})
    assert status == 400, reply
    assert reply["error"]["param"] == param
    assert emulator.counters.billed.total() == 0


async def test_edit_needs_multipart_or_json(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Any other body is refused with a 400 naming the expected content type."""
    async with http.post(
        emulator.url + EDIT,
        data=b"prompt=p",
        headers={**key(emulator), "Content-Type": "text/plain"},
    ) as resp:
        assert resp.status == 400
        assert "multipart/form-data" in (await resp.json())["error"]["message"]


# --------------------------------------------------------------------------- legacy DALL-E 3


async def test_legacy_dalle3_success_envelope(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The legacy route wraps the OpenAI body in the TTAPI envelope."""
    status, body = await post_json(http, emulator, DALLE3, {"prompt": "a cat", "size": "1024x1792"})
    assert status == 200
    assert body["status"] == "SUCCESS"
    assert body["message"] == "success"
    inner = body["data"]
    assert isinstance(inner["created"], int)
    (item,) = inner["data"]
    assert set(item) == {"url", "revised_prompt"}
    async with http.get(item["url"]) as resp:
        assert Image.open(io.BytesIO(await resp.read())).size == (1024, 1792)
    assert emulator.counters.billed[DALLE3] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "a cat"}, "Missing required parameter: 'size'."),
        (
            {"prompt": "a", "size": "1024x1024", "n": 2},
            "Invalid 'n': integer above maximum value. Expected a value <= 1, but got 2 instead.",
        ),
        ({"size": "1024x1024"}, "Missing required parameter: 'prompt'."),
    ],
    ids=["no-size", "n-2", "no-prompt"],
)
async def test_legacy_dalle3_errors_are_envelopes(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    """Rule violations on the legacy route are 400 envelopes with the rule's message."""
    status, reply = await post_json(http, emulator, DALLE3, body)
    assert status == 400
    assert reply == {"status": "FAILED", "message": f"Parameter error: {message}", "data": None}


# --------------------------------------------------------------------------- 4o submit and fetch


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "prompt"),
        # The emulator names parameters by their wire names.
        ({"prompt": "p", "hookUrl": "ftp://x"}, "hookUrl"),
        ({"prompt": "p", "referImages": "https://x/a.png"}, "referImages"),
    ],
)
async def test_submit_validation_errors_are_envelopes(
    emulator: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str
) -> None:
    """4o submit refuses bad parameters with a 400 envelope and creates nothing."""
    status, reply = await post_json(http, emulator, SUBMIT, body)
    assert status == 400
    assert reply["status"] == "FAILED"
    assert reply["data"] is None
    assert fragment in reply["message"]
    assert emulator.jobs == {}


async def test_fetch_by_post_json_and_form(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Fetch also takes jobId in a JSON body or a form body."""
    job_id = await submit(http, emulator)
    status, body = await post_json(http, emulator, FETCH, {"jobId": job_id})
    assert (status, body["jobId"]) == (200, job_id)
    async with http.post(
        emulator.url + FETCH, data={"jobId": job_id}, headers=key(emulator)
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["jobId"] == job_id
    assert emulator.jobs[job_id].fetches == 2


async def test_fetch_errors(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Unknown and foreign jobs are 404 envelopes; a missing jobId is a 400 envelope."""
    not_found = {"status": "FAILED", "message": "job not found", "data": None}
    assert await fetch(http, emulator, "nope") == (404, not_found)
    job_id = await submit(http, emulator)
    emulator.api_key = "another-key"
    assert await fetch(http, emulator, job_id) == (404, not_found)
    async with http.get(emulator.url + FETCH, headers=key(emulator)) as resp:
        assert resp.status == 400
        body = await resp.json()
        assert (body["status"], body["data"]) == ("FAILED", None)
        assert "jobId" in body["message"]


def top_strip(img: Image.Image) -> bytes:
    """The pixels of the picture's top eighth, where the prompt is written."""
    width, height = img.size
    return img.convert("RGB").crop((0, 0, width, height // 8)).tobytes()


async def test_pictures_show_their_prompt(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Each prompt draws its own picture (so outputs can be told apart); the same prompt the
    same picture; with draw_prompts off, one shared picture per kind."""

    async def picture(prompt: str) -> tuple[bytes, Image.Image]:
        body = {"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024"}
        status, reply = await post_json(http, emulator, GEN, body)
        assert status == 200, reply
        return decode(reply["data"][0]["b64_json"])

    fox, fox_img = await picture("a red fox in the snow")
    owl, owl_img = await picture("an owl at night")
    assert fox != owl
    assert top_strip(fox_img) != top_strip(owl_img)  # the difference is the written prompt
    assert (await picture("a red fox in the snow"))[0] == fox
    emulator.draw_prompts = False
    plain_fox, _ = await picture("a red fox in the snow")
    plain_owl, _ = await picture("an owl at night")
    assert plain_fox == plain_owl != fox
