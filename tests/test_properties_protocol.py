"""Property suite: every parser and every client route against hostile replies.

The invariant (issue 8): a call ends with a valid result or a ``TTAPIError`` subclass,
nothing else, ever; and the client stays usable afterwards. Replies are drawn by
hypothesis: valid bodies with fields swapped for wrong types, deep nesting (around 1,000
and 1,100 levels: orjson accepts 1,024), huge numbers, NaN/Infinity, lone surrogates,
random JSON, empty, truncated and non-UTF-8 bodies, random statuses and odd headers.
Each property runs with orjson and with the standard library's json.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import ttapi_async as tt
from ttapi_async import _json
from ttapi_async._protocol import (
    parse_callback,
    parse_error,
    parse_fetch,
    parse_images,
    parse_submit,
    retry_after,
)


SECRET = "SECRET-TOKEN"
HOOK = f"https://hooks.example/t/{SECRET}"
JOB = "job-1"

# ----------------------------------------------------------------------------- valid bodies

USAGE = {
    "input_tokens": 9,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 9},
    "output_tokens": 4160,
    "output_tokens_details": {"image_tokens": 4100, "text_tokens": 60},
    "total_tokens": 4169,
}
IMAGES = {
    "created": 1_700_000_000,
    "data": [{"b64_json": "aGk=", "url": "https://cdn.example/a.png", "revised_prompt": "p"}],
    "usage": USAGE,
    "background": "opaque",
    "output_format": "png",
    "quality": "high",
    "size": "1024x1024",
}
JOB_DATA = {
    "jobId": JOB,
    "prompt": "a fox",
    "referImages": ["https://cdn.example/r.png"],
    "imageUrl": "https://cdn.example/out.png",
    "quota": "2",
    "finishTime": "2025-03-31 04:25:33",
    "hookUrl": HOOK,
}
IMAGE_REPLIES: list[Any] = [
    IMAGES,
    {"created": 1},
    {"status": "SUCCESS", "message": "success", "data": IMAGES},
]
SUBMIT_REPLIES: list[Any] = [{"status": "SUCCESS", "message": "", "data": {"jobId": JOB}}]
FETCH_REPLIES: list[Any] = [
    {"status": "SUCCESS", "message": "success", "jobId": JOB, "data": JOB_DATA},
    {"status": "ON_QUEUE", "message": None, "job_id": JOB, "data": {"imageUrl": None}},
    {"status": "FAILED", "message": "prompt violation", "jobId": JOB, "data": {"quota": "2"}},
]
TEMPLATES: list[Any] = [
    *IMAGE_REPLIES,
    *SUBMIT_REPLIES,
    *FETCH_REPLIES,
    {"status": "FAILED", "message": "job not found", "data": None},
    {
        "error": {
            "message": "bad size",
            "type": "invalid_request_error",
            "param": "size",
            "code": "x",
        }
    },
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value that a mutation can replace: dict keys and list items."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _nested(depth: int, open_: str, close: str) -> str:
    return open_ * depth + "1" + close * depth


# Raw JSON fragments json.dumps cannot write (or writes slowly): spliced in by placeholder.
RAW = [
    _nested(1000, "[", "]"),
    _nested(1100, "[", "]"),
    _nested(1000, '{"a":', "}"),
    _nested(1022, "[", "]"),
    "9" * 400,
    "-" + "9" * 400,
    "9" * 5000,
    "18446744073709551616",
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"x\\udfff\\ud800y"',
    '"https://hooks.example/t/\\ud800"',
]
_PLACEHOLDER = re.compile(rb'"@@RAW(\d+)@@"')

raw_values = st.sampled_from([f"@@RAW{i}@@" for i in range(len(RAW))])
# The branches are drawn about evenly: the raw fragments (deep, huge, NaN...) get three.
hostile_values = st.one_of(
    raw_values,
    raw_values,
    raw_values,
    st.sampled_from(["job-2", "", JOB.upper(), 0, 1.5, True, [JOB], {"jobId": JOB}]),
    st.none(),
    st.integers() | st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20) | st.text(st.characters(categories=["Cs", "Co", "Zs"]), max_size=5),
    st.lists(st.integers(), max_size=3) | st.lists(raw_values, min_size=1, max_size=2),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["created", "data", "status", "message", "jobId", "job_id", "error", "usage"]
            )
            | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _dump(obj: Any) -> bytes:
    """JSON with NaN/Infinity, escaped lone surrogates and the raw fragments spliced in."""
    text = json.dumps(obj, allow_nan=True).encode()
    return _PLACEHOLDER.sub(lambda m: RAW[int(m.group(1))].encode(), text)


@st.composite
def mutated(draw: st.DrawFn, templates: list[Any] = TEMPLATES, fewest: int = 1) -> bytes:
    """A valid body with ``fewest`` to 3 fields replaced by hostile values or removed."""
    # Deep copies: sampled objects are shared between examples and must stay unchanged.
    obj = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(fewest, 3))):
        paths = list(_paths(obj))
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        target = obj
        for step in parents:
            target = target[step]
        if isinstance(target, dict) and draw(st.booleans()) and draw(st.booleans()):
            del target[last]
        else:
            target[last] = copy.deepcopy(draw(hostile_values))
    return _dump(obj)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    raw = _dump(draw(st.sampled_from(TEMPLATES)))
    return raw[: draw(st.integers(0, len(raw)))]


bodies = st.one_of(
    mutated(),
    mutated(),
    mutated(),
    mutated(),
    mutated(),
    st.builds(_dump, json_values),
    st.builds(_dump, hostile_values),
    truncated(),
    st.sampled_from([b"", b" ", b"null", b"<html>502 Bad Gateway</html>", b"\xff\xfe\xfd"]),
    st.binary(max_size=64),
    st.builds(lambda o: json.dumps(o).encode("utf-16"), st.sampled_from(TEMPLATES)),
    st.builds(
        lambda o: json.dumps({**o, "message": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
        st.sampled_from([t for t in TEMPLATES if "status" in t]),
    ),
)

# About half are 200, so the bodies reach the success parsers.
statuses = st.one_of(
    st.just(200),
    st.sampled_from(
        [200, 201, 202, 204, 299, 301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 409, 413]
    )
    | st.sampled_from([422, 429, 499, 500, 502, 503, 504, 599])
    | st.integers(200, 599),
)

header_values = st.one_of(
    st.sampled_from(
        ["0", "1", "0.5", "-1", "nan", "inf", "1e400", "9" * 400, "\u0663", "1_0", "", " 2 "]
    ),
    st.sampled_from(
        ["Wed, 21 Oct 2015 07:28:10 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Sun, 00 Foo 0 99:99"]
    ),
    st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=20),
)

headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after-ms", "Content-Type", "X-Request-Id"]),
    header_values,
    max_size=3,
)


# ----------------------------------------------------------------------------- backends


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each property runs with orjson (the speedups extra) and with the stdlib json."""
    if request.param == "orjson":
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(_json, "loads", orjson.loads)
    else:
        monkeypatch.setattr(_json, "loads", _json._std_loads)
    return str(request.param)


def _check_error(exc: BaseException) -> None:
    """What may leave a call: a TTAPIError whose text can be printed and hides the hook token."""
    assert isinstance(exc, tt.TTAPIError), f"{type(exc).__name__} escaped: {exc!r}"[:300]
    text = str(exc) + repr(exc)
    assert SECRET not in text
    if isinstance(exc, tt.RateLimitError | tt.QueueFullError):
        _check_hint(exc.retry_after)


def _check_hint(hint: float | None) -> None:
    assert hint is None or (math.isfinite(hint) and 0 <= hint <= 86_400)


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        result = call()
    except Exception as exc:
        _check_error(exc)
        return exc
    repr(result)
    return result


def _check_success_parsers(status: int, headers: dict[str, str], body: bytes) -> None:
    images = _outcome(lambda: parse_images(status, headers, body))
    if not isinstance(images, Exception):
        assert type(images.created) is int
        assert all(isinstance(item, tt.ImageData) for item in images.data)
    job_id = _outcome(lambda: parse_submit(status, headers, body))
    if not isinstance(job_id, Exception):
        assert isinstance(job_id, str)
        assert job_id
    snap = _outcome(lambda: parse_fetch(status, headers, body, JOB))
    if not isinstance(snap, Exception):
        # Never another job's state: the asked id, or a JobMismatchError.
        assert snap.job_id == JOB
        assert isinstance(snap.status, tt.JobStatus)
        assert snap.quota is None or math.isfinite(snap.quota)


PARSER_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PARSER_SETTINGS
@given(status=statuses, headers=headers, body=bodies)
def test_every_parser_answers_with_a_result_or_a_typed_error(
    backend: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    """parse_images/submit/fetch/callback/error and retry_after, over hostile replies."""
    for code in {status, 200}:  # the drawn status, and the body as a success
        _check_success_parsers(code, headers, body)
    callback = _outcome(lambda: parse_callback(body))
    if isinstance(callback, Exception):
        assert isinstance(callback, tt.ResponseFormatError)
    else:
        assert isinstance(callback.job_id, str)
        assert callback.job_id
    for operation in ("", "images.generate", "gpt4o.submit", "gpt4o.fetch"):
        err = parse_error(max(status, 400), headers, body, operation=operation)
        _check_error(err)
        assert isinstance(err, tt.APIStatusError)
    _check_hint(retry_after(headers))


# ----------------------------------------------------------------------------- over HTTP


@attrs.define
class Reply:
    """What the test server answers next."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    mode: str = "normal"  # "drop": close the connection; "short": a body cut short


class HostileServer:
    """One aiohttp app on 127.0.0.1 answering every request with the current :class:`Reply`."""

    def __init__(self) -> None:
        self.reply = Reply()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        reply = self.reply
        if reply.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        status = reply.status
        body = b"" if status in {204, 304} else reply.body
        if reply.mode == "short":
            resp = web.StreamResponse(status=status, headers=reply.headers)
            resp.content_length = len(body) + 100
            await resp.prepare(request)
            await resp.write(body)
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(status=status, headers=reply.headers, body=body)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    server = HostileServer()
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.fixture
async def client(hostile: HostileServer) -> AsyncIterator[tt.Client]:
    base = str(hostile.server.make_url("")).rstrip("/")
    async with tt.Client("sk-test", base_url=base, retry=tt.RetryPolicy(max_retries=0)) as c:
        yield c


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
ROUTES = ["images.generate", "images.edit", "dalle3.generate", "gpt4o.submit", "gpt4o.fetch"]


async def _call(client: tt.Client, route: str) -> object:
    if route == "images.generate":
        return await client.images.generate(prompt="a fox", model="gpt-image-1", timeout=5)
    if route == "images.edit":
        return await client.images.edit(image=PNG, prompt="a fox", model="gpt-image-1", timeout=5)
    if route == "dalle3.generate":
        return await client.dalle3.generate(prompt="a fox", size="1024x1024", timeout=5)
    if route == "gpt4o.submit":
        return await client.gpt4o.submit(prompt="a fox", timeout=5)
    return await client.gpt4o.fetch(JOB, timeout=5)


def _check_result(route: str, result: object) -> None:
    if route.startswith(("images.", "dalle3.")):
        assert isinstance(result, tt.ImagesResponse)
    elif route == "gpt4o.submit":
        assert isinstance(result, tt.Job)
        assert result.job_id
    else:
        assert isinstance(result, tt.JobSnapshot)
        assert result.job_id == JOB


GOOD = Reply(200, {}, _dump({"status": "ON_QUEUE", "message": None, "jobId": JOB, "data": {}}))

locations = st.sampled_from(
    ["/v1/images/generations", "http://evil.example/x", "", "::::", "/caf\u00e9", "//x"]
)


ROUTE_REPLIES = {
    "images.generate": IMAGE_REPLIES,
    "images.edit": IMAGE_REPLIES,
    "dalle3.generate": IMAGE_REPLIES,
    "gpt4o.submit": SUBMIT_REPLIES,
    "gpt4o.fetch": FETCH_REPLIES,
}


@st.composite
def route_and_reply(draw: st.DrawFn) -> tuple[str, Reply]:
    """A route, and a reply: a hostile one, or (a third of the time) the route's own kind
    of 200 body, valid or with a field or two gone wrong."""
    route = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 2)) == 0:
        body = draw(mutated(ROUTE_REPLIES[route], fewest=0))
        return route, Reply(200, draw(headers), body)
    status = draw(statuses)
    hdrs = draw(headers)
    if 300 <= status < 400 and draw(st.booleans()):
        hdrs["Location"] = draw(locations)
    mode = draw(st.sampled_from(["normal"] * 8 + ["drop", "short"]))
    return route, Reply(status, hdrs, draw(bodies), mode)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=route_and_reply())
@pytest.mark.anyio
async def test_every_route_answers_with_a_result_or_a_typed_error(
    backend: str, hostile: HostileServer, client: tt.Client, case: tuple[str, Reply]
) -> None:
    """Each client route over real HTTP: a result or a TTAPIError, and the client lives on."""
    route, hostile.reply = case
    try:
        result = await _call(client, route)
    except Exception as exc:
        _check_error(exc)
        event(f"{route}: {type(exc).__name__}")  # shown by --hypothesis-show-statistics
    else:
        _check_result(route, result)
        event(f"{route}: result")
    hostile.reply = GOOD
    assert (await client.gpt4o.fetch(JOB, timeout=5)).job_id == JOB
