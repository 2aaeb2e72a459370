"""RedisBroker: hook tokens, job records and outcomes shared by several workers.

Strictly private; ``ttapi_async.RedisBroker`` is the public name. Needs the ``redis``
extra (``pip install 'ttapi-async[redis]'``): redis-py's asyncio client.

How a callback reaches the worker that awaits its job (the pattern of Celery's Redis
result backend):

* A token is stored (as its SHA-256) before the submit is sent, and bound to the job id
  when the submit returns (:data:`~ttapi_async._fleet.BIND_SCRIPT`).
* Whichever worker the callback lands on judges it against Redis in one Lua step
  (:data:`~ttapi_async._fleet.CALLBACK_SCRIPT`). The first worker to accept a job's
  callback confirms it (one fetch in the whole fleet) and, as every worker does with an
  outcome it decided, writes it with ``SET ... EX`` and ``PUBLISH`` in one transaction.
* Every worker subscribes to the one channel of outcomes *before* it checks anything, and
  after each reconnect re-reads (``MGET``) the outcome of every job it still tracks, so an
  outcome published while it was away is not lost.
* While Redis is unreachable, the waiters poll every job whose callback may be lost at
  least every ``PollPolicy.max_interval`` (8 s by default), the receiver answers 503, and
  outcomes to share wait in a bounded queue; the broker reconnects by itself.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from ._errors import BrokerError, ResponseFormatError, ValidationError
from ._fleet import (
    BIND_SCRIPT,
    CALLBACK_SCRIPT,
    SEEN,
    CallbackVerdict,
    FleetKeys,
    JobRecord,
    callback_verdict,
    decode_outcome,
    encode_outcome,
)
from ._redisconn import redis_client, shown_url
from ._retry import backoff


if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._models import JobSnapshot
    from ._waiter import JobWaiter


__all__ = ["BrokerStats", "RedisBroker"]

log = logging.getLogger("ttapi_async.broker")

_EARLY_KEPT: Final = 8  # callbacks kept per token until its submit returns
_OUTBOX_MAX: Final = 10_000  # outcomes waiting for Redis to return; the oldest go first
_BATCH: Final = 256  # outcomes written in one round trip, at most
_RECHECK_CHUNK: Final = 500  # job ids per MGET after a reconnect


@attrs.define
class BrokerStats:
    """Counters of one broker, for metrics, benchmarks and tests."""

    round_trips: int = 0
    published: int = 0
    received: int = 0
    rechecked: int = 0
    disconnects: int = 0
    dropped: int = 0  # outcomes not shared: the outbox overflowed while Redis was away

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return attrs.asdict(self)


class RedisBroker:
    """Shares hook tokens, job records and outcomes between workers through Redis.

    Give it to the client: ``Client(webhook=receiver, broker=tt.RedisBroker(url))``. The
    client opens it (and fails with :class:`BrokerError` if Redis is unreachable then),
    runs it while open and closes it. One broker serves one client.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://``; ACL user and password go
            in the URL (``redis://user:password@host:6379/0``). The password never appears
            in reprs, logs or errors.
        prefix: the start of every key and of the channel, so several apps or accounts
            share one Redis.
        result_ttl: seconds a job's outcome stays for late readers (TTAPI's image URLs
            expire after about an hour).
        record_ttl: seconds a job's record and its hook token's digest live.
        max_connections: the connection pool's size; a burst waits up to
            ``pool_timeout`` seconds for a free connection instead of failing.
        pool_timeout: see ``max_connections``.
        socket_timeout: seconds one Redis command may take.
        confirm_window: seconds the claim to confirm a job's callback lasts.
        confirm_grace: seconds the worker awaiting a job waits for the outcome once
            another worker accepted its callback, before polling the job itself (the
            accepting worker may have died while confirming it).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ttapi",
        result_ttl: float = 3600.0,
        record_ttl: float = 3 * 3600.0,
        max_connections: int = 32,
        pool_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        confirm_window: float = 60.0,
        confirm_grace: float = 5.0,
    ) -> None:
        if max_connections < 2:  # noqa: PLR2004 - one is the subscription's
            raise ValidationError("max_connections", max_connections, "at least 2")
        for name, value in (("result_ttl", result_ttl), ("record_ttl", record_ttl)):
            if value < 1:
                raise ValidationError(name, value, "at least 1 second")
        self.keys: Final = FleetKeys(prefix)
        self.url: Final = shown_url(url)
        self.result_ttl = int(result_ttl)
        self.record_ttl = int(record_ttl)
        self.confirm_window = max(1, int(confirm_window))
        self.confirm_grace = confirm_grace
        self.stats = BrokerStats()
        self._redis, self._errors = redis_client(
            url,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            socket_timeout=socket_timeout,
        )
        self._callback = self._redis.register_script(CALLBACK_SCRIPT)
        self._bind = self._redis.register_script(BIND_SCRIPT)
        self._waiters: list[JobWaiter] = []
        self._outbox = _Outbox(self._redis, self.keys, self.result_ttl, self.stats)
        self._up = False
        self._missed = False  # was down since the last check: re-read what is awaited
        self._epoch: bytes | None = None
        self._running = False

    def __repr__(self) -> str:
        state = "up" if self._up else "down"
        return f"<RedisBroker {self.url} prefix={self.keys.prefix!r} {state}>"

    @property
    def connected(self) -> bool:
        """True while the broker hears the other workers' outcomes."""
        return self._up

    # ------------------------------------------------------------------ lifecycle

    def attach(self, waiter: JobWaiter) -> None:
        """Share ``waiter``'s outcomes and feed it the fleet's (the client does this)."""
        if self._waiters and waiter not in self._waiters:
            raise ValidationError("broker", self, "one broker serves one client")
        if waiter not in self._waiters:
            self._waiters.append(waiter)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, then listen and write until cancelled (the client runs this).

        Raises:
            BrokerError: Redis is unreachable (or refuses the password) at start.
        """
        if self._running:
            raise BrokerError("this broker is already running (one broker serves one client)")
        self._running = True
        try:
            try:
                await self._check_epoch()
            except self._errors as exc:
                raise self._error("cannot reach Redis", exc) from None
            async with anyio.create_task_group() as tg:
                ready = anyio.Event()
                tg.start_soon(self._listen_forever, ready)
                await ready.wait()
                tg.start_soon(self._outbox.run, lambda: self._up, self._errors, self._went_down)
                task_status.started()
        finally:
            self._up = False
            self._running = False
            with anyio.CancelScope(shield=True):
                await self._redis.aclose()

    # ------------------------------------------------------------------ outcomes

    async def lookup(self, job_id: str) -> tuple[tuple[JobSnapshot, str] | None, JobRecord | None]:
        """A job's stored outcome (with its source) and its record; None for each unknown.

        Raises:
            BrokerError: Redis is unreachable.
        """
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.result(job_id))
                pipe.get(self.keys.job(job_id))
                result, record = await pipe.execute()
        except self._errors as exc:
            raise self._error("cannot read a job", exc) from None
        finally:
            self.stats.round_trips += 1
        found = _decoded(result)
        try:
            rec = None if record is None else JobRecord.decode(record)
        except ResponseFormatError:
            rec = None
        return found, rec

    async def job_record(self, job_id: str) -> JobRecord | None:
        """What the fleet knows of a job it submitted (None: never, or forgotten).

        Raises:
            BrokerError: Redis is unreachable.
        """
        return (await self.lookup(job_id))[1]

    async def job_route(self, job_id: str) -> str | None:
        """The route a job of the fleet was submitted on (None: no record of it).

        Raises:
            BrokerError: Redis is unreachable.
        """
        record = await self.job_record(job_id)
        return None if record is None else record.route

    def publish(self, snapshot: JobSnapshot, source: str) -> None:
        """Share a final state decided here: stored ``result_ttl`` s, and published."""
        self._outbox.put("outcome", snapshot.job_id, encode_outcome(snapshot, source))

    # ------------------------------------------------------------------ hook tokens

    async def register_hook(self, digest: str, ttl: float) -> None:
        """Store a new token's digest, unbound, before its submit is sent."""
        hook, _, _ = self.keys.hook(digest)
        await self._call(self._redis.set(hook, b"", ex=max(1, int(ttl))), "cannot store a token")

    async def bind_hook(self, digest: str, record: JobRecord, ttl: float) -> list[bytes]:
        """Bind a token to its job and store the job's record; the early callbacks."""
        keys = list(self.keys.hook(digest))
        args: list[str | int | bytes] = [record.job_id, max(1, int(ttl)), self.confirm_window]
        try:
            # Two slots in a cluster (the hook's and the job's): one pipeline, no MULTI.
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._bind(keys=keys, args=args, client=pipe)
                pipe.set(self.keys.job(record.job_id), record.encode(), ex=self.record_ttl)
                early, _ = await pipe.execute()
        except self._errors as exc:
            raise self._error("cannot bind a token", exc) from None
        finally:
            self.stats.round_trips += 1
        return [bytes(body) for body in early or ()]

    def forget_hook(self, digest: str) -> None:
        """Drop a token whose submit failed (queued)."""
        self._outbox.put("forget", digest, b"")

    async def check_callback(self, digest: str, snapshot: JobSnapshot) -> CallbackVerdict:
        """Judge a callback against the shared token, and claim its confirmation.

        An early callback is stored without its hook URL (which holds the token).
        """
        keys = list(self.keys.hook(digest))
        args: list[str | int | bytes] = [
            snapshot.job_id,
            encode_outcome(snapshot, "webhook"),
            _EARLY_KEPT,
            self.confirm_window,
            self.keys.channel,
        ]
        reply = await self._call(self._callback(keys=keys, args=args), "cannot check a callback")
        return callback_verdict(reply)

    # ------------------------------------------------------------------ internals

    def _error(self, what: str, exc: BaseException) -> BrokerError:
        # redis-py's messages name host and port, never the password; the URL shown is
        # ours, redacted.
        return BrokerError(f"{what} at {self.url}: {type(exc).__name__}: {exc}")

    async def _call(self, awaitable: Any, what: str) -> Any:
        try:
            return await awaitable
        except self._errors as exc:
            raise self._error(what, exc) from None
        finally:
            self.stats.round_trips += 1

    async def _check_epoch(self) -> None:
        """Notice a Redis that came back empty (no persistence, a failover, eviction)."""
        mine = secrets.token_hex(8).encode()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.epoch, mine, nx=True)
            pipe.get(self.keys.epoch)
            _, epoch = await pipe.execute()
        self.stats.round_trips += 1
        if self._epoch is not None and epoch != self._epoch:
            log.error(
                "Redis at %s came back without its data: callbacks of jobs submitted before "
                "are lost; their waits poll instead (run Redis with AOF and noeviction)",
                self.url,
            )
        self._epoch = epoch

    async def _listen_forever(self, ready: anyio.Event) -> None:
        attempt = 0
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.keys.channel)
                    await self._came_up()
                    ready.set()
                    attempt = 0
                    while True:
                        message = await pubsub.get_message(timeout=None)
                        if message is not None and message.get("type") == "message":
                            self._heard(message["data"])
            except self._errors as exc:
                self._went_down(exc)
            if not ready.is_set():
                ready.set()  # down right after the first check: the client still opens
            attempt += 1
            await anyio.sleep(backoff(attempt, 0.1, 5.0, jitter=0.25))

    async def _came_up(self) -> None:
        """Subscribed (again): check the epoch, then re-read what the waiters await."""
        missed = self._missed
        if missed:
            await self._check_epoch()
        self._up = True
        self._missed = False
        for waiter in self._waiters:
            waiter.intake.recover()
        if missed:
            log.warning("Redis at %s is back; callbacks are shared again", self.url)
            await self._recheck()
        self._outbox.wake()

    async def _recheck(self) -> None:
        for waiter in self._waiters:
            ids = waiter.pending_ids()
            for start in range(0, len(ids), _RECHECK_CHUNK):
                chunk = ids[start : start + _RECHECK_CHUNK]
                values = await self._redis.mget([self.keys.result(j) for j in chunk])
                self.stats.round_trips += 1
                for value in values:
                    found = _decoded(value)
                    if found is not None:
                        self.stats.rechecked += 1
                        waiter.intake.accept_shared(*found)

    def _went_down(self, exc: BaseException) -> None:
        if self._up:
            self.stats.disconnects += 1
            log.warning(
                "Redis at %s is unreachable (%s); waits poll until it returns",
                self.url,
                type(exc).__name__,
            )
        self._up = False
        self._missed = True
        for waiter in self._waiters:
            waiter.intake.degrade()

    def _heard(self, data: bytes) -> None:
        if data.startswith(SEEN):  # a worker accepted a job's callback and confirms it
            job_id = data[len(SEEN) :].decode(errors="replace")
            for waiter in self._waiters:
                waiter.intake.callback_seen(job_id, self.confirm_grace)
            return
        found = _decoded(data)
        if found is None:
            return
        self.stats.received += 1
        for waiter in self._waiters:
            waiter.intake.accept_shared(*found)


class _Outbox:
    """Writes to share, batched into one round trip; kept while Redis is away.

    Each outcome's ``SET ... EX`` and ``PUBLISH`` go in one transaction, so a worker that
    subscribes and then reads never misses one. Past ``_OUTBOX_MAX`` waiting writes (a long
    outage) the oldest are dropped (``stats.dropped``): their jobs' waits poll.
    """

    def __init__(self, redis: Redis, keys: FleetKeys, result_ttl: int, stats: BrokerStats) -> None:
        self._redis = redis
        self._keys = keys
        self._result_ttl = result_ttl
        self._stats = stats
        # ("outcome", job id, payload) or ("forget", token digest, b"").
        self._items: deque[tuple[str, str, bytes]] = deque()
        self._wake = anyio.Event()  # work came, or Redis came back

    def put(self, kind: str, name: str, payload: bytes) -> None:
        """Queue one write (never blocks)."""
        if len(self._items) >= _OUTBOX_MAX:
            self._items.popleft()
            self._stats.dropped += 1
        self._items.append((kind, name, payload))
        self._wake.set()

    def wake(self) -> None:
        """Look again (Redis came back)."""
        self._wake.set()

    async def run(
        self,
        up: Callable[[], bool],
        errors: tuple[type[BaseException], ...],
        went_down: Callable[[BaseException], None],
    ) -> None:
        """Write whatever is queued while ``up()``; a failed batch is written again later."""
        items = self._items
        while True:
            if not items or not up():
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch = [items.popleft() for _ in range(min(_BATCH, len(items)))]
            try:
                await self._write(batch)
            except errors as exc:
                items.extendleft(reversed(batch))  # written again once Redis is back
                went_down(exc)

    async def _write(self, batch: list[tuple[str, str, bytes]]) -> None:
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            for kind, name, payload in batch:
                if kind == "outcome":
                    pipe.set(keys.result(name), payload, ex=self._result_ttl)
                    pipe.publish(keys.channel, payload)
                else:
                    pipe.delete(*keys.hook(name))
            await pipe.execute()
        self._stats.round_trips += 1
        self._stats.published += sum(1 for kind, _, _ in batch if kind == "outcome")


def _decoded(data: bytes | str | None) -> tuple[JobSnapshot, str] | None:
    """A stored or published outcome, or None for nothing (or garbage: logged)."""
    if data is None:
        return None
    try:
        snap, source = decode_outcome(data.encode() if isinstance(data, str) else bytes(data))
    except ResponseFormatError:
        log.warning("ignored a malformed outcome on the shared channel")
        return None
    return (snap, source) if snap.is_terminal else None
