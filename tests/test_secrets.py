"""Secrets never show: the key and hook tokens, even when the server quotes them back.

The unit tests drive :class:`~ttapi_async._errors.Redactor` over plain strings. The others
talk HTTP to servers on 127.0.0.1 that echo what they were sent, as real gateways do
("Incorrect API key provided: <key>", a 400 repeating the ``hookUrl``). The last one is
the leak scan: a whole bulk run at DEBUG with faults, behind a proxy that echoes secrets,
then the CLI; every log record, exception chain, repr, sidecar, journal byte and CLI line
is searched for the key and every hook token the proxy saw.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from helpers import free_port

import ttapi_async as tt
from ttapi_async._errors import Redactor, excerpt
from ttapi_async.testing import Emulator, _imagegen


pytestmark = pytest.mark.anyio

KEY = "sk-live-Secret-Key-0123456789abcdef"
Serve = Callable[[web.Application], Awaitable[str]]


def chain(exc: BaseException) -> str:
    """Everything a user could print of an exception: str, repr, traceback and causes."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        parts += [str(err), repr(err), repr(vars(err)) if hasattr(err, "__dict__") else ""]
        todo += [e for e in (err.__cause__, err.__context__) if e is not None]
        todo += [v for v in (getattr(err, "cause", None), getattr(err, "last_error", None)) if v]
    return "\n".join(parts)


def log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in records)


# ------------------------------------------------------------------ the redactor itself


def test_redactor_hides_the_key_in_every_spelling() -> None:
    r = Redactor([KEY])
    for text in (
        f"Incorrect API key provided: {KEY}.",
        json.dumps({"error": {"message": f"bad key {KEY}"}}),
        "key=sk-live-Secret-Key-0123456789abcdef&x=1",
        f"{KEY}{KEY}",
    ):
        out = r.redact(text)
        assert KEY not in out
        assert "<hidden>" in out
    assert r.redact("nothing secret here") == "nothing secret here"


def test_redactor_hides_every_token_under_a_hook_prefix() -> None:
    r = Redactor((), ["https://api.example.com/ttapi/hook/"])
    token = "AbC_d-9xYz0123456789abcdefghijkl"
    url = f"https://api.example.com/ttapi/hook/{token}"
    for text in (
        f"invalid hookUrl {url}",
        json.dumps({"message": url}).replace("/", "\\/"),  # PHP-style escaped slashes
        "hook=" + url.replace(":", "%3A").replace("/", "%2F"),
        f"<a href='{url}'>",
    ):
        out = r.redact(text)
        assert token not in out, text
    # Other URLs and the prefix alone are kept: they are not secrets.
    assert r.redact("see https://api.example.com/docs") == "see https://api.example.com/docs"


def test_redactor_scrubs_an_exception_and_its_causes() -> None:
    r = Redactor([KEY])
    inner = tt.AuthenticationError(f"Incorrect API key provided: {KEY}", status=401, body=KEY)
    outer = tt.BulkPausedError(inner)
    outer.__cause__ = inner
    r.scrub(outer)
    assert KEY not in chain(outer)
    assert "<hidden>" in inner.message


# ------------------------------------------------------------------ echoed by a server


async def test_a_401_that_quotes_the_key_never_shows_it(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        key = request.headers.get("TT-API-KEY", "")
        body = {"error": {"message": f"Incorrect API key provided: {key}.", "code": None}}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    url = await serve(app)
    caplog.set_level(logging.DEBUG, logger="ttapi_async")
    async with tt.Client(KEY, base_url=url, max_retries=0) as client:
        with pytest.raises(tt.AuthenticationError) as info:
            await client.images.generate(prompt="x", model="gpt-image-1")
        reqs = [tt.GPT4oRequest(prompt=f"p{i}") for i in range(3)]
        outcomes: list[tt.BulkOutcome] = []
        with pytest.raises(tt.BulkPausedError) as paused:
            async with client.bulk(reqs) as run:
                outcomes += [o async for o in run]
    assert "Incorrect API key provided: <hidden>" in str(info.value)
    assert KEY not in chain(info.value)
    assert KEY not in chain(paused.value)
    assert KEY not in repr(outcomes)
    assert caplog.records  # the pause is logged ...
    assert KEY not in log_text(caplog.records)  # ... without the key


async def test_a_400_that_quotes_the_hook_url_never_shows_the_token(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hooks: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        hook = (await request.json())["hookUrl"]
        hooks.append(hook)
        body = {"status": "FAILED", "message": f"hookUrl is not reachable: {hook}", "data": None}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/openai/4o-image/generations", refuse)
    url = await serve(app)
    receiver = tt.WebhookReceiver("https://hooks.example.com/ttapi")
    caplog.set_level(logging.DEBUG, logger="ttapi_async")
    journal = tmp_path / "run.sqlite"
    async with tt.Client(KEY, base_url=url, webhook=receiver, max_retries=0) as client:
        with pytest.raises(tt.BadRequestError) as info:
            await client.gpt4o.submit(prompt="one")
        reqs = [tt.GPT4oRequest(prompt=f"p{i}") for i in range(3)]
        async with client.bulk(reqs, journal=journal) as run:
            outcomes = [o async for o in run]
    tokens = [h.rsplit("/", 1)[1] for h in hooks]
    assert len(tokens) == 4
    assert "hookUrl is not reachable: https://hooks.example.com/ttapi/<hidden>" in str(info.value)
    texts = [chain(info.value), log_text(caplog.records), repr(outcomes)]
    texts += [o.reason or "" for o in outcomes]
    texts += [chain(o.error) for o in outcomes if o.error is not None]
    assert all(o.state is tt.ItemState.FAILED for o in outcomes)
    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for token in tokens:
        assert all(token not in t for t in texts)
        assert token.encode() not in journal_bytes


async def test_a_hand_given_hook_url_is_hidden_too(serve: Serve) -> None:
    """A hook URL passed by hand (no receiver) is this call's secret: hidden in its errors."""
    mine = "https://me.example.com/cb?token=TopSecretToken123"

    async def refuse(request: web.Request) -> web.Response:
        hook = (await request.json())["hookUrl"]
        return web.Response(status=502, text=f"<html>upstream refused {hook}</html>")

    app = web.Application()
    app.router.add_post("/openai/4o-image/generations", refuse)
    url = await serve(app)
    async with tt.Client(KEY, base_url=url, max_retries=0) as client:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            await client.gpt4o.submit(prompt="one", hook_url=mine)
    assert "TopSecretToken123" not in chain(info.value)


async def test_a_failed_job_whose_message_quotes_its_hook_url(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TTAPI's failure message may quote the job's hook URL: the token stays hidden."""
    hooks: dict[str, str] = {}

    async def submit(request: web.Request) -> web.Response:
        job_id = f"job-{len(hooks)}"
        hooks[job_id] = (await request.json())["hookUrl"]
        return web.json_response({"status": "SUCCESS", "data": {"jobId": job_id}})

    async def fetch(request: web.Request) -> web.Response:
        job_id = request.query["jobId"]
        message = f"callback to {hooks[job_id]} refused the connection"
        data = {"jobId": job_id, "hookUrl": hooks[job_id], "prompt": "p"}
        return web.json_response({"status": "FAILED", "message": message, "data": data})

    app = web.Application()
    app.router.add_post("/openai/4o-image/generations", submit)
    app.router.add_get("/openai/4o-image/fetch", fetch)
    url = await serve(app)
    receiver = tt.WebhookReceiver("https://hooks.example.com/ttapi")
    caplog.set_level(logging.DEBUG, logger="ttapi_async")
    policy = tt.PollPolicy(initial_delay=0.05, dense_interval=0.05, backstop_interval=0.05)
    async with tt.Client(KEY, base_url=url, webhook=receiver, poll_policy=policy) as client:
        job = await client.gpt4o.submit(prompt="one")
        with pytest.raises(tt.JobFailedError) as info:
            await job.wait(timeout=10)
        reqs = [tt.GPT4oRequest(prompt=f"p{i}") for i in range(2)]
        async with client.bulk(reqs, journal=tmp_path / "j.sqlite") as run:
            outcomes = [o async for o in run]
    assert "refused the connection" in str(info.value)
    snapshot = info.value.snapshot
    assert snapshot is not None
    assert snapshot.message is not None
    assert snapshot.message.startswith("callback to https://hooks.example.com/ttapi/")
    texts = [chain(info.value), log_text(caplog.records), repr(outcomes)]
    texts += [o.reason or "" for o in outcomes]
    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert len(hooks) == 3
    for hook in hooks.values():
        token = hook.rsplit("/", 1)[1]
        assert all(token not in t for t in texts)
        assert token.encode() not in journal_bytes


# ------------------------------------------------------------------ the leak scan


class EchoingProxy:
    """A proxy in front of the emulator that quotes secrets back in its faults.

    Every third submit is refused with a 400 quoting its hook URL and the key; every
    fifth fetch answers a 502 HTML page quoting the key; every seventh gets a 429 whose
    body quotes the key; the rest go to the emulator untouched. It records every hook
    URL it sees, so the test knows each token.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hooks: list[str] = []
        self._submits = itertools.count(1)
        self._fetches = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("TT-API-KEY", "")
        body = await request.read()
        if request.path == "/openai/4o-image/generations":
            hook = json.loads(body).get("hookUrl")
            if hook:
                self.hooks.append(hook)
            if next(self._submits) % 3 == 0:
                message = f"invalid hookUrl {hook} for key {key}"
                return web.json_response({"status": "FAILED", "message": message}, status=400)
        if request.path == "/openai/4o-image/fetch":
            n = next(self._fetches)
            if n % 5 == 0:
                return web.Response(
                    status=502, text=f"<html>bad gateway for {key}</html>", content_type="text/html"
                )
            if n % 7 == 0:
                return web.json_response({"error": {"message": f"slow down, {key}"}}, status=429)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as upstream:
            payload = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=payload,
                headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")},
            )


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


async def test_leak_scan_of_a_whole_run_at_debug_with_faults(
    serve: Serve, cli: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and aiohttp's
    async with Emulator(api_key=KEY, job_duration=(0.05, 0.2), seed=7) as emu:
        proxy = EchoingProxy(emu.url)
        url = await serve(proxy.app())
        port = free_port()
        receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
        out = tmp_path / "lib"
        reqs = [tt.GPT4oRequest(prompt=f"leak scan {i}") for i in range(24)]
        async with anyio.create_task_group() as tg:
            await tg.start(receiver.serve, "127.0.0.1", port)
            async with tt.Client(
                KEY,
                base_url=url,
                webhook=receiver,
                timeout=60,
                poll_policy=tt.PollPolicy(dense_interval=0.1, backstop_interval=0.5),
            ) as client:
                async with client.bulk(
                    reqs, save_to=out, journal=out / "journal.sqlite", max_jobs=8
                ) as run:
                    outcomes = [o async for o in run]
            tg.cancel_scope.cancel()

        # The CLI, as a user runs it, against the same echoing proxy.
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("".join(f"cli prompt {i}\n" for i in range(6)))
        env = {**os.environ, "TTAPI_API_KEY": KEY, "TTAPI_BASE_URL": url}
        proc = await anyio.run_process(
            [*cli, "batch", str(prompts), "--out", str(tmp_path / "cli")],
            env=env,
            check=False,
        )

    assert {o.index for o in outcomes} == set(range(24))
    assert any(o.ok for o in outcomes)
    assert any(not o.ok for o in outcomes)  # the faults did reach the run
    assert proc.returncode in {0, 3}, proc.stderr.decode()
    tokens = [h.rsplit("/", 1)[1] for h in proxy.hooks]
    assert len(tokens) >= 24
    secrets = [KEY, *tokens]
    texts = {
        "logs": log_text(caplog.records),
        "outcomes": repr(outcomes),
        "errors": "\n".join(chain(o.error) for o in outcomes if o.error is not None),
        "reasons": "\n".join(o.reason or "" for o in outcomes),
        "receiver": repr(receiver) + repr(client) + repr(client.waiter),
        "cli": proc.stdout.decode() + proc.stderr.decode(),
    }
    blobs = {str(p): p.read_bytes() for p in files_under(tmp_path)}
    assert any(name.endswith(".json") for name in blobs)  # sidecars were written
    assert any("journal" in name for name in blobs)
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into {where}"
        for where, blob in blobs.items():
            assert secret.encode() not in blob, f"a secret leaked into {where}"


# ------------------------------------------------------------------ review findings


def test_a_key_cut_by_the_excerpt_leaves_no_part_of_it() -> None:
    """An excerpt that ends inside a quoted key drops the key's start (30 of 35 chars once)."""
    body = ("x" * 280 + " " + KEY + " tail").encode()
    out = excerpt(body)
    assert KEY[:10] not in out
    assert out.endswith("…")


def test_scrub_covers_param_code_type_and_headers() -> None:
    r = Redactor([KEY])
    err = tt.BadRequestError(
        "bad", status=400, code=KEY, type=KEY, param=KEY, headers={"X-Echo": f"key {KEY}"}
    )
    r.scrub(err)
    assert KEY not in repr(vars(err))


async def test_live_tokens_are_hidden_in_any_spelling() -> None:
    """A token echoed bare, under another host name or an escaped slash is still hidden."""
    rec = tt.WebhookReceiver("http://127.0.0.1:9/hooks")
    token, url = await rec.register()
    r = Redactor([KEY], [rec.public_url], rec._knows)
    for text in (
        f"callback POST /hooks/{token} answered 404",
        f"hook token {token} rejected",
        f"callback to HTTP://LOCALHOST:9/hooks/{token} failed",
        url.replace("/", "\\u002F"),
    ):
        assert token not in r.redact(text), text
    assert r.redact("A" * 32) == "A" * 32  # a run of the same length that is no token


async def test_an_image_url_that_quotes_the_key_is_hidden_in_the_sidecar(
    serve: Serve, tmp_path: Path
) -> None:
    png = _imagegen.image("png", 8, 8, alpha=False).data

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", image)
    url = await serve(app)
    result = tt.JobResult(job_id="job-1", image_url=f"{url}/img/{KEY}.png?sig=1")
    async with tt.Client(KEY, base_url=url) as client:
        saved = await client.save(result, tmp_path)
    assert saved
    for path in tmp_path.iterdir():
        assert KEY.encode() not in path.read_bytes()


def test_a_secret_with_a_lone_surrogate_is_hidden_without_error() -> None:
    """A hostile snapshot's hook URL may hold "\\ud800"; the redactor must not raise on it."""
    r = Redactor(["https://h.example/hook/\ud800token"])
    assert r.redact("echo https://h.example/hook/\ud800token") == "echo <hidden>"
