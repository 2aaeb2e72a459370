"""The two reply families the emulator answers in (``ttapi-wire.md`` section 11.1).

Strictly private. ``/v1/images/*`` answer OpenAI's raw bodies and ``{"error": {...}}``;
every other route, and gateway failures on every route, answer the TTAPI envelope
``{"status": "FAILED", "message": ..., "data": null}``. Every part of the emulator that
answers (gateway, routes, faults) builds its reply here, so the shapes live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from ttapi_async import _json


__all__ = [
    "GATEWAY_STATUSES",
    "JSON_TYPE",
    "MALFORMED_BODY",
    "STATUS_MESSAGES",
    "UNAUTHORIZED_BODY",
    "envelope_error",
    "openai_error",
    "reply",
    "status_reply",
]

JSON_TYPE: Final = "application/json"

#: Gateway codes answer with the TTAPI envelope on every route, /v1 included (wire §11.1).
GATEWAY_STATUSES: Final = frozenset({401, 402, 403, 429, 499})

#: Default message of each status the emulator answers (wire §2.4; 401 is exact).
STATUS_MESSAGES: Final = {
    400: "Parameter error",
    401: "Wrong TT-API-KEY or email is not activated.",
    402: "Insufficient balance, please recharge.",
    403: "Account Block",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Timed out reading the request body.",
    413: "Request body too large.",
    429: "Too many requests, please try again later.",
    499: "Queue is full, please try again later.",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}

#: The gateway's 401 has no "data" key (wire §1, CONFIRMED [S2]); kept byte-exact.
UNAUTHORIZED_BODY: Final = _json.dumps({"status": "FAILED", "message": STATUS_MESSAGES[401]})

#: What a ``malformed`` fault answers by default: JSON cut short.
MALFORMED_BODY: Final = b'{"status": "SUCC'


def reply(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON reply of ``body`` (already encoded)."""
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def envelope_error(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The TTAPI failure envelope: ``{"status": "FAILED", "message": ..., "data": null}``."""
    body = {"status": "FAILED", "message": message, "data": None}
    return reply(status, _json.dumps(body), headers)


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}`` (wire §9)."""
    err = {"message": message, "type": type_, "param": param, "code": code}
    return reply(status, _json.dumps({"error": err}), headers)


def status_reply(
    status: int, *, openai: bool, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A bare status in the route's shape: OpenAI's for a /v1 4xx that is not a gateway code."""
    if status == 401:  # noqa: PLR2004
        return reply(401, UNAUTHORIZED_BODY, headers)
    message = STATUS_MESSAGES.get(status, f"HTTP {status}")
    if openai and 400 <= status < 500 and status not in GATEWAY_STATUSES:  # noqa: PLR2004
        return openai_error(status, message, headers=headers)
    return envelope_error(status, message, headers)
