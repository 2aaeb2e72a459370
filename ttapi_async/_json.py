"""JSON codec: the standard library, or orjson when installed (the ``speedups`` extra).

Strictly private. ``TTAPI_ASYNC_JSON=stdlib`` forces the standard library, so the
benchmarks can measure both ways in one run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


__all__ = ["BACKEND", "dumps", "loads"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


def _std_dumps(obj: Any) -> bytes:
    """Encode compact JSON as UTF-8 bytes."""
    return _encoder.encode(obj).encode()


def _std_loads(data: bytes | str) -> Any:
    """Decode JSON from UTF-8 bytes (JSON on the wire is UTF-8, RFC 8259)."""
    # json.loads would sniff the encoding of bytes first; the wire is UTF-8 only.
    return _decoder.decode(data.decode() if isinstance(data, bytes) else data)


loads: Callable[[bytes | str], Any] = _std_loads
dumps: Callable[[Any], bytes] = _std_dumps
BACKEND = "json"

if os.environ.get("TTAPI_ASYNC_JSON", "").lower() != "stdlib":
    try:
        import orjson
    except ImportError:
        pass
    else:
        _orjson_loads = orjson.loads

        def _loads_with_fallback(data: bytes | str) -> Any:
            """orjson, and the stdlib for what orjson refuses but JSON allows.

            orjson rejects integers past 64 bits and escaped lone surrogates; the stdlib
            reads both. Without the fallback the same reply would be a result with one
            backend and an error with the other (for a billed call: a lost image).
            """
            try:
                return _orjson_loads(data)
            except orjson.JSONDecodeError:
                return _std_loads(data)

        loads = _loads_with_fallback
        dumps = orjson.dumps
        BACKEND = "orjson"
