"""Saving results to disk: streamed, checked, never half-written, never overwriting.

Real HTTP on 127.0.0.1 throughout: the emulator for real results, tiny aiohttp apps for
replies no good server sends (wrong types, bodies cut short, stalls).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import enum
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from helpers import free_port
from PIL import Image

import ttapi_async as tt
from ttapi_async import _downloads
from ttapi_async._errors import ImageUnavailableError, Redactor
from ttapi_async._models import SavedImage
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

Serve = Callable[[web.Application], Awaitable[str]]
FAST = tt.RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)
QUICK = tt.PollPolicy(initial_delay=0.05, growth=1.5, max_interval=0.2, dense_interval=0.05)
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(png|jpg|webp|gif)$")


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("poll_policy", QUICK)
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def client(base_url: str = "http://127.0.0.1:9") -> tt.Client:
    return tt.Client("test-key-123", base_url=base_url, retry=FAST)


def png(size: tuple[int, int] = (8, 6), *, noise: bool = False) -> bytes:
    """A real PNG; with noise it does not compress (so it spans many 64 KiB chunks)."""
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def url_result(*urls: str) -> tt.ImagesResponse:
    return tt.ImagesResponse(created=1_700_000_000, data=tuple(tt.ImageData(url=u) for u in urls))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sidecar_of(saved: SavedImage) -> dict[str, Any]:
    assert saved.sidecar is not None
    doc: dict[str, Any] = json.loads(saved.sidecar.read_text())
    return doc


def image_app(body: bytes, content_type: str | None = "image/png") -> web.Application:
    """Serve ``body`` at any path; ``content_type=None`` sends no Content-Type at all."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type or "x/y"})

    async def strip(_: web.Request, resp: web.StreamResponse) -> None:
        # aiohttp would otherwise add application/octet-stream.
        resp.headers.popall("Content-Type", None)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    if content_type is None:
        app.on_response_prepare.append(strip)
    return app


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


# ----------------------------------------------------------------------------- secrets


async def test_hooked_job_sidecar_has_no_hook_url_or_token(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A 4o job submitted with a hook URL: neither the URL nor its token reaches a sidecar."""
    emulator.job_duration = 0.1
    async with anyio.create_task_group() as tg:
        port = free_port()
        rec = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
        await tg.start(rec.serve, "127.0.0.1", port)
        async with sdk(emulator, webhook=rec) as c:
            job = await c.gpt4o.submit(prompt="a hooked cat")
            result = await job.wait(timeout=10)
            snap = await job.fetch()
            hook = emulator.jobs[job.job_id].hook_url
            assert hook is not None
            assert snap.hook_url == hook  # TTAPI echoes it back on every fetch
            token = hook.rsplit("/", 1)[-1]
            leaky = {
                "hookUrl": hook,
                "request": {"prompt": "a hooked cat", "hook_url": hook, "HOOK-TOKEN": token},
                "snapshot": snap,  # an attrs object with a hook_url field
                "note": f"callbacks go to {hook}",
                "raw": f'{{"hookUrl": "{hook}"}}',
                "events": [{"Hook_Url": hook}, token],
            }
            saved_snap = await c.save(snap, tmp_path, metadata=leaky)
            saved_result = await c.save(result, tmp_path, metadata={"hook_token": token})
        tg.cancel_scope.cancel()
    assert rec.accepted == 1
    for saved in (*saved_snap, *saved_result):
        text = saved.sidecar.read_text()  # type: ignore[union-attr]
        assert hook not in text
        assert token not in text
        assert emulator.api_key not in text
        doc = json.loads(text)
        assert not {"hookUrl", "hook_url", "hook_token"} & set(doc)
        assert doc["job_id"] == job.job_id
        assert doc["kind"] == "4o-image"
        assert doc["prompt"] == "a hooked cat"
        assert doc["finished"]
    assert sidecar_of(saved_result[0])["delivered_by"] in {"webhook", "poll"}
    assert saved_snap[0].path != saved_result[0].path  # same prompt, two files
    assert emulator.counters.key_seen_on_files == 0


def test_clean_metadata_drops_and_converts() -> None:
    """Secret keys go at any depth and in any spelling; values become JSON."""

    class Colour(enum.Enum):
        RED = "red"

    cleaned = _downloads.clean_metadata(
        {
            "HookURL": "x",
            "webhook_url": "x",
            "nested": {"hook-token": "x", "keep": 1, "list": [{"hookUrl": "x"}, b"\x00\x01"]},
            "OPENAI_API_KEY": "x",
            "Authorization": "x",
            "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            "took": dt.timedelta(seconds=1.5),
            "colour": Colour.RED,
            "status": tt.JobStatus.SUCCESS,
            "bad": math.nan,
            "path": Path("/a/b"),
            "secret in text": "key=sk-0123456789 and hookUrl=http://h/t0k3n",
        },
        Redactor(["sk-0123456789", "short"]),
    )
    assert cleaned == {
        "nested": {"keep": 1, "list": [{}, "<2 bytes>"]},
        "when": "2025-01-01T00:00:00+00:00",
        "took": 1.5,
        "colour": "red",
        "status": "SUCCESS",
        "bad": None,
        "path": "/a/b",
        "secret in text": "key=<hidden> and hookUrl=<hidden>",
    }


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


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_refused_and_nothing_left(
    serve: Serve, tmp_path: Path, chunked: bool
) -> None:
    """Over max_bytes (declared, or counted while streaming): an error, no file at all."""
    body = png((300, 300), noise=True)

    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=body, content_type="image/png")
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 10_000):
            await resp.write(body[i : i + 10_000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big.png", handler)
    base = await serve(app)
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError, match="larger than 50000 bytes"):
            await c.save(url_result(base + "/big.png"), tmp_path, max_bytes=50_000)
        with pytest.raises(tt.ResponseFormatError, match="larger than"):
            await c.download(base + "/big.png", max_bytes=50_000)
        assert len(await c.save(url_result(base + "/big.png"), tmp_path)) == 1
    assert len(listing(tmp_path)) == 2  # only the last save: image and sidecar


async def test_oversize_b64_refused(tmp_path: Path) -> None:
    """The cap holds for b64_json images too."""
    b64 = base64.b64encode(png((300, 300), noise=True)).decode()
    result = tt.ImagesResponse(created=0, data=(tt.ImageData(b64_json=b64),))
    async with client() as c:
        with pytest.raises(tt.ResponseFormatError, match="larger than"):
            await c.save(result, tmp_path, max_bytes=10_000)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("ctype", ["text/html", "application/json", "text/plain; charset=utf-8"])
async def test_non_image_content_type_refused(serve: Serve, tmp_path: Path, ctype: str) -> None:
    """A login page or an error in JSON served with 200 is refused by its Content-Type."""
    base = await serve(image_app(png(), ctype))
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError) as info:
            await c.save(url_result(base + "/a.png"), tmp_path)
    assert ctype.split(";", maxsplit=1)[0] in str(info.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("ctype", [None, "application/octet-stream", "image/png"])
async def test_acceptable_content_types(serve: Serve, tmp_path: Path, ctype: str | None) -> None:
    """No Content-Type, octet-stream and image/* are fine: the bytes decide."""
    body = png()
    base = await serve(image_app(body, ctype))
    async with client(base) as c:
        (saved,) = await c.save(url_result(base + "/a.png"), tmp_path)
    assert saved.path.read_bytes() == body


@pytest.mark.parametrize(
    "body", [b"this is certainly not an image, whatever the header says", b"GIF8", b""]
)
async def test_bytes_that_are_not_an_image_refused(
    serve: Serve, tmp_path: Path, body: bytes
) -> None:
    """image/png on the label, not an image inside: refused, no file."""
    base = await serve(image_app(body, "image/png"))
    async with client(base) as c:
        with pytest.raises(tt.ResponseFormatError):
            await c.save(url_result(base + "/a.png"), tmp_path)
        with pytest.raises(tt.ResponseFormatError):
            await c.download(base + "/a.png")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("b64", ["!!!not base64!!!", "iVBORw0KGgo", "iVBO\nRw0K", "é" * 8])
async def test_invalid_b64_refused(tmp_path: Path, b64: str) -> None:
    """Junk, bad padding, whitespace and non-ASCII in b64_json: refused, no file."""
    result = tt.ImagesResponse(created=0, data=(tt.ImageData(b64_json=b64),))
    async with client() as c:
        with pytest.raises(tt.ResponseFormatError):
            await c.save(result, tmp_path)
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


# ----------------------------------------------------------------------------- names


async def test_same_prompt_twice_gives_two_files(emulator: Emulator, tmp_path: Path) -> None:
    """Nothing is overwritten: a taken name gets -2, -3, ...; a stranger's file stays."""
    (tmp_path / "fox-0.png").write_bytes(b"mine")
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1")
        first = await c.save(r, tmp_path, stem="fox")
        second = await c.save(r, tmp_path, stem="fox")
        (tmp_path / "fox-0-4.png.json").write_text("{}")  # an orphaned sidecar keeps its name
        third = await c.save(r, tmp_path, stem="fox")
        by_prompt = [await c.save(r, tmp_path, metadata={"prompt": "a fox"}) for _ in range(2)]
    assert (tmp_path / "fox-0.png").read_bytes() == b"mine"
    assert [s.path.name for s in (*first, *second, *third)] == [
        "fox-0-2.png",
        "fox-0-3.png",
        "fox-0-5.png",
    ]
    assert (tmp_path / "fox-0-4.png.json").read_text() == "{}"
    a, b = by_prompt[0][0], by_prompt[1][0]
    assert a.path != b.path
    assert a.path.name.startswith("a-fox-")
    assert b.path.name == a.path.name.replace(".png", "-2.png")
    assert a.sidecar != b.sidecar
    assert a.sha256 == b.sha256


async def test_concurrent_saves_never_collide(emulator: Emulator, tmp_path: Path) -> None:
    """Twenty saves of one name at once: twenty files, each whole, each with its sidecar."""
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1", size="1024x1024")
        results = await asyncio.gather(*(c.save(r, tmp_path, stem="same") for _ in range(20)))
    saved = [s for batch in results for s in batch]
    assert len({s.path for s in saved}) == 20
    expected = r.data[0].decode()
    assert all(s.path.read_bytes() == expected for s in saved)
    assert all(sidecar_of(s)["file"] == s.path.name for s in saved)
    assert len(listing(tmp_path)) == 40
    assert not list(tmp_path.glob(".part-*"))


async def test_hostile_prompt_gives_a_safe_name(emulator: Emulator, tmp_path: Path) -> None:
    """Path tricks, length, unicode and NUL in a prompt: a short, plain name in the folder."""
    hostile = "../../etc/passwd/" + "Ünïcødé 🦊 \\ .. \0" + "x" * 500
    folder = tmp_path / "out"
    async with sdk(emulator) as c:
        r = await c.dalle3.generate(prompt="x", size="1024x1024")
        url = r.data[0].url
        assert url is not None
        snap = tt.JobSnapshot(
            job_id="j1", status=tt.JobStatus.SUCCESS, prompt=hostile, image_url=url
        )
        from_job = await c.save(snap, folder)
        from_meta = await c.save(r, folder, metadata={"prompt": hostile})
        for stem in ["../x", "a/b", "a\\b", ".hidden", "a\0b", "", "x" * 300]:
            with pytest.raises(tt.ValidationError, match="stem"):
                await c.save(r, folder, stem=stem)
    for saved in (*from_job, *from_meta):
        assert saved.path.parent == folder
        assert SAFE_NAME.match(saved.path.name), saved.path.name
        assert len(saved.path.name) < 80
        assert "passwd" in saved.path.name  # still recognisable
    assert sidecar_of(from_job[0])["prompt"] == hostile  # the sidecar keeps it verbatim
    assert listing(tmp_path) == ["out"]
    assert len(listing(folder)) == 4


async def test_without_hard_links_names_are_still_reserved(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem with no hard links (FAT, some network shares) names stay unique."""

    def no_links(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "x-0.png").write_bytes(b"mine")
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1")
        saved = [s for _ in range(2) for s in await c.save(r, tmp_path, stem="x")]
    assert [s.path.name for s in saved] == ["x-0-2.png", "x-0-3.png"]
    assert (tmp_path / "x-0.png").read_bytes() == b"mine"
    assert all(s.path.read_bytes() == r.data[0].decode() for s in saved)
    assert not list(tmp_path.glob(".part-*"))


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


# ----------------------------------------------------------------------------- hostile values


def b64_result(**fields: Any) -> tt.ImagesResponse:
    """A one-image b64 result; ``created`` and image fields may be anything."""
    created = fields.pop("created", 1_700_000_000)
    item = tt.ImageData(b64_json=base64.b64encode(png()).decode(), **fields)
    return tt.ImagesResponse(created=created, data=(item,))


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        (10**20, 10**20),
        (-(10**20), -(10**20)),
        (-(10**400), -(10**400)),
        (10**12, 10**12),  # year 33658: past datetime's range
        (2**63, 2**63),
        (math.nan, None),  # JSON has no NaN nor infinity
        (math.inf, None),
        (-1, "1969-12-31T23:59:59+00:00"),  # a date after all
    ],
    ids=["1e20", "-1e20", "-1e400", "year-33658", "2**63", "nan", "inf", "-1"],
)
async def test_a_created_no_date_can_show_is_kept_as_sent(
    tmp_path: Path, created: float, shown: object
) -> None:
    """``created`` out of the platform's range: the image is saved, the number kept."""
    async with client() as c:
        (saved,) = await c.save(b64_result(created=created), tmp_path)
    assert saved.path.read_bytes() == png()
    assert sidecar_of(saved)["created"] == shown
    assert listing(tmp_path) == sorted([saved.path.name, saved.path.name + ".json"])


async def test_lone_surrogates_in_every_field_are_saved(serve: Serve, tmp_path: Path) -> None:
    """A mis-decoded prompt, job id or metadata value: the image is saved, the sidecar is
    valid JSON giving the same strings back, and the name is a plain safe one."""
    base = await serve(image_app(png()))
    snap = tt.JobSnapshot(
        job_id="job-\udcff",
        status=tt.JobStatus.SUCCESS,
        prompt="a fox \ud800 in snow",
        image_url=base + "/a.png",
        finish_time=dt.datetime.max.replace(tzinfo=dt.UTC),
    )
    async with client() as c:
        (from_job,) = await c.save(snap, tmp_path, metadata={"note \ud800": "x\udc80"})
        (from_id,) = await c.save(attrs_evolve_prompt(snap, None), tmp_path)
        (revised,) = await c.save(b64_result(revised_prompt="\ud800\ud801"), tmp_path)
        (from_meta,) = await c.save(b64_result(), tmp_path, metadata={"prompt": "\udfff"})
    for saved in (from_job, from_id, revised, from_meta):
        assert SAFE_NAME.match(saved.path.name), saved.path.name
        assert saved.path.read_bytes() == png()
    doc = sidecar_of(from_job)
    assert (doc["prompt"], doc["job_id"]) == ("a fox \ud800 in snow", "job-\udcff")
    assert doc["note \ud800"] == "x\udc80"
    assert doc["finished"] == "9999-12-31T23:59:59.999999+00:00"
    assert sidecar_of(revised)["revised_prompt"] == "\ud800\ud801"
    assert sidecar_of(from_meta)["prompt"] == "\udfff"
    assert sidecar_of(from_id)["job_id"] == "job-\udcff"
    # Two prompts that differ only in a surrogate do not share a stem.
    assert from_job.path.name.split("-0.")[0] != from_id.path.name.split("-0.")[0]
    assert not list(tmp_path.glob(".part-*"))


def attrs_evolve_prompt(snap: tt.JobSnapshot, prompt: str | None) -> tt.JobSnapshot:
    import attrs  # noqa: PLC0415

    return attrs.evolve(snap, prompt=prompt)


async def test_a_stem_or_folder_the_os_cannot_take_is_a_validation_error(
    tmp_path: Path,
) -> None:
    async with client() as c:
        with pytest.raises(tt.ValidationError) as info:
            await c.save(b64_result(), tmp_path, stem="a\ud800")
        assert info.value.param == "stem"
        for folder in (tmp_path / "d\ud800", tmp_path / "d\x00"):
            with pytest.raises(tt.ValidationError) as info:
                await c.save(b64_result(), folder)
            assert info.value.param == "directory"
        # A surrogate-escaped byte (a non-UTF-8 name read from the OS) is a real name.
        (saved,) = await c.save(b64_result(), tmp_path, stem="raw\udcff")
    assert os.fsencode(saved.path.name) == b"raw\xff-0.png"
    assert sidecar_of(saved)["file"] == "raw\udcff-0.png"
    assert listing(tmp_path) == sorted([saved.path.name, saved.path.name + ".json"])


def assert_storage_error(err: tt.StorageError, code: int, cause: type[OSError]) -> None:
    assert isinstance(err, OSError)
    assert isinstance(err, tt.TTAPIError)
    assert err.errno == code
    assert isinstance(err.__cause__, cause)
    assert "saving an image" in str(err)


async def test_local_failures_are_storage_errors(serve: Serve, tmp_path: Path) -> None:
    """A folder under a file, a folder that is a file: StorageError, which is an OSError."""
    base = await serve(image_app(png()))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    async with client() as c:
        for result in (b64_result(), url_result(base + "/a.png")):
            with pytest.raises(tt.StorageError) as info:
                await c.save(result, blocker / "out")
            assert_storage_error(info.value, errno.ENOTDIR, NotADirectoryError)
            with pytest.raises(OSError, match="saving an image"):  # `except OSError` works
                await c.save(result, blocker)
    assert listing(tmp_path) == ["a-file"]
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
async def test_permission_denied_even_to_root_is_a_storage_error() -> None:
    """sysfs refuses new files to everyone, root included: a real EACCES."""
    async with client() as c:
        with pytest.raises(tt.StorageError) as info:
            await c.save(b64_result(), "/sys/kernel")
    assert_storage_error(info.value, errno.EACCES, PermissionError)


FULL_DISK_CHILD = """
import asyncio, base64, json, os, resource, signal, sys
from pathlib import Path
import ttapi_async as tt

async def main(folder, image):
    result = tt.ImagesResponse(created=1, data=(tt.ImageData(b64_json=image),))
    async with tt.Client("test-key-123", base_url="http://127.0.0.1:9") as c:
        try:
            await c.save(result, folder)
        except BaseException as exc:
            return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                    "os": isinstance(exc, OSError), "tt": isinstance(exc, tt.TTAPIError),
                    "cause": type(exc.__cause__).__name__}
    return {"type": None}

folder, image = sys.argv[1], sys.stdin.read()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
print(json.dumps(asyncio.run(main(folder, image))))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file-size limit")
def test_a_write_that_fails_mid_image_is_a_storage_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The disk refuses a write half-way (a file-size limit: EFBIG, like a full disk or a
    quota): StorageError, and no half file nor .part- file is left.

    ENOSPC itself needs a small filesystem (a mount: root); the file-size limit fails
    the same write() with another errno, in a child so the limit binds no one else.
    """
    image = base64.b64encode(png((300, 300), noise=True)).decode()
    assert len(image) > 2 * 64 * 1024
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)],
        input=image,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(child.stdout)
    assert got == {
        "type": "StorageError",
        "errno": errno.EFBIG,
        "os": True,
        "tt": True,
        "cause": "OSError",
    }
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
