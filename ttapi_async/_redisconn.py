"""Connecting to Redis: the one place redis-py's client is built.

Strictly private. :class:`~ttapi_async.RedisBroker` and :class:`~ttapi_async.RedisJournal`
both connect here: an optional import (the ``redis`` extra), a blocking pool (a burst
waits for a free connection instead of failing), no silent reconnects inside redis-py,
and a URL that is shown without its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import BrokerError, ValidationError


if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = ["redis_client", "shown_url"]


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for reprs, logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _redis_module() -> Any:
    try:
        import redis.asyncio  # noqa: PLC0415 - an optional extra
        import redis.asyncio.retry  # noqa: PLC0415
        import redis.backoff  # noqa: PLC0415
    except ImportError as exc:  # tests/test_redisconn.py hides redis-py to reach this
        msg = "Redis support needs redis-py: pip install 'ttapi-async[redis]'"
        raise BrokerError(msg) from exc
    return redis


def redis_client(
    url: str,
    *,
    max_connections: int,
    pool_timeout: float = 5.0,
    socket_timeout: float = 5.0,
) -> tuple[Redis, tuple[type[BaseException], ...]]:
    """A client for ``url`` and the exceptions that mean "Redis failed".

    Raises:
        ValidationError: not a redis://, rediss:// or unix:// URL.
        BrokerError: redis-py is not installed.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValidationError("url", shown_url(url), "a redis://, rediss:// or unix:// URL")
    redis = _redis_module()
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        # No silent reconnect inside redis-py: a dropped connection must reach the caller
        # (the broker's listener re-reads what it missed).
        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
    )
    client: Redis = redis.asyncio.Redis(connection_pool=pool)
    return client, (redis.RedisError, OSError)
