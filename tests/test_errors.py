"""Every exported error survives pickling: across multiprocessing and pytest-xdist a
``TTAPIError`` arrives as the same class, message and attributes."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import ttapi_async as tt


#: A value for each constructor parameter name the errors use.
ARGUMENTS: dict[str, Any] = {
    "message": "it went wrong",
    "status": 502,
    "code": "server_error",
    "type": "server_error",
    "param": "size",
    "headers": {"Retry-After": "3"},
    "body": '{"error": "x"}',
    "request_sent": True,
    "cause": tt.TTAPIError("the cause"),
    "index": 4,
    "run": "covers",
    "url": "https://cdn.example/a.png",
    "job_id": "job-1",
    "reason": "moderation",
    "snapshot": None,
    "expected": "job-1",
    "received": "job-2",
    "timeout": 30.0,
    "last_error": None,
    "path": "images/j.sqlite",
    "rows": (1, 2),
    "detail": "malformed",
    "old": "done",
    "new": "failed",
    "hint": "",
    "operation": "images.generate",
    "attempts": 2,
    "partials": (),
    "value": "9x9",
    "rule": "a size the model takes",
}


def instances() -> list[tt.TTAPIError]:
    errors: list[tt.TTAPIError] = []
    for name in tt.__all__:
        cls = getattr(tt, name)
        if not (isinstance(cls, type) and issubclass(cls, tt.TTAPIError)):
            continue
        params = [
            p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in {p.VAR_POSITIONAL, p.VAR_KEYWORD}
        ]
        if not params:  # Exception's own constructor, or none at all
            has_args = cls.__init__ is not tt.TelemetryUnavailableError.__init__
            errors.append(cls("a message") if has_args else cls())
            continue
        positional = [ARGUMENTS[p.name] for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keywords = {p.name: ARGUMENTS[p.name] for p in params if p.kind is p.KEYWORD_ONLY}
        errors.append(cls(*positional, **keywords))
    return errors


@pytest.mark.parametrize("error", instances(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_to_the_same_error(error: tt.TTAPIError) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert {k: repr(v) for k, v in vars(copy).items()} == {
        k: repr(v) for k, v in vars(error).items()
    }


def test_every_exported_error_is_covered() -> None:
    exported = {
        name
        for name in tt.__all__
        if isinstance(getattr(tt, name), type) and issubclass(getattr(tt, name), tt.TTAPIError)
    }
    assert {type(e).__name__ for e in instances()} == exported
    assert len(exported) > 30
