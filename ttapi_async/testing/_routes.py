"""The emulator's API routes: one handler per TTAPI endpoint, and the table that names them.

Strictly private. Each handler reads its request, checks it with the emulator's own rule
table (:mod:`._rules`, never the SDK's), admits and bills it (:mod:`._billing`), and
answers in its route's shape (:mod:`._replies`): OpenAI's raw bodies on ``/v1/images/*``,
the TTAPI envelope on the legacy DALL-E 3 and the 4o-image routes (wire §11.1). What
happens before a handler runs (auth, body caps, injected faults) is the gateway's
(:mod:`._gateway`).

Bodies are capped (``max_body``, 413) and timed (``read_timeout``, 408) as they are
read: a handler reads through :meth:`Routes.body` or inside :meth:`Routes.reading`,
and a stalled body surfaces as :class:`SlowBody` for the gateway to answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import anyio
import attrs
from aiohttp import web

from ttapi_async import _json
from ttapi_async._protocol import (
    PATH_4O_FETCH,
    PATH_4O_SUBMIT,
    PATH_DALLE3,
    PATH_EDIT,
    PATH_GENERATE,
    PATH_GPT_FETCH,
    PATH_GPT_SUBMIT,
    ROUTE_4O,
    ROUTE_GPT,
)

from . import _imagegen, _rules
from ._billing import COST_4O
from ._jobs import draw_seconds
from ._replies import STATUS_MESSAGES, envelope_error, openai_error, reply


if TYPE_CHECKING:
    import random

    from ._billing import Billing
    from ._cdn import Cdn
    from ._counters import Counters
    from ._jobs import JobBoard


__all__ = ["MODERATION_MARKER", "Route", "RouteKnobs", "Routes", "SlowBody"]

#: Prompt marker that makes the emulator refuse a prompt (moderation) on purpose.
MODERATION_MARKER: Final = "[moderation]"
#: In a streamed call's prompt: the stream is cut after its first event ...
STREAM_CUT_MARKER: Final = "[stream-cut]"
#: ... or an error event follows its first event.
STREAM_ERROR_MARKER: Final = "[stream-error]"
#: Seconds between two events of a stream: partials arrive over time, as a real one's do.
STREAM_GAP: Final = 0.01

_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_MAX_SIDE: Final = 4096
_NOT_AN_OBJECT: Final = "Parameter error: the body must be a JSON object"
_DALLE_REFUSAL: Final = "Your request was rejected as a result of our safety system."
# OpenAI's token counts for gpt-image-1 output at 1024x1024, by quality.
_OUTPUT_TOKENS: Final = {"low": 272, "medium": 1056, "high": 4160}
_IMAGE_INPUT_TOKENS: Final = 323

Handler = Callable[[web.BaseRequest, str], Awaitable[web.StreamResponse]]


class SlowBody(Exception):  # noqa: N818 - a signal inside the emulator, never seen outside
    """A request body did not arrive within ``read_timeout``."""


@attrs.frozen
class Route:
    """One API route: its handler, the methods it takes, and its reply family."""

    handler: Handler
    methods: frozenset[str]
    #: /v1 routes: Bearer auth accepted, OpenAI error shape for non-gateway 4xx.
    openai: bool


class RouteKnobs(Protocol):
    """The emulator's settings the routes read (each may change while the server runs)."""

    sync_latency: float | tuple[float, float]
    read_timeout: float
    max_body: int
    #: Model names accepted besides the rule table's (TTAPI's list is not closed).
    extra_models: frozenset[str]


def _openai_refusal(err: _rules.Refused) -> web.Response:
    return openai_error(400, err.message, param=err.param, code=err.code)


def _envelope_refusal(err: _rules.Refused) -> web.Response:
    return envelope_error(400, f"Parameter error: {err.message}")


def _invalid_json_openai() -> web.Response:
    return openai_error(
        400, "We could not parse the JSON body of your request. The body must be a JSON object."
    )


def _moderation_openai(model: str) -> web.Response:
    if model.startswith("dall-e"):
        return openai_error(400, _DALLE_REFUSAL, code="content_policy_violation")
    return openai_error(
        400,
        "Your request was rejected by the safety system.",
        type_="image_generation_user_error",
        code="moderation_blocked",
    )


def _parse_size(size: object) -> tuple[int, int]:
    """Pixel size of ``WxH``; ``auto``, absent or nonsense (unknown models) give 1024x1024."""
    if isinstance(size, str) and "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit() and 0 < int(w) <= _MAX_SIDE and 0 < int(h) <= _MAX_SIDE:
            return int(w), int(h)
    return 1024, 1024


class Routes:
    """The request handlers of the five TTAPI endpoints the emulator serves."""

    def __init__(
        self,
        knobs: RouteKnobs,
        counters: Counters,
        rng: random.Random,
        billing: Billing,
        board: JobBoard,
        cdn: Cdn,
    ) -> None:
        """Serve with the emulator's parts; ``knobs`` are read per request."""
        self._knobs = knobs
        self._counters = counters
        self._rng = rng
        self._billing = billing
        self._board = board
        self._cdn = cdn

    def table(self) -> dict[str, Route]:
        """The route table: path to handler, methods and reply family."""
        post = frozenset({"POST"})
        return {
            PATH_GENERATE: Route(self.generate, post, openai=True),
            PATH_EDIT: Route(self.edit, post, openai=True),
            PATH_DALLE3: Route(self.dalle3, post, openai=False),
            PATH_4O_SUBMIT: Route(self.submit_4o, post, openai=False),
            PATH_4O_FETCH: Route(self.fetch, frozenset({"GET", "POST"}), openai=False),
            PATH_GPT_SUBMIT: Route(self.submit_gpt, post, openai=False),
            PATH_GPT_FETCH: Route(self.fetch_gpt, frozenset({"GET", "POST"}), openai=False),
        }

    # ----------------------------------------------------------------------- bodies

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Bound the reading of a request body by ``read_timeout`` (a stalled sender)."""
        try:
            with anyio.fail_after(self._knobs.read_timeout):
                yield
        except TimeoutError:
            raise SlowBody from None

    async def body(self, request: web.BaseRequest) -> bytes:
        """The whole body of ``request``, read within ``read_timeout``."""
        with self.reading():
            return await request.read()

    async def _json_object(self, request: web.BaseRequest) -> dict[str, Any] | None:
        body = await self.body(request)
        try:
            obj = _json.loads(body)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    # ----------------------------------------------------------------------- /v1 routes

    async def generate(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """``POST /v1/images/generations`` (wire §3)."""
        p = await self._json_object(request)
        if p is None:
            return _invalid_json_openai()
        try:
            model = _rules.check_generate(p, self._knobs.extra_models)
        except _rules.Refused as err:
            return _openai_refusal(err)
        return await self._sync_images(key, PATH_GENERATE, p, model, 0, request)

    async def edit(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """``POST /v1/images/edits``: multipart (wire §4), or JSON by reference (2026 §4)."""
        if request.content_type == "application/json":
            p = await self._json_object(request)
            if p is None:
                return _invalid_json_openai()
            try:
                model, count = _rules.check_edit_json(p, self._knobs.extra_models)
            except _rules.Refused as err:
                return _openai_refusal(err)
            return await self._sync_images(key, PATH_EDIT, p, model, count, request)
        if request.content_type != "multipart/form-data":
            return openai_error(
                400,
                f"Invalid Content-Type header ({request.content_type}), "
                "expected multipart/form-data.",
            )
        fields: dict[str, str] = {}
        images: list[bytes] = []
        mask: bytes | None = None
        total = 0
        limit = self._knobs.max_body
        try:
            with self.reading():
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, aiohttp.BodyPartReader):
                        continue  # a nested multipart: nothing OpenAI sends
                    name = part.name or ""
                    data = bytes(await part.read())  # each part is capped at max_body ...
                    total += len(data)
                    if total > limit:  # ... and so are all of them together
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=total)
                    if name == "image" or name.startswith("image["):
                        images.append(data)
                    elif name == "mask":
                        mask = data
                    else:
                        fields[name] = data.decode("utf-8", "replace")
        except ValueError:
            return openai_error(400, "The multipart body could not be parsed.")
        try:
            p = _rules.form_params(fields)
            uploads = [_rules.read_upload(b) for b in images]
            model = _rules.check_edit(
                p,
                uploads,
                _rules.read_upload(mask) if mask is not None else None,
                self._knobs.extra_models,
            )
        except _rules.Refused as err:
            return _openai_refusal(err)
        return await self._sync_images(key, PATH_EDIT, p, model, len(images), request)

    async def _sync_images(
        self,
        key: str,
        path: str,
        p: Mapping[str, Any],
        model: str,
        input_images: int,
        request: web.BaseRequest | None = None,
    ) -> web.StreamResponse:
        """Moderation, billing, latency and the body of an accepted /v1 images call.

        With ``stream: true`` (2026 §5) the body is an SSE stream: ``partial_images``
        partial events per image, then its completed event, ``STREAM_GAP`` apart.
        """
        prompt: str = p["prompt"]
        if MODERATION_MARKER in prompt:
            return _moderation_openai(model)
        cost = p.get("n") or 1
        denied = self._billing.admit(key, cost, path)
        if denied is not None:
            return envelope_error(denied, STATUS_MESSAGES[denied])
        self._counters.submits_by_prompt[prompt] += 1
        self._billing.record(path, prompt, cost)
        try:
            latency = draw_seconds(self._knobs.sync_latency, self._rng)
            if latency > 0:
                await anyio.sleep(latency)
            body = await self._images_body(p, model, input_images)
        finally:
            self._billing.release(key)
        if p.get("stream") is True and request is not None:
            kind = "image_edit" if path == PATH_EDIT else "image_generation"
            return await _stream_images(request, body, kind, p)
        return reply(200, _json.dumps(body))

    async def _images_body(
        self, p: Mapping[str, Any], model: str, input_images: int
    ) -> dict[str, Any]:
        """Build the OpenAI ImagesResponse for accepted parameters (wire §3, §8)."""
        n = p.get("n") or 1
        created = int(time.time())
        cdn = self._cdn
        if model in {"dall-e-2", "dall-e-3"}:
            width, height = _parse_size(p.get("size"))
            image = await cdn.image("png", width, height, alpha=False, prompt=p["prompt"])
            b64 = p.get("response_format") == "b64_json"
            items: list[dict[str, Any]] = []
            for _ in range(n):
                item: dict[str, Any] = {"b64_json": image.b64} if b64 else {"url": cdn.add(image)}
                if model == "dall-e-3":
                    item["revised_prompt"] = f"A detailed rendering of: {p['prompt']}"
                items.append(item)
            return {"created": created, "data": items}
        # GPT image models, and any model the rules do not know, answer the gpt-image way.
        fmt = p.get("output_format")
        fmt = fmt if fmt in _imagegen.MIME_TYPES else "png"
        alpha = p.get("background") == "transparent" and fmt != "jpeg"
        width, height = _parse_size(p.get("size"))
        image = await cdn.image(fmt, width, height, alpha=alpha, prompt=p["prompt"])
        quality = p.get("quality")
        quality = quality if quality in _OUTPUT_TOKENS else "high"
        text_tokens = max(1, len(p["prompt"]) // 4)
        image_tokens = _IMAGE_INPUT_TOKENS * input_images
        output_tokens = n * _OUTPUT_TOKENS[quality] * width * height // (1024 * 1024)
        return {
            "created": created,
            "data": [{"b64_json": image.b64}] * n,
            "usage": {
                "input_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
                "output_tokens": output_tokens,
                "total_tokens": text_tokens + image_tokens + output_tokens,
            },
            "background": "transparent" if alpha else "opaque",
            "output_format": fmt,
            "quality": quality,
            "size": f"{width}x{height}",
        }

    # ----------------------------------------------------------------------- TTAPI routes

    async def dalle3(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """The legacy ``POST /openai/v1/images/generations``: OpenAI's body in the envelope."""
        p = await self._json_object(request)
        if p is None:
            return envelope_error(400, _NOT_AN_OBJECT)
        try:
            _rules.check_dalle3(p)
        except _rules.Refused as err:
            return _envelope_refusal(err)
        prompt: str = p["prompt"]
        if MODERATION_MARKER in prompt:
            return envelope_error(400, _DALLE_REFUSAL)
        cost = p.get("n") or 1
        denied = self._billing.admit(key, cost, PATH_DALLE3)
        if denied is not None:
            return envelope_error(denied, STATUS_MESSAGES[denied])
        self._billing.record(PATH_DALLE3, prompt, cost)
        try:
            latency = draw_seconds(self._knobs.sync_latency, self._rng)
            if latency > 0:
                await anyio.sleep(latency)
            inner = await self._images_body(p, "dall-e-3", 0)
        finally:
            self._billing.release(key)
        return reply(200, _json.dumps({"status": "SUCCESS", "message": "success", "data": inner}))

    async def submit_4o(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """``POST /openai/4o-image/generations``: a job id now, the image later (wire §6)."""
        p = await self._json_object(request)
        if p is None:
            return envelope_error(400, _NOT_AN_OBJECT)
        try:
            _rules.check_submit_4o(p)
        except _rules.Refused as err:
            return _envelope_refusal(err)
        denied = self._billing.admit(key, COST_4O, PATH_4O_SUBMIT)
        if denied is not None:
            return envelope_error(denied, STATUS_MESSAGES[denied])
        prompt: str = p["prompt"]
        self._counters.submits_by_prompt[prompt] += 1
        job = await self._board.submit(
            key, prompt, list(p.get("referImages") or ()), p.get("hookUrl")
        )
        return reply(
            200,
            _json.dumps({"status": "SUCCESS", "message": "success", "data": {"jobId": job.job_id}}),
        )

    async def submit_gpt(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """``POST /openai/gpt/generations``: a job id now, the image later (2026 §6).

        The reply names the id ``job_id``, as the docs show (the 4o route says ``jobId``).
        A ``size`` outside gpt-image-2-plus's bounds is adjusted by TTAPI, not refused
        (2026 §6), and ``aspect_ratio``/``size`` on another model may be ignored (2026
        §10): the emulator accepts them all.
        """
        p = await self._json_object(request)
        if p is None:
            return envelope_error(400, _NOT_AN_OBJECT)
        try:
            model = p.get("model")
            if model is not None:  # none: TTAPI's default, gpt-image-2
                _rules.check_model(
                    model if isinstance(model, str) else repr(model),
                    self._knobs.extra_models,
                    _rules.GPT_ROUTE_MODELS,
                )
            _rules.check_submit_4o(p)  # prompt, referImages, hookUrl: as on the 4o route
        except _rules.Refused as err:
            return _envelope_refusal(err)
        denied = self._billing.admit(key, COST_4O, PATH_GPT_SUBMIT)
        if denied is not None:
            return envelope_error(denied, STATUS_MESSAGES[denied])
        prompt: str = p["prompt"]
        self._counters.submits_by_prompt[prompt] += 1
        job = await self._board.submit(
            key,
            prompt,
            list(p.get("referImages") or ()),
            p.get("hookUrl"),
            route=ROUTE_GPT,
            path=PATH_GPT_SUBMIT,
        )
        body = {"status": "SUCCESS", "message": "success", "data": {"job_id": job.job_id}}
        return reply(200, _json.dumps(body))

    async def fetch_gpt(self, request: web.BaseRequest, key: str) -> web.StreamResponse:
        """``GET|POST /openai/gpt/fetch``: as the 4o fetch, for the jobs of this route."""
        return await self.fetch(request, key, route=ROUTE_GPT)

    async def fetch(
        self, request: web.BaseRequest, key: str, route: str = ROUTE_4O
    ) -> web.StreamResponse:
        """``GET|POST /openai/4o-image/fetch``: jobId in the query, a JSON or a form body.

        A job is found only on the route that made it (another route answers 404).
        """
        job_id: object = request.query.get("jobId")
        if job_id is None and request.method == "POST":
            if request.content_type in _FORM_TYPES:
                with self.reading():
                    form = await request.post()
                job_id = form.get("jobId")
            else:
                # JSON, whatever the Content-Type says: some clients send none at all.
                obj = await self._json_object(request)
                job_id = obj.get("jobId") if obj is not None else None
        try:
            asked = _rules.check_fetch(job_id)
        except _rules.Refused as err:
            return _envelope_refusal(err)
        self._counters.fetches += 1
        job = self._board.fetch(asked, key, route)
        if job is None:
            return envelope_error(404, "job not found")
        return reply(200, _json.dumps(job.body()))


async def _stream_images(
    request: web.BaseRequest, body: Mapping[str, Any], kind: str, p: Mapping[str, Any]
) -> web.StreamResponse:
    """Send an accepted images body as SSE events (2026 §5's framing: ``event:`` = type)."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    partials = p.get("partial_images") or 0
    prompt = str(p.get("prompt", ""))
    echo = {k: body.get(k) for k in ("size", "quality", "background", "output_format")}
    sent = 0
    for image in body.get("data", []):
        b64 = image.get("b64_json")
        events = [
            {"type": f"{kind}.partial_image", "b64_json": b64, "partial_image_index": i}
            for i in range(partials)
        ]
        events.append({"type": f"{kind}.completed", "b64_json": b64, "usage": body.get("usage")})
        for event in events:
            if sent == 1 and STREAM_CUT_MARKER in prompt:
                response.force_close()
                return response  # the connection closes mid-stream
            if sent == 1 and STREAM_ERROR_MARKER in prompt:
                error = {
                    "error": {
                        "message": "The image could not be generated.",
                        "code": "server_error",
                    }
                }
                await response.write(b"event: error\ndata: " + _json.dumps(error) + b"\n\n")
                return response
            data = {**event, **echo, "created_at": body.get("created")}
            frame = b"event: " + event["type"].encode() + b"\ndata: " + _json.dumps(data) + b"\n\n"
            await response.write(frame)
            sent += 1
            await anyio.sleep(STREAM_GAP)
    await response.write_eof()
    return response
