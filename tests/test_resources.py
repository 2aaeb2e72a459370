"""The resources (images, dalle3, gpt4o, jobs): every endpoint through the SDK against the
emulator over real HTTP on 127.0.0.1, and uploads and local checks against tiny apps."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from servers import OK_IMAGES, Recorder, client, reply_json

import ttapi_async as tt
from ttapi_async._protocol import API_KEY_HEADER
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio

FAST = tt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
Serve = Callable[[web.Application], Awaitable[str]]


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", FAST)
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("kwargs", "fmt", "size", "mode"),
    [
        ({"model": "gpt-image-1", "quality": "low"}, "PNG", (1024, 1024), "RGB"),
        (
            {
                "model": "gpt-image-1",
                "size": "1536x1024",
                "output_format": "jpeg",
                "output_compression": 60,
            },
            "JPEG",
            (1536, 1024),
            "RGB",
        ),
        (
            {
                "model": "gpt-image-1",
                "size": "1024x1536",
                "background": "transparent",
                "output_format": "webp",
            },
            "WEBP",
            (1024, 1536),
            "RGBA",
        ),
        (
            {"model": "gpt-image-1", "moderation": "low", "n": 3, "user": "u-1"},
            "PNG",
            (1024, 1024),
            "RGB",
        ),
        (
            {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json", "n": 2},
            "PNG",
            (256, 256),
            "RGB",
        ),
        ({"model": "gpt-image-1.5", "size": "1536x1024"}, "PNG", (1536, 1024), "RGB"),
        ({"model": "gpt-image-2", "size": "1536x864"}, "PNG", (1536, 864), "RGB"),
    ],
)
async def test_generate_returns_real_images(
    emulator: Emulator, kwargs: dict[str, object], fmt: str, size: tuple[int, int], mode: str
) -> None:
    """generate sends each parameter and gets real images of the requested format and size."""
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a red fox", **kwargs)  # type: ignore[call-overload]
    assert len(r.data) == kwargs.get("n", 1)
    img = open_image(r.data[0].decode())
    assert (img.format, img.size) == (fmt, size)
    assert img.mode.startswith(mode) or (mode == "RGB" and img.mode in {"RGB", "P", "L"})
    if str(kwargs["model"]).startswith("gpt-image"):
        assert r.usage is not None
        assert r.usage.total_tokens > 0
    else:
        assert r.usage is None
    assert emulator.counters.billed["/v1/images/generations"] == 1


async def test_generate_url_images_download_without_key(emulator: Emulator, tmp_path: Path) -> None:
    """dall-e-3 returns URLs with a revised prompt; save downloads them without the key."""
    async with sdk(emulator) as c:
        r = await c.images.generate(
            prompt="a lighthouse", model="dall-e-3", size="1792x1024", quality="hd", style="natural"
        )
        assert r.data[0].url is not None
        assert r.data[0].revised_prompt
        saved = await c.save(r, tmp_path, stem="lighthouse")
    assert [s.path.name for s in saved] == ["lighthouse-0.png"]
    assert open_image(saved[0].path.read_bytes()).size == (1792, 1024)
    assert (saved[0].width, saved[0].height) == (1792, 1024)
    assert saved[0].sidecar == tmp_path / "lighthouse-0.png.json"
    assert emulator.counters.files_served == 1
    assert emulator.counters.key_seen_on_files == 0
    assert not list(tmp_path.glob(".part-*"))


async def test_model_omitted_uses_server_default(emulator: Emulator) -> None:
    """With no model the server default (dall-e-2) applies, and its rules are checked first."""
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a cat", size="512x512", response_format="b64_json")
        assert open_image(r.data[0].decode()).size == (512, 512)
        with pytest.raises(tt.ValidationError, match="dall-e-2"):
            await c.images.generate(prompt="a cat", quality="high")
    assert emulator.counters.requests["/v1/images/generations"] == 1


async def test_unknown_model_and_extra_body_pass_through(emulator: Emulator) -> None:
    """A model the SDK does not know is sent unchecked, with extra fields."""
    async with sdk(emulator) as c:
        r = await c.images.generate(
            prompt="a cat", model="gpt-image-1.5", extra_body={"partial_images": 0}
        )
    assert r.data


async def test_edit_multiple_images_and_mask(emulator: Emulator, tmp_path: Path) -> None:
    """gpt-image-1 edits several images (path, bytes, file) with a mask of the first's size."""
    first = tmp_path / "first.png"
    first.write_bytes(png((64, 64)))
    webp = io.BytesIO()
    Image.new("RGB", (32, 48)).save(webp, "WEBP")
    async with sdk(emulator) as c:
        r = await c.images.edit(
            image=[first, webp.getvalue(), io.BytesIO(png((10, 10)))],
            mask=png((64, 64), "RGBA"),
            prompt="put them in a gift basket",
            model="gpt-image-1",
            size="1024x1024",
            quality="medium",
            n=2,
        )
    assert len(r.data) == 2
    assert open_image(r.data[0].decode()).size == (1024, 1024)
    assert r.usage is not None


async def test_edit_with_the_2026_models_and_input_fidelity(emulator: Emulator) -> None:
    """gpt-image-2 edits at a free size, with input_fidelity; a bad size is refused first."""
    async with sdk(emulator) as c:
        r = await c.images.edit(
            image=png((64, 64)),
            prompt="a scarf",
            model="gpt-image-2",
            size="1280x720",
            input_fidelity="high",
            moderation="low",
        )
        assert open_image(r.data[0].decode()).size == (1280, 720)
        with pytest.raises(tt.ValidationError, match="multiples of 16") as info:
            await c.images.edit(
                image=png((64, 64)), prompt="x", model="gpt-image-2", size="1000x1000"
            )
        assert info.value.param == "size"
    assert emulator.counters.requests["/v1/images/edits"] == 1


async def test_json_edit_by_url_data_url_and_file_id(emulator: Emulator) -> None:
    """Images given as tt.ImageURL / tt.FileID go as a JSON edit (images[]), and work."""
    data_url = "data:image/png;base64," + base64.b64encode(png((64, 64))).decode()
    async with sdk(emulator) as c:
        r = await c.images.edit(
            image=[tt.ImageURL("https://cdn.example/a.png"), tt.ImageURL(data_url)],
            mask=tt.ImageURL("https://cdn.example/mask.png"),
            prompt="a scarf",
            model="gpt-image-1",
            input_fidelity="high",
        )
        assert len(r.data) == 1
        assert r.usage is not None
        r2 = await c.images.edit(image=tt.FileID("file-abc123"), prompt="a hat")  # gpt-image-1.5
        assert len(r2.data) == 1
    assert emulator.counters.requests["/v1/images/edits"] == 2
    assert repr(tt.ImageURL(data_url)).endswith("...')")  # a data: URL is not dumped whole


@pytest.mark.parametrize(
    ("kwargs", "param", "rule"),
    [
        ({"image": [tt.ImageURL("https://x.example/a.png"), b"\x89PNG"]}, "image", "none of them"),
        ({"image": tt.ImageURL("http://x.example/a.png")}, "image", "https://"),
        ({"image": tt.ImageURL("data:image/png;base64,@@@")}, "image", "base64"),
        ({"image": tt.ImageURL("https://x.example/a.png"), "model": "dall-e-2"}, "image", "upload"),
        ({"image": tt.FileID("  ")}, "image", "file id"),
        (
            {
                "image": tt.ImageURL(
                    "data:image/gif;base64," + base64.b64encode(b"GIF89a....").decode()
                )
            },
            "image",
            "png",
        ),
    ],
)
async def test_json_edit_rules_checked_before_sending(
    emulator: Emulator, kwargs: dict[str, Any], param: str, rule: str
) -> None:
    async with sdk(emulator) as c:
        with pytest.raises(tt.ValidationError, match=rule) as info:
            await c.images.edit(prompt="x", **kwargs)
    assert info.value.param == param
    assert emulator.counters.requests["/v1/images/edits"] == 0


async def test_edit_dalle2_square_png(emulator: Emulator) -> None:
    """dall-e-2 edits one square PNG with transparency and returns a URL."""
    async with sdk(emulator) as c:
        r = await c.images.edit(image=png((256, 256), "RGBA"), prompt="add a moon", size="256x256")
        assert r.data[0].url is not None
        data = await c.download(r.data[0].url)
    assert open_image(data).size == (256, 256)


async def test_edit_rules_checked_before_sending(emulator: Emulator) -> None:
    """A mask of the wrong size and a non-square dall-e-2 image are refused locally."""
    async with sdk(emulator) as c:
        with pytest.raises(tt.ValidationError, match="mask"):
            await c.images.edit(
                image=png((64, 64)), mask=png((32, 32), "RGBA"), prompt="x", model="gpt-image-1"
            )
        with pytest.raises(tt.ValidationError, match="square"):
            await c.images.edit(image=png((64, 32), "RGBA"), prompt="x")
    assert emulator.counters.requests["/v1/images/edits"] == 0


async def test_dalle3_legacy_route_unwraps_envelope(emulator: Emulator) -> None:
    """The legacy route's envelope is unwrapped into the same ImagesResponse."""
    async with sdk(emulator) as c:
        r = await c.dalle3.generate(prompt="a cat", size="1024x1792", quality="hd")
    assert r.data[0].url is not None
    assert r.data[0].revised_prompt
    assert emulator.counters.billed["/openai/v1/images/generations"] == 1


async def test_4o_job_lifecycle(emulator: Emulator) -> None:
    """submit returns a Job handle; fetch goes ON_QUEUE then SUCCESS with the documented fields."""
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(
            prompt="draw a lighthouse", refer_images="https://cdn.example/a.png"
        )
        assert isinstance(job, tt.Job)
        first = await c.gpt4o.fetch(job.job_id)
        assert first.status is tt.JobStatus.ON_QUEUE
        assert not first.is_terminal
        while not (snap := await job.fetch()).is_terminal:
            await asyncio.sleep(0.05)
    assert snap.succeeded
    assert snap.job_id == job.job_id
    assert snap.image_url is not None
    assert snap.image_url.startswith(emulator.url)
    assert snap.quota == 2.0
    assert snap.finish_time is not None
    assert snap.finish_time.tzinfo is not None
    assert snap.refer_images == ("https://cdn.example/a.png",)
    assert snap.prompt == "draw a lighthouse"


async def test_4o_failed_job_is_a_snapshot(emulator: Emulator) -> None:
    """A job that fails comes back as FAILED with the reason, not as an exception."""
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="[fail] draw")
        while not (snap := await job.fetch()).is_terminal:
            await asyncio.sleep(0.05)
    assert snap.failed
    assert snap.message


async def test_4o_unknown_job_raises(emulator: Emulator) -> None:
    """Fetching an id the server does not know is a JobNotFoundError."""
    async with sdk(emulator) as c:
        with pytest.raises(tt.JobNotFoundError):
            await c.gpt4o.fetch("no-such-job")


async def test_hook_url_receives_the_fetch_body(emulator: Emulator, serve: object) -> None:
    """TTAPI POSTs the job's final state to hook_url; parse_callback reads it."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await got.put(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    url = await serve(app)  # type: ignore[operator]
    async with sdk(emulator) as c:
        job = await c.gpt4o.submit(prompt="draw", hook_url=url + "/hook")
        snap = tt.parse_callback(await asyncio.wait_for(got.get(), 5))
    assert snap.job_id == job.job_id
    assert snap.succeeded
    assert snap.hook_url == url + "/hook"
    assert url not in repr(snap)


@pytest.mark.parametrize(
    ("setup", "cls"),
    [
        ("bad_key", tt.AuthenticationError),
        ("no_balance", tt.InsufficientBalanceError),
        ("moderation", tt.ContentPolicyError),
    ],
)
async def test_account_errors_map_to_classes(
    emulator: Emulator, setup: str, cls: type[Exception]
) -> None:
    """401, 402 and moderation refusals raise their own classes, without retries."""
    key = "wrong" if setup == "bad_key" else emulator.api_key
    if setup == "no_balance":
        emulator.balance = 0.5
    prompt = "[moderation] a scene" if setup == "moderation" else "a scene"
    async with tt.Client(key, base_url=emulator.url, retry=FAST) as c:
        with pytest.raises(cls):
            await c.images.generate(prompt=prompt, model="gpt-image-1")
    assert emulator.counters.requests["/v1/images/generations"] == 1
    assert emulator.counters.billed["/v1/images/generations"] == 0


async def test_queue_full_then_accepted(emulator: Emulator) -> None:
    """499 while the account's queue is full is retried until a slot frees up."""
    emulator.max_in_flight = 1
    emulator.job_duration = 0.2
    async with sdk(emulator, retry=tt.RetryPolicy(max_retries=5, initial_delay=0.1)) as c:
        await c.gpt4o.submit(prompt="one")
        second = await c.gpt4o.submit(prompt="two")
    assert second.job_id
    assert emulator.counters.responses[499] >= 1
    assert emulator.counters.submits_by_prompt == {"one": 1, "two": 1}


async def test_server_error_after_accept_is_not_resubmitted(emulator: Emulator) -> None:
    """A 500 after the job was created: OutcomeUnknownError, and exactly one job exists."""
    emulator.add_fault(
        Fault(route="/openai/4o-image/generations", status=500, count=1, after_accept=True)
    )
    async with sdk(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.gpt4o.submit(prompt="paid once")
    assert isinstance(info.value.cause, tt.ServerError)
    assert emulator.counters.submits_by_prompt["paid once"] == 1
    assert len(emulator.jobs) == 1


async def test_drop_after_accept_is_outcome_unknown(emulator: Emulator) -> None:
    """A dropped connection after a generation was billed is reported, never retried."""
    emulator.add_fault(
        Fault(route="/v1/images/generations", kind="drop", count=1, after_accept=True)
    )
    async with sdk(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError):
            await c.images.generate(prompt="paid once", model="gpt-image-1")
    assert emulator.counters.billed["/v1/images/generations"] == 1


async def test_rate_limit_before_accept_is_retried(emulator: Emulator) -> None:
    """429 before acceptance is retried after Retry-After; billed once."""
    emulator.add_fault(Fault(route="/v1/images/generations", status=429, count=2, retry_after=0.05))
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="fox", model="gpt-image-1")
    assert r.http is not None
    assert r.http.attempts == 3
    assert emulator.counters.billed["/v1/images/generations"] == 1


async def test_fetch_rides_out_faults(emulator: Emulator) -> None:
    """Fetch retries through 502, a malformed body and a dropped connection."""
    async with sdk(emulator, retry=tt.RetryPolicy(max_retries=4, initial_delay=0.01)) as c:
        job = await c.gpt4o.submit(prompt="draw")
        emulator.add_fault(Fault(route="/openai/4o-image/fetch", status=502, count=1))
        emulator.add_fault(Fault(route="/openai/4o-image/fetch", kind="malformed", count=1))
        emulator.add_fault(Fault(route="/openai/4o-image/fetch", kind="drop", count=1))
        snap = await job.fetch()
    assert snap.job_id == job.job_id
    assert emulator.counters.fetches >= 1
    assert emulator.counters.requests["/openai/4o-image/fetch"] == 4


async def test_latency_and_call_timeout(emulator: Emulator) -> None:
    """A slow server and a short timeout: the generation's outcome is unknown."""
    emulator.sync_latency = 0.3  # the reply cannot come before the 0.2 s timeout
    async with sdk(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1", timeout=0.2)
    assert isinstance(info.value.cause, tt.RequestTimeout)


async def test_expired_url_raises_not_found(tmp_path: Path) -> None:
    """Image URLs expire (about an hour on TTAPI); a late save is a clear NotFoundError."""
    async with Emulator(url_ttl=0.1) as emu, sdk(emu) as c:
        r = await c.dalle3.generate(prompt="a cat", size="1024x1024")
        await asyncio.sleep(0.2)
        with pytest.raises(tt.NotFoundError, match="expired"):
            await c.save(r, tmp_path)
    assert emu.counters.files_expired == 1
    assert not list(tmp_path.iterdir())


async def test_many_concurrent_generations(emulator: Emulator) -> None:
    """One client, one pool: 200 concurrent calls all succeed and are billed once each."""
    async with sdk(emulator, max_connections=20) as c:
        results = await asyncio.gather(
            *(c.images.generate(prompt=f"fox {i}", model="gpt-image-1") for i in range(200))
        )
    assert len(results) == 200
    assert emulator.counters.billed["/v1/images/generations"] == 200
    assert len(emulator.counters.submits_by_prompt) == 200


async def test_key_never_in_errors_or_reprs(emulator: Emulator) -> None:
    """The API key appears in no repr and no error message."""
    emulator.add_fault(Fault(route="/v1/images/generations", status=500, count=1))
    async with sdk(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await c.images.generate(prompt="fox", model="gpt-image-1")
        job = await c.gpt4o.submit(prompt="x")
        texts = [
            repr(c),
            str(info.value),
            repr(info.value.cause),
            repr(job),
            repr(await job.fetch()),
        ]
    assert all(emulator.api_key not in t for t in texts)


async def test_no_model_with_gpt_image_param_is_gpt_image(emulator: Emulator) -> None:
    """No model plus a GPT-image-only parameter is served as gpt-image-1 (wire section 8).

    The SDK's rules and the emulator's (the same table) both accept it, and the emulator
    answers the gpt-image way: b64 images in the asked format, with usage.
    """
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a cat", output_format="webp", size="1536x1024")
        assert open_image(r.data[0].decode()).format == "WEBP"
        assert r.usage is not None
        assert r.output_format == "webp"
        e = await c.images.edit(image=png((64, 32)), prompt="x", background="opaque")
        assert e.data[0].b64_json is not None
    # Straight to the emulator, without the SDK's checks in front.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            emulator.url + "/v1/images/generations",
            json={"prompt": "a cat", "moderation": "low", "quality": "low"},
            headers={API_KEY_HEADER: emulator.api_key},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        reply = await resp.json()
    assert reply["data"][0]["b64_json"]
    assert reply["usage"]["total_tokens"] > 0


async def test_fetch_answered_about_another_job(serve: Serve) -> None:
    """gpt4o.fetch("job-X") answered with job-Y's state raises JobMismatchError."""
    asked: list[str] = []

    async def fetch(request: web.Request) -> web.Response:
        asked.append(request.query["jobId"])
        return web.json_response(
            {
                "status": "SUCCESS",
                "message": "success",
                "jobId": "job-Y",
                "data": {"imageUrl": "https://cdn.example/job-Y.png", "quota": "2"},
            }
        )

    app = web.Application()
    app.router.add_get("/openai/4o-image/fetch", fetch)
    base = await serve(app)
    async with tt.Client("k", base_url=base, retry=tt.RetryPolicy(max_retries=0)) as c:
        with pytest.raises(tt.JobMismatchError) as info:
            await c.gpt4o.fetch("job-X")
        assert (info.value.expected, info.value.received) == ("job-X", "job-Y")
        with pytest.raises(tt.JobMismatchError):
            await c.gpt4o.job("job-X").fetch()
        assert (await c.gpt4o.fetch("job-Y")).image_url == "https://cdn.example/job-Y.png"
    assert asked == ["job-X", "job-X", "job-Y"]


async def test_validation_error_sends_nothing(serve: Serve) -> None:
    """A broken rule raises before any request is made."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        with pytest.raises(tt.ValidationError, match="size"):
            await c.images.generate(prompt="fox", model="dall-e-3", size="256x256")
        with pytest.raises(tt.ValidationError, match="quality"):
            await c.dalle3.generate(prompt="fox", size="1024x1024", quality="low")
        with pytest.raises(tt.ValidationError, match="refer_images"):
            await c.gpt4o.submit(prompt="fox", refer_images=["not-a-url"])
    assert rec.seen == []


async def test_edit_uploads_with_sniffed_mime_types(serve: Serve, tmp_path: Any) -> None:
    """Paths, bytes and files are uploaded as multipart with types read from the bytes."""
    seen: list[tuple[str, str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, aiohttp.BodyPartReader)
            seen.append((part.name or "", part.filename, part.headers.get("Content-Type")))
        return web.json_response(OK_IMAGES)

    app = web.Application()
    app.router.add_post("/v1/images/edits", handler)
    png, webp, jpg = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    Image.new("RGB", (8, 8)).save(webp, "WEBP")
    Image.new("RGB", (8, 8)).save(jpg, "JPEG")
    path = tmp_path / "photo.bin"  # the name lies; the bytes decide
    path.write_bytes(jpg.getvalue())
    async with client(await serve(app)) as c:
        await c.images.edit(
            image=[str(path), webp.getvalue(), png], prompt="basket", model="gpt-image-1"
        )
    files = [s for s in seen if s[1]]
    assert [(f[0], f[2]) for f in files] == [
        ("image[]", "image/jpeg"),
        ("image[]", "image/webp"),
        ("image[]", "image/png"),
    ]
    assert ("prompt", None, None) in [(s[0], s[1], None) for s in seen]


async def test_result_models_are_frozen(serve: Serve) -> None:
    """Results are frozen attrs models."""
    rec = Recorder(reply_json(OK_IMAGES))
    async with client(await serve(rec.app())) as c:
        r = await c.images.generate(prompt="fox", model="gpt-image-1")
    with pytest.raises(AttributeError):
        r.created = 2  # type: ignore[misc]
