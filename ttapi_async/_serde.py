"""The one private cattrs converter, and the tolerant hooks the wire needs.

Strictly private. TTAPI's wire is loose in known ways (``ttapi-wire.md`` section 11.6): ``quota``
is a string, ``finishTime`` has no zone, ``message`` is null, ``""`` or ``"success"``, the job
id key is ``jobId`` or ``job_id``, statuses may grow. The hooks below normalise all of that
so the models stay strict. Unknown extra keys are ignored.
"""

from __future__ import annotations

import datetime as dt
import math
import reprlib
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._models import (
    ImageData,
    ImagesResponse,
    InputTokensDetails,
    JobSnapshot,
    JobStatus,
    OutputTokensDetails,
    ResponseInfo,
    Usage,
)


__all__ = ["StructureError", "structure_images", "structure_snapshot", "text_of"]

#: What structuring raises on a body of the wrong shape; callers wrap it in ResponseFormatError.
#: Beyond the wrong types: OverflowError is ``int(Infinity)`` (the stdlib json accepts
#: Infinity and NaN), RecursionError is any conversion meeting a value nested ~1,000 deep
#: (orjson accepts 1,024 levels), ValueError also covers ints past Python's 4,300 digits.
StructureError = (
    cattrs.BaseValidationError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)

# A bounded repr: a few levels and a few hundred characters of any JSON value, whatever its
# depth (str() of a list nested 1,000 deep raises RecursionError).
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 200

_conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=False)


def _str_or_none(value: Any) -> str | None:
    """The one rule for optional strings: a string or None, a number taken as its text."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    msg = f"expected a string, got {type(value).__name__}"
    raise TypeError(msg)


def text_of(value: Any) -> str | None:
    """Any decoded JSON value as text for a message; never raises.

    Strings are kept, numbers and booleans are written out, containers get a bounded repr
    (a server's ``message`` may be anything, and a failed job must keep its reason).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int past Python's 4,300-digit conversion limit
            return None
    try:
        return _REPR.repr(value)
    except (RecursionError, ValueError):  # not reached by JSON values; a message is optional
        return None


def _opt_str(value: Any, _: Any) -> str | None:
    return _str_or_none(value)


def _quota(value: Any, _: Any) -> float | None:
    # TTAPI sends "2"; be tolerant of numbers, blanks and garbage (quota is informative only).
    # OverflowError: float() of a 400-digit int; NaN and infinities are garbage too.
    if value is None or isinstance(value, bool):
        return None
    try:
        quota = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return quota if math.isfinite(quota) else None


def _finish_time(value: Any, _: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    # INFERRED: TTAPI's "YYYY-MM-DD HH:MM:SS" carries no zone; UTC is the likeliest.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _message(value: Any, _: Any) -> str | None:
    text = text_of(value)
    if text is None:
        return None
    return None if text.strip().lower() in {"", "success"} else text


def _status(value: Any, _: Any) -> JobStatus:
    try:
        return JobStatus(str(value).upper())
    except ValueError:
        return JobStatus.UNKNOWN


def _str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple):
        msg = f"expected a list of strings, got {type(value).__name__}"
        raise TypeError(msg)
    # _str_or_none refuses containers: str() of a nested list is no URL (and may recurse).
    return tuple(s for v in value if (s := _str_or_none(v)) is not None)


_conv.register_structure_hook(ResponseInfo, lambda v, _: v)
_conv.register_structure_hook(JobStatus, _status)
_conv.register_structure_hook_func(lambda t: t == str | None, _opt_str)
_conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)


for _cls in (InputTokensDetails, OutputTokensDetails, Usage):
    _conv.register_structure_hook(_cls, make_dict_structure_fn(_cls, _conv))
_structure_usage = _conv.get_structure_hook(Usage)


def _structure_images_response(o: dict[str, Any], _: Any) -> ImagesResponse:
    """The converter's hook for :class:`ImagesResponse` (see :func:`_images`)."""
    return _images(o, o.get("http"), None, None)


def _images(
    o: dict[str, Any], http: ResponseInfo | None, prompt: str | None, model: str | None
) -> ImagesResponse:
    """Hand-written structuring of :class:`ImagesResponse`, over the wire dict ``o``.

    Every ``images.generate`` call parses one of these, and it is benchmarked against raw
    aiohttp. cattrs' generated function builds an intermediate dict per class and
    dispatches per field, which cost about twice this; the rules are the same (strings
    stay strings, integers are ints, unknown keys are ignored).
    """
    usage = o.get("usage")
    # Each optional string is read inline when it already is a str or None (nearly always)
    # and goes through _str_or_none's full rule only otherwise: a call saved per field.
    images = []
    for i in o.get("data") or ():  # "data" is optional in OpenAI's schema
        b64, url, revised = i.get("b64_json"), i.get("url"), i.get("revised_prompt")
        images.append(
            ImageData(
                b64 if b64 is None or type(b64) is str else _str_or_none(b64),
                url if url is None or type(url) is str else _str_or_none(url),
                revised if revised is None or type(revised) is str else _str_or_none(revised),
            )
        )
    bg, fmt, quality, size = (
        o.get("background"),
        o.get("output_format"),
        o.get("quality"),
        o.get("size"),
    )
    return ImagesResponse(
        int(o["created"]),
        tuple(images),
        None if type(usage) is not dict else _structure_usage(usage, Usage),
        bg if bg is None or type(bg) is str else _str_or_none(bg),
        fmt if fmt is None or type(fmt) is str else _str_or_none(fmt),
        quality if quality is None or type(quality) is str else _str_or_none(quality),
        size if size is None or type(size) is str else _str_or_none(size),
        http,
        prompt,
        model,
    )


_conv.register_structure_hook(ImagesResponse, _structure_images_response)
_conv.register_structure_hook(
    JobSnapshot,
    make_dict_structure_fn(
        JobSnapshot,
        _conv,
        job_id=override(rename="jobId"),
        raw_status=override(rename="status_raw"),
        message=override(struct_hook=_message),
        refer_images=override(rename="referImages"),
        image_url=override(rename="imageUrl"),
        quota=override(struct_hook=_quota),
        finish_time=override(rename="finishTime", struct_hook=_finish_time),
        hook_url=override(rename="hookUrl"),
    ),
)


def structure_usage(usage: dict[str, Any]) -> Usage:
    """Build a :class:`Usage` from its dict (token counts, tolerant of missing keys)."""
    result: Usage = _structure_usage(usage, Usage)
    return result


def structure_images(
    body: dict[str, Any],
    http: ResponseInfo | None,
    prompt: str | None = None,
    model: str | None = None,
) -> ImagesResponse:
    """Build an :class:`ImagesResponse` from an OpenAI-shaped dict.

    ``prompt`` and ``model`` are the request's (what the caller asked for wins over any
    echo of the server's).
    """
    # Called directly, not through the converter: that skips a dispatch lookup.
    return _images(body, http, prompt, model)


def structure_snapshot(
    job_id: str, status: str, message: Any, data: dict[str, Any], http: ResponseInfo | None
) -> JobSnapshot:
    """Build a :class:`JobSnapshot` from the envelope's top level and its ``data`` object."""
    # The top-level fields win over anything of the same name inside data.
    merged = {**data, "jobId": job_id, "status": status, "status_raw": status, "message": message}
    merged["http"] = http
    return _conv.structure(merged, JobSnapshot)
