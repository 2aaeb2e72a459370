"""The sans-I/O core: build requests and parse replies, over plain values and bytes.

Strictly private. Nothing here touches the network or an event loop (compare h11 and
gidgethub's ``sansio``): every function takes values and returns values or raises, so the
whole wire format is tested without a server.

Two body families meet here (``ttapi-wire.md`` section 11):

* ``/v1/images/*`` answer with OpenAI's ``ImagesResponse``, and with OpenAI's
  ``{"error": {message, type, param, code}}`` on upstream errors;
* everything else, and TTAPI's gateway errors on every route, use the envelope
  ``{"status": "SUCCESS" | "FAILED" | <job state>, "message": ..., "data": ...}``.

The envelope's ``status`` means two things (section 2.2). On a fetch, a reply that carries
the job (a ``data`` object) with ``FAILED`` is a job that failed: it is returned as a
snapshot. An HTTP error, or ``FAILED`` with no job (``data: null``), is a failed request:
it is raised.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import attrs

from . import _json
from ._errors import (
    APIStatusError,
    JobMismatchError,
    JobNotFoundError,
    ResponseFormatError,
    ValidationError,
    excerpt,
    redact,
    status_error,
)
from ._images import EXTENSIONS, ImageInfo, sniff
from ._models import ImagesResponse, JobSnapshot, ResponseInfo
from ._rules import (
    GENERATE_MODELS,
    JSON_EDIT_MODEL,
    check_dalle3,
    check_edit,
    check_fetch,
    check_generate,
    check_submit_4o,
    check_submit_gpt,
    implied_model,
)
from ._serde import StructureError, structure_images, structure_snapshot, text_of
from ._types import FileID, ImageRef


__all__ = [
    "API_KEY_HEADER",
    "EditImage",
    "Multipart",
    "RequestSpec",
    "build_dalle3",
    "build_edit",
    "build_fetch",
    "build_generate",
    "build_submit_4o",
    "callback_snapshot",
    "parse_callback",
    "parse_error",
    "parse_fetch",
    "parse_images",
    "parse_submit",
    "retry_after",
]

API_KEY_HEADER: Final = "TT-API-KEY"

PATH_GENERATE: Final = "/v1/images/generations"
PATH_EDIT: Final = "/v1/images/edits"
PATH_DALLE3: Final = "/openai/v1/images/generations"
PATH_4O_SUBMIT: Final = "/openai/4o-image/generations"
PATH_4O_FETCH: Final = "/openai/4o-image/fetch"
PATH_GPT_SUBMIT: Final = "/openai/gpt/generations"
PATH_GPT_FETCH: Final = "/openai/gpt/fetch"

#: The job routes. A job is fetched (and its callback confirmed) on the route that made it.
ROUTE_4O: Final = "4o-image"
ROUTE_GPT: Final = "gpt"
#: The job routes there are.
ROUTES: Final = frozenset({ROUTE_4O, ROUTE_GPT})
#: ``route: (operation, fetch path)``.
_FETCH_ROUTES: Final = {
    ROUTE_4O: ("gpt4o.fetch", PATH_4O_FETCH),
    ROUTE_GPT: ("gpt.fetch", PATH_GPT_FETCH),
}

_NOT_FOUND_HINTS = ("not found", "not exist", "no such", "invalid jobid", "invalid job id")

# RFC 9110 delay-seconds is 1*DIGIT; a fraction is tolerated (servers send "0.5"). ASCII
# only: float() would also take "٣", "1_0", "inf" and "nan".
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: The longest hint passed on: a day is already "not soon" to every caller, and a bound
#: keeps the arithmetic downstream finite whatever a server sends.
_MAX_RETRY_AFTER = 86_400.0


@attrs.frozen
class Multipart:
    """A multipart/form-data body as plain data; the transport turns it into bytes.

    ``files`` holds ``(field, filename, bytes, mime)``: the MIME type is always given,
    sniffed from the bytes, because the endpoints reject ``application/octet-stream``.
    """

    fields: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str, bytes, str], ...] = attrs.field(repr=False)


class RequestSpec(NamedTuple):
    """One HTTP request, fully described.

    ``billable`` marks calls that create paid work: they are retried only when the
    request provably never reached the server (see :mod:`ttapi_async._retry`).
    ``secrets`` are values in the body that a server's reply must never be repeated
    with (a hook URL carries a token): errors about this request hide them.

    A named tuple rather than an attrs class: one is built per call on the benchmarked
    request path, and a tuple is built in a third of the time of a frozen attrs instance.
    It is immutable all the same, and nothing outside the SDK sees it.
    """

    operation: str
    method: str
    path: str
    body: bytes | Multipart | None = None
    params: Mapping[str, str] | None = None
    json: bool = True
    billable: bool = False
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The body (a prompt, image bytes) and the secrets (hook URLs) stay out of reprs.
        return (
            f"RequestSpec(operation={self.operation!r}, method={self.method!r}, "
            f"path={self.path!r}, billable={self.billable!r})"
        )


@attrs.frozen
class EditImage:
    """One image to upload: its bytes and what :func:`~ttapi_async._images.sniff` found."""

    data: bytes = attrs.field(repr=False)
    info: ImageInfo


def _compact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop parameters that were not given (None), as TTAPI's own clients do."""
    return {k: v for k, v in params.items() if v is not None}


def _merge_extra(body: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    if extra_body:
        body.update(extra_body)
    return body


def _normalise_response_format(params: dict[str, Any]) -> None:
    # gpt-image models always return b64_json and reject the parameter with a 400; asking
    # for what they return anyway is harmless, so drop it instead of failing.
    model = implied_model(params)
    rules = GENERATE_MODELS.get(model) if isinstance(model, str) else None
    if (
        rules is not None
        and not rules.response_format
        and params.get("response_format") == "b64_json"
    ):
        del params["response_format"]


#: What the JSON encoders raise for a value they cannot write: orjson's JSONEncodeError is a
#: TypeError; the stdlib raises TypeError, ValueError or (lone surrogates) UnicodeEncodeError.
_UNENCODABLE = (TypeError, ValueError, OverflowError)


def _unencodable_rule(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError) or "surrogate" in str(exc):
        return "text must be valid Unicode (a lone surrogate such as '\\ud800' cannot be sent)"
    return (
        "must be JSON: strings, numbers (integers within 64 bits), booleans, None, "
        "lists and dicts of them"
    )


def _encode_json(body: Mapping[str, Any]) -> bytes:
    """``body`` as JSON, or a :class:`ValidationError` naming the field that cannot be sent.

    Caller input (a prompt with a lone surrogate, an object in ``extra_body``) must fail
    here, typed and before anything is sent, not inside the encoder or the transport.
    """
    try:
        return _json.dumps(body)
    except _UNENCODABLE:
        pass
    for key, value in body.items():
        try:
            _json.dumps(value)
        except _UNENCODABLE as exc:
            raise ValidationError(str(key), value, _unencodable_rule(exc)) from None
    raise ValidationError("body", "<object>", "cannot be encoded as JSON")


def _form_value(key: str, value: Any) -> str:
    """A multipart field's text, checked to be sendable (UTF-8 without lone surrogates)."""
    try:
        text = value if isinstance(value, str) else _json.dumps(value).decode()
        if not text.isascii():
            text.encode()
    except _UNENCODABLE as exc:
        raise ValidationError(key, value, _unencodable_rule(exc)) from None
    return text


def build_generate(
    params: Mapping[str, Any], extra_body: Mapping[str, Any] | None = None
) -> RequestSpec:
    """Check and build ``POST /v1/images/generations``.

    ``params`` uses OpenAI's parameter names; None means "not given" and is not sent.
    ``extra_body`` is merged last, unchecked: the escape hatch for new parameters.
    """
    body = _compact(params)
    if "response_format" in body:
        _normalise_response_format(body)
    check_generate(body)
    _merge_extra(body, extra_body)
    return RequestSpec("images.generate", "POST", PATH_GENERATE, _encode_json(body), billable=True)


def build_edit(
    params: Mapping[str, Any],
    images: Sequence[EditImage],
    mask: EditImage | None,
    extra_body: Mapping[str, Any] | None = None,
) -> RequestSpec:
    """Check and build the multipart ``POST /v1/images/edits``."""
    p = _compact(params)
    _normalise_response_format(p)
    check_edit(p, [i.info for i in images], mask.info if mask else None)
    fields = _merge_extra(p, extra_body)
    form = tuple((k, _form_value(k, v)) for k, v in fields.items())
    # One image goes as "image", several as "image[]" (OpenAI's array form).
    field = "image" if len(images) == 1 else "image[]"
    files = [
        (field, f"image{i or ''}.{EXTENSIONS.get(img.info.mime, 'bin')}", img.data, img.info.mime)
        for i, img in enumerate(images)
    ]
    if mask is not None:
        files.append(("mask", "mask.png", mask.data, mask.info.mime))
    return RequestSpec(
        "images.edit",
        "POST",
        PATH_EDIT,
        Multipart(fields=form, files=tuple(files)),
        json=False,
        billable=True,
    )


def build_edit_json(
    params: Mapping[str, Any],
    images: Sequence[ImageRef],
    mask: ImageRef | None,
    extra_body: Mapping[str, Any] | None = None,
) -> RequestSpec:
    """Check and build a JSON ``POST /v1/images/edits``: images given by URL or file id.

    The JSON form of the 2026 docs (``images[]`` of ``{"image_url"}`` or ``{"file_id"}``,
    ``mask`` likewise), for the GPT image models. A ``data:`` URL's bytes are checked as
    an upload's would be; an ``https://`` URL's or a file id's are the server's to check.
    """
    p = _compact(params)
    _normalise_response_format(p)
    names = ["image" if len(images) == 1 else f"image[{i}]" for i in range(len(images))]
    infos = [_ref_info(ref, name) for ref, name in zip(images, names, strict=True)]
    mask_info = None if mask is None else _ref_info(mask, "mask")
    checked = p if p.get("model") else {**p, "model": JSON_EDIT_MODEL}
    check_edit(checked, infos, mask_info, has_mask=mask is not None, by_reference=True)
    body = {**p, "images": [_ref_wire(ref) for ref in images]}
    if mask is not None:
        body["mask"] = _ref_wire(mask)
    body = _merge_extra(body, extra_body)
    return RequestSpec("images.edit", "POST", PATH_EDIT, _encode_json(body), billable=True)


_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+)?;base64,(.*)", re.DOTALL)


def _ref_info(ref: ImageRef, param: str) -> ImageInfo | None:
    """What can be known of an image given by reference: a data: URL's bytes, else None."""
    if isinstance(ref, FileID):
        if not isinstance(ref.id, str) or not ref.id.strip():  # type: ignore[redundant-expr]  # a caller may pass anything
            raise ValidationError(param, ref, "a non-empty file id is required")
        return None
    url = ref.url
    if not isinstance(url, str):
        raise ValidationError(param, ref, "a URL string is required")
    if url.startswith("https://") and len(url) > len("https://"):
        return None
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise ValidationError(
            param, ref, "an https:// URL or a data:image/...;base64,... URL is required"
        )
    try:
        data = base64.b64decode(match[2], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValidationError(param, ref, "the data: URL's base64 does not decode") from exc
    info = sniff(data)
    declared = match[1]
    if declared and info.mime not in {declared, "application/octet-stream"}:
        raise ValidationError(param, ref, f"the data: URL says {declared}, its bytes {info.mime}")
    return info


def _ref_wire(ref: ImageRef) -> dict[str, str]:
    return {"file_id": ref.id} if isinstance(ref, FileID) else {"image_url": ref.url}


def build_dalle3(
    params: Mapping[str, Any], extra_body: Mapping[str, Any] | None = None
) -> RequestSpec:
    """Check and build the legacy ``POST /openai/v1/images/generations`` (DALL-E 3)."""
    check_dalle3(params)
    body = _merge_extra(_compact(params), extra_body)
    return RequestSpec("dalle3.generate", "POST", PATH_DALLE3, _encode_json(body), billable=True)


def build_submit_4o(
    prompt: str,
    refer_images: Sequence[str] | str | None,
    hook_url: str | None,
    extra_body: Mapping[str, Any] | None = None,
) -> RequestSpec:
    """Check and build ``POST /openai/4o-image/generations``.

    A bare string for ``refer_images`` is taken as one URL (TTAPI's own curl sample
    sends a string where the schema says array).
    """
    body = _job_body({"prompt": prompt}, refer_images, hook_url)
    check_submit_4o(body)
    return _job_submit("gpt4o.submit", PATH_4O_SUBMIT, body, hook_url, extra_body)


def build_submit_gpt(
    prompt: str,
    *,
    model: str | None,
    aspect_ratio: str | None,
    size: str | None,
    refer_images: Sequence[str] | str | None,
    hook_url: str | None,
    extra_body: Mapping[str, Any] | None = None,
) -> RequestSpec:
    """Check and build ``POST /openai/gpt/generations`` (2026 section 6).

    Only the documented keys are sent, and none that is empty (2026 section 10).
    """
    given = {"prompt": prompt, "model": model, "aspect_ratio": aspect_ratio, "size": size}
    body = _job_body({k: v for k, v in given.items() if v is not None}, refer_images, hook_url)
    check_submit_gpt(body)
    return _job_submit("gpt.submit", PATH_GPT_SUBMIT, body, hook_url, extra_body)


def _job_body(
    fields: dict[str, Any], refer_images: Sequence[str] | str | None, hook_url: str | None
) -> dict[str, Any]:
    """A job submit's body: ``fields``, then ``referImages`` and ``hookUrl`` if given.

    A bare string for ``refer_images`` is taken as one URL (TTAPI's own curl sample
    sends a string where the schema says array).
    """
    refs = [refer_images] if isinstance(refer_images, str) else refer_images
    if refs:
        fields["referImages"] = list(refs)
    if hook_url is not None:
        fields["hookUrl"] = hook_url
    return fields


def _job_submit(
    operation: str,
    path: str,
    body: dict[str, Any],
    hook_url: str | None,
    extra_body: Mapping[str, Any] | None,
) -> RequestSpec:
    """The billable POST of a checked job body (the hook URL is a secret to scrub)."""
    return RequestSpec(
        operation,
        "POST",
        path,
        _encode_json(_merge_extra(body, extra_body)),
        billable=True,
        secrets=() if hook_url is None else (hook_url,),
    )


def build_fetch(job_id: str, route: str = ROUTE_4O) -> RequestSpec:
    """Build the fetch of a job on its route: ``GET /openai/<route>/fetch?jobId=...``.

    Free and idempotent.
    """
    check_fetch(job_id)
    known = _FETCH_ROUTES.get(route)
    if known is None:
        raise ValidationError("route", route, f"a job route: {', '.join(sorted(_FETCH_ROUTES))}")
    operation, path = known
    return RequestSpec(operation, "GET", path, params={"jobId": job_id})


# --------------------------------------------------------------------------- parsing


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks to wait, or None when absent or unreadable.

    ``retry-after-ms`` wins; ``Retry-After`` may be seconds or an HTTP date. The answer is
    finite, from 0 to a day: garbage (signs, NaN, non-ASCII digits) is None, and a longer
    hint is clamped to a day.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None and _DELAY.fullmatch(ms.strip()):
        return min(_MAX_RETRY_AFTER, float(ms) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if _DELAY.fullmatch(value):
        return min(_MAX_RETRY_AFTER, float(value))
    try:
        seconds = email.utils.parsedate_to_datetime(value).timestamp() - (
            time.time() if now is None else now
        )
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return min(_MAX_RETRY_AFTER, max(0.0, seconds)) if math.isfinite(seconds) else None


def _decode(status: int, body: bytes) -> Any:
    try:
        return _json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise ResponseFormatError(
            "the body is not JSON", status=status, body=excerpt(body)
        ) from exc


def parse_error(
    status: int, headers: Mapping[str, str], body: bytes, *, operation: str = ""
) -> APIStatusError:
    """Turn an error reply (either body shape, or none) into the right :class:`APIStatusError`."""
    message = ""
    code = type_ = param = None
    envelope = False
    try:
        obj = _json.loads(body) if body else None
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error")
        # text_of, not str(): a message nested 1,000 deep must not raise RecursionError.
        if isinstance(err, dict):  # OpenAI's shape
            message = text_of(err.get("message") or "") or ""
            code = text_of(err.get("code"))
            type_ = text_of(err.get("type"))
            param = text_of(err.get("param"))
        elif "status" in obj or "message" in obj:  # TTAPI's envelope
            envelope = True
            message = text_of(obj.get("message") or obj.get("status") or "") or ""
        elif isinstance(err, str):
            message = err
    message = redact(message) if message else (excerpt(body) if body else "no body")
    snippet = excerpt(body)
    # A "not found" message means an unknown job only where TTAPI could say so (200, 400,
    # 404); it must not turn a 401 or a 5xx into a non-retryable "no such job".
    if (
        operation == "gpt4o.fetch"
        and envelope
        and (
            status == 404  # noqa: PLR2004
            or (status in {200, 400} and any(h in message.lower() for h in _NOT_FOUND_HINTS))
        )
    ):
        return JobNotFoundError(message, status=status, headers=headers, body=snippet)
    return status_error(
        status,
        message,
        code=code,
        error_type=type_,
        param=param,
        headers=headers,
        body=snippet,
        retry_after=retry_after(headers),
    )


def _failed_envelope(
    status: int, headers: Mapping[str, str], body: bytes, operation: str
) -> APIStatusError:
    # A 2xx carrying {"status": "FAILED"} is a refused request; build the same errors
    # as for an HTTP error, keyed by the status the server used.
    return parse_error(max(status, 400), headers, body, operation=operation)


def parse_images(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    http: ResponseInfo | None = None,
    *,
    prompt: str | None = None,
    model: str | None = None,
) -> ImagesResponse:
    """Parse the reply of ``/v1/images/*`` or of the legacy DALL-E 3 route.

    Both the raw OpenAI body and the envelope wrapping it are accepted on either route.
    ``prompt`` and ``model`` are the request's, kept on the response.
    """
    if status >= 300:  # noqa: PLR2004
        raise parse_error(status, headers, body)
    obj = _decode(status, body)
    if type(obj) is not dict:
        raise ResponseFormatError("expected a JSON object", status=status, body=excerpt(body))
    if "created" not in obj and "error" in obj:
        raise parse_error(400, headers, body)
    if "created" not in obj and "status" in obj:  # the envelope around an ImagesResponse
        if obj.get("status") != "SUCCESS":
            raise _failed_envelope(status, headers, body, "images")
        obj = obj.get("data")
        if not isinstance(obj, dict):
            raise ResponseFormatError(
                "the envelope has no ImagesResponse in data", status=status, body=excerpt(body)
            )
    # OpenAI's schema requires only "created"; "data" may be absent (or null), but a
    # "data" that is something other than a list is not an ImagesResponse.
    items = obj.get("data")
    if items is None:
        items = []
    created = obj.get("created")
    if type(created) is float and created.is_integer():
        # orjson reads an integer past 64 bits as a float; the stdlib as an int. The same
        # reply must parse the same with either (a billed image must not be lost).
        obj = {**obj, "created": int(created)}
        created = obj["created"]
    if not isinstance(items, list) or type(created) is not int:
        raise ResponseFormatError(
            "expected an ImagesResponse with an integer 'created' and a 'data' list",
            status=status,
            body=excerpt(body),
        )
    if any(type(item) is not dict for item in items):
        raise ResponseFormatError(
            "malformed ImagesResponse: data items must be objects",
            status=status,
            body=excerpt(body),
        )
    try:
        return structure_images(obj, http, prompt, model)
    except StructureError as exc:
        raise ResponseFormatError(
            f"malformed ImagesResponse: {exc}", status=status, body=excerpt(body)
        ) from exc


def parse_submit(
    status: int, headers: Mapping[str, str], body: bytes, operation: str = "gpt4o.submit"
) -> str:
    """Parse a job submit reply and return the job id (``jobId`` or ``job_id``)."""
    if status >= 300:  # noqa: PLR2004
        raise parse_error(status, headers, body, operation=operation)
    obj = _decode(status, body)
    if not isinstance(obj, dict):
        raise ResponseFormatError("expected a JSON object", status=status, body=excerpt(body))
    if obj.get("status") != "SUCCESS":
        raise _failed_envelope(status, headers, body, operation)
    data = obj.get("data")
    job_id = None
    if isinstance(data, dict):
        job_id = data.get("jobId") or data.get("job_id")
    job_id = job_id or obj.get("jobId") or obj.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ResponseFormatError(
            "the submit reply has no job id", status=status, body=excerpt(body)
        )
    return job_id


def _snapshot_from(
    obj: Any, status: int, body: bytes, http: ResponseInfo | None, job_id: str | None
) -> JobSnapshot | None:
    """The job carried by an envelope, or None when the envelope carries no job.

    ``job_id`` is the id asked for (None for a callback): a reply naming no id is taken
    as that job, a reply naming another raises :class:`JobMismatchError`.
    """
    if not isinstance(obj, dict):
        raise ResponseFormatError("expected a JSON object", status=status, body=excerpt(body))
    data = obj.get("data")
    raw_status = obj.get("status")
    if not isinstance(data, dict) or not isinstance(raw_status, str):
        return None
    named = [
        v for v in (obj.get("jobId"), obj.get("job_id"), data.get("jobId"), data.get("job_id")) if v
    ]
    jid = named[0] if named else job_id
    if not isinstance(jid, str) or not jid:
        raise ResponseFormatError("the job reply has no job id", status=status, body=excerpt(body))
    if job_id is not None:
        # Another job's state taken as this one's would hand over another job's image.
        for other in named:
            if other != job_id:
                if not isinstance(other, str):
                    raise ResponseFormatError(
                        "the job reply has a malformed job id", status=status, body=excerpt(body)
                    )
                raise JobMismatchError(job_id, other, status=status)
    try:
        return structure_snapshot(jid, raw_status, obj.get("message"), data, http)
    except StructureError as exc:
        raise ResponseFormatError(
            f"malformed job reply: {exc}", status=status, body=excerpt(body)
        ) from exc


def parse_fetch(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    job_id: str,
    http: ResponseInfo | None = None,
) -> JobSnapshot:
    """Parse a 4o-image fetch reply into a snapshot, or raise for a failed request."""
    if status >= 300:  # noqa: PLR2004
        raise parse_error(status, headers, body, operation="gpt4o.fetch")
    obj = _decode(status, body)
    snap = _snapshot_from(obj, status, body, http, job_id)
    if snap is None:
        if isinstance(obj, dict) and obj.get("status") == "FAILED":
            raise _failed_envelope(status, headers, body, "gpt4o.fetch")
        raise ResponseFormatError(
            "expected a job envelope with a status and a data object",
            status=status,
            body=excerpt(body),
        )
    return snap


def parse_callback(body: bytes) -> JobSnapshot:
    """Parse a hookUrl callback body: the same structure as a fetch reply.

    Raises:
        ResponseFormatError: the body is not JSON or carries no job.
    """
    # No body excerpt in these errors: a callback body carries the hook URL and its token.
    try:
        obj = _json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ResponseFormatError("the callback body is not JSON", status=200) from exc
    return callback_snapshot(obj)


def callback_snapshot(obj: Any) -> JobSnapshot:
    """Read a decoded callback body (a JSON value) as a job's state.

    For callers that already hold the decoded body and need more from it than the
    snapshot (the fleet's published outcomes carry their ``source`` beside it).

    Raises:
        ResponseFormatError: the value carries no job.
    """
    try:
        snap = _snapshot_from(obj, 200, b"", None, None)
    except ResponseFormatError as exc:
        raise ResponseFormatError("the callback carries no job", status=200) from exc
    if snap is None:
        raise ResponseFormatError("the callback carries no job", status=200)
    return snap
