"""Requests as values: what a bulk run (or a batch file) asks for, one item each.

Strictly private; the classes are public as ``ttapi_async.GenerateRequest`` and friends.
Everything here is pure: the four frozen request types, their parameters and a stable
fingerprint (the journal uses it to notice a changed input file), validation without
sending (``--dry-run``), and reading batch files (plain lines, JSONL or CSV) into
requests. Running a request is :mod:`ttapi_async._bulk`'s job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from ._errors import ValidationError
from ._inputs import read_edit_input
from ._protocol import (
    build_dalle3,
    build_edit,
    build_generate,
    build_submit_4o,
    build_submit_gpt,
)


__all__ = [
    "KINDS",
    "Dalle3Request",
    "EditRequest",
    "GPT4oRequest",
    "GPTRequest",
    "GenerateRequest",
    "JobRequest",
    "Request",
    "call_params",
    "fingerprint",
    "label",
    "params",
    "read_rows",
    "request_from_row",
    "validate",
]


def _tuple(value: object) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes | os.PathLike):
        return (value,)
    return tuple(value)  # type: ignore[arg-type]


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else dict(value)


def _is_hook_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "") in {"hookurl", "hooktoken"}


def _extra_repr(value: Mapping[str, Any] | None) -> str:
    # A hook URL carries a secret token: reprs (and so logs and tracebacks) hide it.
    if value is None:
        return "None"
    return repr({k: "<hidden>" if _is_hook_key(k) else v for k, v in value.items()})


@attrs.frozen(kw_only=True)
class GPT4oRequest:
    """One 4o-image job: ``gpt4o.submit(prompt=..., refer_images=...)`` then a wait."""

    kind: ClassVar[str] = "4o"
    prompt: str
    refer_images: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, eq=False, repr=_extra_repr
    )


@attrs.frozen(kw_only=True)
class GPTRequest:
    """One job on ``/openai/gpt/*``: ``gpt.submit(prompt=..., model=..., ...)`` then a wait."""

    kind: ClassVar[str] = "gpt"
    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    refer_images: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, eq=False, repr=_extra_repr
    )


#: A request that submits a job and waits for it (the others are one synchronous call).
JobRequest: TypeAlias = GPT4oRequest | GPTRequest


@attrs.frozen(kw_only=True)
class GenerateRequest:
    """One ``images.generate`` call (gpt-image-1, dall-e-2, dall-e-3)."""

    kind: ClassVar[str] = "generate"
    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    style: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    user: str | None = None
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, eq=False, repr=_extra_repr
    )


@attrs.frozen(kw_only=True)
class EditRequest:
    """One ``images.edit`` call; ``image`` is one or more paths (or bytes)."""

    kind: ClassVar[str] = "edit"
    image: tuple[str | os.PathLike[str] | bytes, ...] = attrs.field(converter=_tuple)
    prompt: str
    mask: str | os.PathLike[str] | bytes | None = None
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    user: str | None = None
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, eq=False, repr=_extra_repr
    )


@attrs.frozen(kw_only=True)
class Dalle3Request:
    """One call of the legacy DALL-E 3 route (``dalle3.generate``); ``size`` is required."""

    kind: ClassVar[str] = "dalle3"
    prompt: str
    size: str
    quality: str | None = None
    style: str | None = None
    n: int | None = None
    model: str | None = None
    extra_body: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_frozen_mapping, eq=False, repr=_extra_repr
    )


#: Any request a bulk run takes.
Request: TypeAlias = GPT4oRequest | GPTRequest | GenerateRequest | EditRequest | Dalle3Request

#: Request type by ``kind`` (the CLI's commands and the journal's ``kind`` column).
KINDS: Final[Mapping[str, type[Request]]] = {
    c.kind: c for c in (GPT4oRequest, GPTRequest, GenerateRequest, EditRequest, Dalle3Request)
}
_NOT_PARAMS: Final = frozenset({"extra_body", "image", "mask"})


def params(request: Request) -> dict[str, Any]:
    """The request's parameters that were given (None left out), for sidecars and reports.

    Image inputs appear as their paths (bytes as ``<N bytes>``); ``extra_body`` is merged
    last, minus any hook URL (hook URLs carry a secret token).
    """
    out: dict[str, Any] = {}
    for field in attrs.fields(type(request)):
        if field.name in _NOT_PARAMS:
            continue
        value = getattr(request, field.name)
        if value is not None and value != ():
            out[field.name] = list(value) if isinstance(value, tuple) else value
    if isinstance(request, EditRequest):
        out["image"] = [_describe_input(i) for i in request.image]
        if request.mask is not None:
            out["mask"] = _describe_input(request.mask)
    for key, value in (request.extra_body or {}).items():
        if not _is_hook_key(key):
            out.setdefault(key, value)
    return out


def _describe_input(value: str | os.PathLike[str] | bytes) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:16]}>"
    return os.fspath(value)


def fingerprint(request: Request) -> str:
    """A stable digest of what the request asks for (the journal checks inputs with it)."""
    body = {"kind": request.kind, **params(request), "extra_body": request.extra_body}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def label(request: Request, limit: int = 60) -> str:
    """A short one-line label for progress lines and reports: the prompt's start."""
    text = " ".join(request.prompt.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate(request: Request) -> None:
    """Check a request against the endpoint's rules without sending anything.

    Edit inputs are read from disk (blocking) and sniffed, as ``images.edit`` would.

    Raises:
        ValidationError: naming the first parameter that breaks a rule.
    """
    if isinstance(request, GPT4oRequest):
        build_submit_4o(request.prompt, list(request.refer_images) or None, None, None)
    elif isinstance(request, GPTRequest):
        build_submit_gpt(
            request.prompt,
            model=request.model,
            aspect_ratio=request.aspect_ratio,
            size=request.size,
            refer_images=list(request.refer_images) or None,
            hook_url=None,
        )
    elif isinstance(request, GenerateRequest):
        build_generate(call_params(request), request.extra_body)
    elif isinstance(request, Dalle3Request):
        build_dalle3(call_params(request), request.extra_body)
    else:
        images = [
            read_edit_input(src, "image" if len(request.image) == 1 else f"image[{i}]")
            for i, src in enumerate(request.image)
        ]
        mask = None if request.mask is None else read_edit_input(request.mask, "mask")
        build_edit(call_params(request), images, mask, request.extra_body)


def call_params(request: Request) -> dict[str, Any]:
    """The keyword arguments of the resource call, minus images and ``extra_body``."""
    return {
        f.name: getattr(request, f.name)
        for f in attrs.fields(type(request))
        if f.name not in _NOT_PARAMS
    }


# ---------------------------------------------------------------------- batch files

_INT_FIELDS: Final = frozenset({"n", "output_compression"})
_LIST_FIELDS: Final = frozenset({"refer_images", "image"})


def read_rows(
    path: str | os.PathLike[str],
) -> Iterator[tuple[int, dict[str, Any] | ValidationError]]:
    """Read a batch file into ``(line number, row)`` pairs; each row has a ``prompt``.

    The format follows the extension: ``.jsonl``/``.ndjson`` (one JSON object, or a
    JSON string as the prompt, per line), ``.csv`` (a header row naming the columns, one
    of them ``prompt``; empty cells are "not given"), anything else one prompt per line.
    Blank lines and, in plain files, lines starting with ``#`` are skipped. A line that
    is not valid in its format comes back as a :class:`ValidationError` in place of its
    row, so every problem of a file can be reported at once.

    Raises:
        ValidationError: the file cannot be read, or a CSV file has no prompt column.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("prompts_file", str(file), f"cannot read it: {exc}") from exc
    suffix = file.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        yield from _jsonl_rows(text)
    elif suffix == ".csv":
        yield from _csv_rows(text)
    else:
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                yield number, {"prompt": stripped}


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | ValidationError]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, ValidationError("line", line[:60], f"not JSON ({exc.msg})")
            continue
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            yield number, ValidationError("line", line[:60], "a JSON object or string is required")
            continue
        yield number, value


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | ValidationError]]:
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file
    # (which would then be reported as some other column missing).
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise ValidationError("prompts_file", "header", f"not valid CSV: {exc}") from exc
    if fieldnames is None or "prompt" not in fieldnames:
        raise ValidationError("prompts_file", fieldnames, "a CSV header with a prompt column")
    while True:
        start = reader.line_num + 1  # the line the next row starts on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, _csv_problem(text, start, exc)
            if reader.line_num < start:  # the reader hit the end of the file
                return
            continue
        number = reader.line_num
        if None in row:
            yield number, ValidationError("row", row[None], "more cells than header columns")
            continue
        cleaned = {k.strip(): v for k, v in row.items() if v is not None and v.strip() != ""}
        if cleaned:
            yield number, cleaned


def _csv_problem(text: str, start: int, exc: csv.Error) -> ValidationError:
    """The error for a CSV row that cannot be read, quoting its first line."""
    lines = text.splitlines()
    first = lines[start - 1] if 0 < start <= len(lines) else ""
    if "unexpected end of data" in str(exc):
        rule = "a quote opened in this row is never closed (the rest of the file would be one cell)"
    else:
        rule = f'not valid CSV ({exc}); a quote inside a cell is written twice: ""'
    return ValidationError("row", first, rule)


def request_from_row(
    kind: str, row: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> Request:
    """Build the ``kind`` request from a batch row over ``defaults`` (the CLI's options).

    Numbers given as text (CSV) are converted, list fields accept a JSON list or a
    ``|``-separated string, and a column the request does not have is an error naming it.

    Raises:
        ValidationError: naming the column and the rule.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise ValidationError("kind", kind, f"one of {', '.join(sorted(KINDS))}")
    allowed = {f.name for f in attrs.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        if value is None:
            continue
        if key not in allowed:
            raise ValidationError(key, value, f"does not apply to {kind} requests")
        values[key] = value
    for key, raw in row.items():
        if key not in allowed:
            raise ValidationError(
                key, raw, f"not a {kind} parameter ({', '.join(sorted(allowed))})"
            )
        values[key] = _coerce(key, raw)
    if not isinstance(values.get("prompt"), str) or not values["prompt"].strip():
        raise ValidationError("prompt", values.get("prompt"), "a non-empty prompt is required")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field missing, e.g. dalle3's size
        missing = next((f.name for f in attrs.fields(cls) if f.name not in values), "?")
        raise ValidationError(missing, None, f"required for {kind}") from exc


def _coerce(key: str, raw: object) -> object:
    if key in _INT_FIELDS and isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            raise ValidationError(key, raw, "a whole number is required") from None
    if key in _LIST_FIELDS and isinstance(raw, str):
        return tuple(part.strip() for part in raw.split("|") if part.strip())
    return raw
