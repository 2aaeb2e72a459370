"""The one place a Redis client is built: the URL rules, the hidden password, and the
message when the ``redis`` extra is missing. No Redis server is needed here."""

from __future__ import annotations

import sys

import pytest

import ttapi_async as tt
from ttapi_async._redisconn import redis_client, shown_url


def test_a_password_is_never_shown() -> None:
    assert shown_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert shown_url("redis://host:6379/0") == "redis://host:6379/0"


def test_only_redis_urls_are_taken() -> None:
    with pytest.raises(tt.ValidationError, match="redis://") as caught:
        redis_client("http://:s3cret@host/0", max_connections=1)
    assert "s3cret" not in str(caught.value)


def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    with pytest.raises(tt.BrokerError, match=r"pip install 'ttapi-async\[redis\]'"):
        redis_client("redis://127.0.0.1:1/0", max_connections=1)
