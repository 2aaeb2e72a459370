"""The JSON sidecar saved next to each image: what it says, and nothing secret.

Strictly private, and pure: this builds the document, the download pipeline
(:mod:`._downloads`) writes it. The sidecar holds what a bulk run needs to find an image's
origin again (prompt, model, parameters, job id, timings) and what proves the file intact
(sha256, bytes). It never holds the API key, a hook URL or a hook token:
:func:`clean_metadata` drops keys that name them and blanks known secret strings wherever
they appear, and :func:`hiding_hooks` adds a result's own hook URL and token to those.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any, Final

import attrs

from ._errors import Redactor, public_url
from ._models import ImagesResponse, JobResult, JobSnapshot, SavedImage


__all__ = ["NO_SECRETS", "clean_metadata", "hiding_hooks", "render", "result_metadata"]

#: Metadata keys never written (compared lower-cased, letters only, by suffix): hook URLs
#: and tokens let anyone post results to the receiver; keys bill the account.
_SECRET_KEYS: Final = ("hookurl", "hooktoken", "apikey", "authorization")
#: Secret strings shorter than this are not blanked (blanking "a" everywhere helps no one).
_MIN_SECRET: Final = 8
#: No secrets known (a save outside a client): only ``hookUrl=...`` in text is hidden.
NO_SECRETS: Final = Redactor()
_Hide = Callable[[str], str]
_MAX_DEPTH: Final = 32
_NOT_LETTERS: Final = re.compile(r"[^a-z]")


# ----------------------------------------------------------------------------- secrets


def clean_metadata(
    metadata: Mapping[str, Any] | None, redactor: Redactor = NO_SECRETS
) -> dict[str, Any]:
    """A JSON-ready copy of ``metadata`` with nothing secret left in it.

    Keys naming a hook URL, a hook token, an API key or an Authorization header
    (``hookUrl``, ``hook_url``, ``HOOK-TOKEN``, ``api_key``, ...: any case, any
    separators) are dropped at every depth. Every string goes through ``redactor`` (the
    client's: the API key, hook URLs and tokens become ``<hidden>``), and ``hookUrl=...``
    inside text is hidden as in error messages.

    Values become JSON: datetimes ISO 8601, timedeltas seconds, enums their value, paths
    strings, attrs instances dicts, bytes a length, NaN and infinities null; anything
    else its ``str()``.
    """
    return _clean_mapping(metadata or {}, redactor.redact, 0)


def hiding_hooks(result: ImagesResponse | JobSnapshot | JobResult, redactor: Redactor) -> Redactor:
    """``redactor``, also hiding the hook URL and token a snapshot echoes back (if any)."""
    hook = result.hook_url if isinstance(result, JobSnapshot) else None
    if not hook:
        return redactor
    # The token is the hook URL's last path segment (see WebhookReceiver.register). This
    # is the server's word: a short "secret" would hide every match of it in the sidecar.
    token = hook.rstrip("/").rsplit("/", 1)[-1]
    secrets = [s for s in (hook, token) if len(s) >= _MIN_SECRET]
    return redactor.with_literals(secrets) if secrets else redactor


def _is_secret_key(key: str) -> bool:
    return _NOT_LETTERS.sub("", key.lower()).endswith(_SECRET_KEYS)


def _clean_mapping(value: Mapping[Any, Any], hide: _Hide, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key.value if isinstance(key, enum.Enum) else key
        name = hide(str(name))
        if _is_secret_key(name):
            continue
        out[name] = _clean(item, hide, depth + 1)
    return out


def _clean(value: Any, hide: _Hide, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, enum.Enum):  # before int and str: IntEnum and StrEnum are both
        return _clean(value.value, hide, depth + 1)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, Mapping):
        return _clean_mapping(value, hide, depth)
    if attrs.has(type(value)):
        return _clean_mapping(attrs.asdict(value, recurse=False), hide, depth)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return hide(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, hide, depth + 1) for item in value]
    return hide(str(value))


# ----------------------------------------------------------------------------- document


def _iso_utc(timestamp: float) -> str | float:
    """ISO 8601 UTC of a Unix timestamp; the number itself when no date can show it."""
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()
    except (ValueError, OverflowError, OSError, TypeError):
        # Out of the platform's range (10**20, -10**20, NaN): the sidecar keeps what the
        # server sent (clean_metadata turns NaN and infinities into null).
        return timestamp


def result_metadata(
    result: ImagesResponse | JobSnapshot | JobResult, index: int = 0
) -> dict[str, Any]:
    """What a result itself says about its image ``index``, for the sidecar.

    The keys are always there (None when unknown) so every sidecar has one shape; the
    caller's metadata is laid over them. A hook URL is never taken from a snapshot.
    """
    meta: dict[str, Any] = {
        "kind": None,
        "prompt": None,
        "model": None,
        "parameters": None,
        "job_id": None,
        "index": index,
        # "index" is the caller's to redefine (a bulk run's item number); this one stays.
        "image_index": index,
    }
    if isinstance(result, ImagesResponse):
        item = result.data[index] if 0 <= index < len(result.data) else None
        echoed = {
            "size": result.size,
            "quality": result.quality,
            "output_format": result.output_format,
            "background": result.background,
        }
        meta.update(
            kind="images",
            prompt=result.prompt,
            model=result.model,
            parameters={k: v for k, v in echoed.items() if v is not None} or None,
            revised_prompt=item.revised_prompt if item is not None else None,
            created=_iso_utc(result.created) if result.created else None,
            usage=result.usage,
        )
        return meta
    meta.update(
        kind="4o-image",
        prompt=result.prompt,
        job_id=result.job_id,
        refer_images=[public_url(u) for u in result.refer_images],
        quota=result.quota,
        finished=result.finish_time,
    )
    if isinstance(result, JobResult):
        meta.update(elapsed=result.elapsed, delivered_by=result.source)
    return meta


def render(saved: SavedImage, meta: Mapping[str, Any], *, saved_at: dt.datetime) -> bytes:
    """The sidecar of ``saved`` as UTF-8 JSON: the file's facts, then ``meta``.

    ``meta`` must already be cleaned (:func:`clean_metadata`). The file's facts come
    first and win: metadata cannot misstate the bytes.
    """
    facts = {
        "file": saved.path.name,
        "sha256": saved.sha256,
        "bytes": saved.size,
        "mime": saved.mime,
        "width": saved.width,
        "height": saved.height,
        "source": saved.source,
        "url": saved.url,
        "saved_at": saved_at.isoformat(timespec="milliseconds"),
    }
    doc = {**facts, **{k: v for k, v in meta.items() if k not in facts}}
    text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    # A lone surrogate (a mis-decoded prompt or name) cannot be UTF-8; only strings can
    # hold one, and backslashreplace writes it as the JSON escape \ud800, so the sidecar
    # stays valid JSON that reads back the same string.
    return (text + "\n").encode("utf-8", "backslashreplace")
