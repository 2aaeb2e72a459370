"""The download pipeline (:mod:`ttapi_async._downloads`): streamed, checked, never
half-written, never overwriting.

Real HTTP on 127.0.0.1 throughout: the emulator for real results, tiny aiohttp apps for
replies no good server sends (redirects, error statuses, bodies cut short, stalls). The
checks on the bytes are in test_images.py, file placement in test_files.py and the
sidecar's contents in test_sidecar.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web
from PIL import Image
from saving import SAFE_NAME, Serve, client, listing, png, sdk, sidecar_of, url_result

import ttapi_async as tt
from ttapi_async import _downloads
from ttapi_async._errors import ImageUnavailableError
from ttapi_async._transport import AiohttpTransport
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- good saves


async def test_url_image_saved_with_checked_sidecar(emulator: Emulator, tmp_path: Path) -> None:
    """A URL image streams to disk: right bytes, hash, size, type, size in pixels, sidecar."""
    key = emulator.api_key
    async with sdk(emulator) as c:
        r = await c.dalle3.generate(prompt="a lighthouse", size="1792x1024")
        url = r.data[0].url
        assert url is not None
        expected = await c.download(url)  # the same bytes, read a second way
        (saved,) = await c.save(
            r,
            tmp_path,
            metadata={
                "prompt": "a lighthouse",
                "model": "dall-e-3",
                "parameters": {"size": "1792x1024"},
                "index": 7,
                "submitted_at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                "api_key": key,  # dropped by name ...
                "note": f"sent with {key}",  # ... and blanked anywhere else
                "sha256": "forged",  # the file's own facts win
            },
        )
    assert emulator.counters.key_seen_on_files == 0
    data = saved.path.read_bytes()
    assert data == expected
    assert saved.path.parent == tmp_path
    assert SAFE_NAME.match(saved.path.name)
    assert saved.path.name.startswith("a-lighthouse-")
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert saved.size == len(data)
    assert saved.mime == "image/png"
    assert (saved.width, saved.height) == (1792, 1024) == Image.open(saved.path).size
    assert (saved.source, saved.url) == ("url", url)
    assert os.fspath(saved) == str(saved) == str(saved.path)
    with open(saved, "rb") as fh:  # noqa: ASYNC230, PTH123 - open() taking it is the point
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o644
    assert saved.sidecar == tmp_path / (saved.path.name + ".json")
    assert stat.S_IMODE(saved.sidecar.stat().st_mode) == 0o644
    assert listing(tmp_path) == sorted([saved.path.name, saved.sidecar.name])

    text = saved.sidecar.read_text()
    assert key not in text
    doc = json.loads(text)
    assert doc["file"] == saved.path.name
    assert doc["sha256"] == saved.sha256
    assert doc["bytes"] == len(data)
    assert (doc["mime"], doc["width"], doc["height"]) == ("image/png", 1792, 1024)
    assert (doc["source"], doc["url"]) == ("url", url)
    assert doc["prompt"] == "a lighthouse"
    assert doc["model"] == "dall-e-3"
    assert doc["kind"] == "images"
    assert doc["parameters"] == {"size": "1792x1024"}
    assert (doc["index"], doc["image_index"]) == (7, 0)
    assert doc["job_id"] is None
    assert doc["revised_prompt"] == r.data[0].revised_prompt
    assert doc["submitted_at"] == "2025-01-02T03:04:05+00:00"
    assert doc["created"].endswith("+00:00")
    assert dt.datetime.fromisoformat(doc["saved_at"]).tzinfo is not None
    assert "api_key" not in doc
    assert doc["note"] == "sent with <hidden>"


async def test_b64_image_decoded_in_slices(emulator: Emulator, tmp_path: Path) -> None:
    """gpt-image-1 answers b64_json: decoded straight into the file, no download at all."""
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1", n=2)
        saved = await c.save(r, tmp_path, sidecar=False)
    assert emulator.counters.files_served == 0
    assert [s.path.name for s in saved] == [f"{saved[0].path.stem[:-2]}-{i}.png" for i in (0, 1)]
    for item, one in zip(r.data, saved, strict=True):
        assert one.path.read_bytes() == item.decode()
        assert (one.source, one.url, one.sidecar) == ("b64_json", None, None)
        assert (one.width, one.height) == (1024, 1024)
    assert listing(tmp_path) == sorted(s.path.name for s in saved)  # no sidecars


async def test_results_are_named_from_their_prompt_with_prompt_and_model_in_the_sidecar(
    emulator: Emulator, tmp_path: Path
) -> None:
    """What the README says of save(): files named from the prompt; the sidecar records the
    prompt and the model, for every kind of call (the dalle3 route serves dall-e-3)."""
    async with sdk(emulator) as c:
        gen = await c.images.generate(prompt="A red fox, in snow!", model="gpt-image-1")
        d3 = await c.dalle3.generate(prompt="a cat on a mat", size="1024x1024")
        edit = await c.images.edit(image=png((64, 64)), prompt="add a hat", model="gpt-image-1")
        saved = [(await c.save(r, tmp_path))[0] for r in (gen, d3, edit)]
    assert [s.path.name.rsplit("-", 2)[0] for s in saved] == [
        "a-red-fox-in-snow",
        "a-cat-on-a-mat",
        "add-a-hat",
    ]
    docs = [sidecar_of(s) for s in saved]
    assert [(d["prompt"], d["model"]) for d in docs] == [
        ("A red fox, in snow!", "gpt-image-1"),
        ("a cat on a mat", "dall-e-3"),
        ("add a hat", "gpt-image-1"),
    ]


async def test_large_b64_spans_many_slices(tmp_path: Path) -> None:
    """A b64 image of many 64 KiB slices decodes exactly, hash and all."""
    data = png((400, 300), noise=True)
    assert len(data) > 5 * 65536
    result = tt.ImagesResponse(
        created=0, data=(tt.ImageData(b64_json=base64.b64encode(data).decode()),)
    )
    async with client() as c:
        (saved,) = await c.save(result, tmp_path, stem="noise")
    assert saved.path.name == "noise-0.png"
    assert saved.path.read_bytes() == data
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    doc = sidecar_of(saved)
    assert (doc["source"], doc["url"], doc["bytes"]) == ("b64_json", None, len(data))
    assert (doc["width"], doc["height"]) == (400, 300)


async def test_redirect_followed_without_the_key(serve: Serve, tmp_path: Path) -> None:
    """A CDN redirect is followed; no request of the download carries the key."""
    seen: list[dict[str, str]] = []
    body = png()

    async def hop(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        raise web.HTTPFound("/real.png")

    async def real(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/hop.png", hop)
    app.router.add_get("/real.png", real)
    base = await serve(app)
    async with client(base) as c:
        (saved,) = await c.save(url_result(base + "/hop.png?sig=abc"), tmp_path, stem="r")
    assert saved.path.read_bytes() == body
    assert saved.url == base + "/hop.png"  # the query string is not kept
    assert len(seen) == 2
    assert all("TT-API-KEY" not in h and "Authorization" not in h for h in seen)
    assert "sig=abc" not in saved.sidecar.read_text()  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- refusals


async def test_expired_url_is_image_unavailable(tmp_path: Path) -> None:
    """An expired URL: a typed error naming host and path, never the signed query."""
    async with Emulator(url_ttl=0.05) as emu, sdk(emu) as c:
        r = await c.dalle3.generate(prompt="a cat", size="1024x1024")
        url = r.data[0].url
        assert url is not None
        await asyncio.sleep(0.1)
        with pytest.raises(ImageUnavailableError) as info:
            await c.save(url_result(url + "?se=2030&sig=S3CR3T-SIGNATURE"), tmp_path)
        with pytest.raises(tt.NotFoundError):  # ImageUnavailableError is a NotFoundError
            await c.download(url)
    err = info.value
    message = str(err)
    assert "expired" in message
    assert "about an hour" in message
    assert "127.0.0.1" in message
    assert "/files/" in message
    assert "S3CR3T" not in message
    assert "sig=" not in message
    assert "?" not in message
    assert err.status == 404
    assert err.url == url
    assert emu.counters.files_expired == 2
    assert listing(tmp_path) == []


@pytest.mark.parametrize("status", [403, 410])
async def test_forbidden_and_gone_are_image_unavailable(
    serve: Serve, tmp_path: Path, status: int
) -> None:
    """S3-style expired signatures answer 403; 410 is gone for good."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="<Error>Request has expired</Error>" * 1000)

    app = web.Application()
    app.router.add_get("/x.png", handler)
    base = await serve(app)
    async with client(base) as c:
        with pytest.raises(ImageUnavailableError) as info:
            await c.save(url_result(base + "/x.png?X-Amz-Signature=abc"), tmp_path)
    assert info.value.status == status
    assert len(info.value.body) < 400  # only an excerpt of the error page is kept
    assert listing(tmp_path) == []


async def test_server_error_goes_through_parse_error(serve: Serve, tmp_path: Path) -> None:
    """Other error statuses are the usual status errors."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "cdn down"}}, status=503)

    app = web.Application()
    app.router.add_get("/x.png", handler)
    base = await serve(app)
    async with client(base) as c:
        with pytest.raises(tt.ServerError, match="cdn down"):
            await c.save(url_result(base + "/x.png"), tmp_path)
    assert listing(tmp_path) == []


async def test_connection_dropped_mid_body(serve: Serve, tmp_path: Path) -> None:
    """A body cut short of its Content-Length: a connection error and no partial file."""
    body = png((300, 300), noise=True)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "image/png", "Content-Length": str(len(body))}
        )
        await resp.prepare(request)
        await resp.write(body[:100_000])
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp

    app = web.Application()
    app.router.add_get("/cut.png", handler)
    base = await serve(app)
    async with client(base) as c:
        with pytest.raises(tt.APIConnectionError) as info:
            await c.save(url_result(base + "/cut.png"), tmp_path)
    assert isinstance(info.value, tt.ConnectionDroppedError)
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- stalls


def slow_app(body: bytes, started: anyio.Event) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "image/png", "Content-Length": str(len(body))}
        )
        await resp.prepare(request)
        await resp.write(body[:70_000])
        started.set()
        await asyncio.sleep(30)  # the rest never comes in time
        await resp.write(body[70_000:])
        return resp

    app = web.Application()
    app.router.add_get("/slow.png", handler)
    return app


async def test_cancellation_mid_download_leaves_nothing(serve: Serve, tmp_path: Path) -> None:
    """Cancelled while the body streams: no image, no .part- file."""
    started = anyio.Event()
    base = await serve(slow_app(png((300, 300), noise=True), started))
    async with client(base) as c:
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.save, url_result(base + "/slow.png"), tmp_path)
                await started.wait()
                await asyncio.sleep(0.1)
                assert [p.name[:6] for p in tmp_path.iterdir()] == [".part-"]  # half there
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        with anyio.move_on_after(0.3) as scope:
            await c.save(url_result(base + "/slow.png"), tmp_path)
        assert scope.cancelled_caught
    assert listing(tmp_path) == []


async def test_timeout_mid_download_leaves_nothing(serve: Serve, tmp_path: Path) -> None:
    """The call's timeout= runs out mid-body: RequestTimeout, no file."""
    started = anyio.Event()
    base = await serve(slow_app(png((300, 300), noise=True), started))
    async with client(base) as c:
        with pytest.raises(tt.RequestTimeout) as info:
            await c.save(url_result(base + "/slow.png"), tmp_path, timeout=0.3)
    assert info.value.request_sent
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- temporary names


def gated_app(body: bytes, started: anyio.Event, release: anyio.Event) -> web.Application:
    """Serve ``body`` at /gated.png: the first 70,000 bytes, then the rest once released."""

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

    app = web.Application()
    app.router.add_get("/gated.png", handler)
    return app


@pytest.mark.parametrize(
    ("run_id", "pattern"),
    [
        (None, r"\.part-[a-z0-9_]{8}"),
        ("0123456789abcdef", r"\.part-0123456789abcdef-[a-z0-9_]{8}"),
    ],
    ids=["outside-a-run", "in-a-run"],
)
async def test_temporary_names_carry_the_run_id_only_inside_a_run(
    serve: Serve, tmp_path: Path, run_id: str | None, pattern: str
) -> None:
    """A save's ``.part-`` file names the journaled run it belongs to, and nothing else.

    So the next run of that journal sweeps exactly its own leftovers; an untagged name
    (any ``client.save()`` outside a run) is never swept.
    """
    started, release = anyio.Event(), anyio.Event()
    body = png((300, 300), noise=True)
    base = await serve(gated_app(body, started, release))
    seen: list[str] = []
    async with client(base) as c, anyio.create_task_group() as tg:
        with _downloads.tagged_parts(run_id):
            tg.start_soon(c.save, url_result(base + "/gated.png"), tmp_path)
        await started.wait()
        seen = listing(tmp_path)
        release.set()
    assert len(seen) == 1
    assert re.fullmatch(pattern, seen[0]), seen
    (image,) = [p for p in tmp_path.iterdir() if p.suffix == ".png"]
    assert image.read_bytes() == body
    assert not list(tmp_path.glob(".part-*"))


async def test_an_explicit_run_id_tags_every_save_of_a_result(serve: Serve, tmp_path: Path) -> None:
    """``save_result(..., run_id=...)`` tags the ``.part-`` files of its b64 and URL saves
    alike, with no context variable needed; given inside ``tagged_parts``, it wins."""
    run_id = "0123456789abcdef"
    started, release, done = anyio.Event(), anyio.Event(), anyio.Event()
    body = png((300, 300), noise=True)
    base = await serve(gated_app(body, started, release))
    result = tt.ImagesResponse(
        created=0,
        data=(
            tt.ImageData(b64_json=base64.b64encode(body).decode()),  # decoded in 6 slices
            tt.ImageData(url=base + "/gated.png"),
        ),
    )
    seen: set[str] = set()

    async def watch() -> None:
        # The b64 save yields to the loop after every slice, the URL save waits at the
        # gate: each one's temporary file is there to be seen at some turn of the loop.
        while not done.is_set():
            seen.update(p.name for p in tmp_path.iterdir() if p.name.startswith(".part-"))
            if started.is_set():  # the URL's file was there when the line above ran
                release.set()
            await anyio.lowlevel.checkpoint()

    transport = AiohttpTransport(base, "test-key-123")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            with _downloads.tagged_parts("f" * 16):
                saved = await _downloads.save_result(
                    transport, result, tmp_path, sidecar=False, run_id=run_id
                )
            done.set()
    finally:
        await transport.aclose()
    assert len(seen) == 2, seen  # the b64 image's file and the URL image's file
    assert all(re.fullmatch(rf"\.part-{run_id}-[a-z0-9_]{{8}}", name) for name in seen), seen
    assert [s.path.read_bytes() for s in saved] == [body, body]
    assert [s.source for s in saved] == ["b64_json", "url"]
    assert not list(tmp_path.glob(".part-*"))
