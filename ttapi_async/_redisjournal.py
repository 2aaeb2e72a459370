"""RedisJournal: a bulk run's journal in Redis, shared by several processes or machines.

Strictly private; ``ttapi_async.RedisJournal`` is the public name. The second
:class:`~ttapi_async.JournalStore` (the first is SQLite's :class:`~ttapi_async.Journal`).
Every process started on the same inputs with the same run name shares the run: each item
is claimed by one worker at a time with a lease its worker renews while it lives, every
write to an item is fenced (see :mod:`~ttapi_async._sharedrun`), and a dead worker's items
are taken over once its leases lapse.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._errors import BrokerError, ClaimLostError, JournalCorruptError, ValidationError
from ._journalstore import ItemState, JournalEntry, check_transition, recorded
from ._redisconn import redis_client, shown_url
from ._sharedrun import (
    BEGIN_SCRIPT,
    CLAIM_SCRIPT,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    TRANSITION_SCRIPT,
    RunKeys,
    changes,
    decode_row,
    new_row,
)


if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = ["RedisJournal"]

log = logging.getLogger("ttapi_async.journal")

_RENEW_SHARE: Final = 3  # a claim is renewed every lease / 3
#: Why an item taken over while ``submitting`` is ``outcome_unknown``.
_LAPSED: Final = (
    "its worker stopped (the claim lapsed) while sending it: it may have been accepted and "
    "billed; resubmit it only knowingly"
)


class RedisJournal:
    """A bulk run's journal in Redis: open it, then give it to ``client.bulk(journal=)``.

    ::

        async with tt.RedisJournal.open("redis://127.0.0.1:6379/0", run="covers") as journal:
            async with client.bulk(requests, journal=journal, save_to="out") as outcomes:
                ...

    Every process that opens the same ``run`` (under the same ``prefix``) over the same
    inputs shares it: each item runs in one worker at a time, a dead worker's items are
    taken over after ``lease`` seconds, and each run ends once every item has ended
    (:attr:`shared`). Needs the ``redis`` extra and Redis 6.2 or later.

    Attributes:
        run: the run's name. lease: seconds a claim lasts unless renewed. owner: this
            worker's name in the claims (host, pid and a random part). run_ttl: seconds
            the run's keys live after a worker closes it.
    """

    #: A shared store: the bulk runner waits for other workers' items and takes over
    #: those whose worker died.
    shared: Final = True

    def __init__(
        self, redis: Redis, keys: RunKeys, lease: float, url: str, run_ttl: float = 7 * 86400.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.run = keys.run
        self.lease = lease
        self.url = url
        self.run_ttl = max(1, int(run_ttl))
        self.owner: Final = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease_ms = max(1, int(lease * 1000))
        self._held: dict[int, int] = {}  # index -> fencing number
        self._run_id: str | None = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._scripts = {
            name: redis.register_script(text)
            for name, text in (
                ("claim", CLAIM_SCRIPT),
                ("renew", RENEW_SCRIPT),
                ("release", RELEASE_SCRIPT),
                ("transition", TRANSITION_SCRIPT),
                ("begin", BEGIN_SCRIPT),
            )
        }

    def __repr__(self) -> str:
        return f"RedisJournal(url={self.url!r}, run={self.run!r}, lease={self.lease})"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        url: str,
        run: str,
        *,
        prefix: str = "ttapi",
        lease: float = 30.0,
        run_ttl: float = 7 * 86400.0,
    ) -> AsyncIterator[RedisJournal]:
        """Open (or join) the shared run ``run``; its claims are renewed while open.

        Closing it releases this worker's claims and sets the run's keys to expire
        ``run_ttl`` seconds later (a week): a finished run cleans itself up, and a run
        joined again within that time resumes.

        Raises:
            ValidationError: a bad ``run`` name, ``prefix`` or ``lease``.
            BrokerError: Redis is unreachable.
        """
        if not lease >= 1:
            raise ValidationError("lease", lease, "at least 1 second")
        if not run_ttl >= 1:
            raise ValidationError("run_ttl", run_ttl, "at least 1 second")
        keys = RunKeys(prefix, run)
        redis, errors = redis_client(url, max_connections=8)
        journal = cls(redis, keys, lease, shown_url(url), run_ttl)
        journal._errors = errors
        try:
            await journal._start()
            async with anyio.create_task_group() as tg:
                tg.start_soon(journal._renew_forever)
                try:
                    yield journal
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await journal._release_all()
                await redis.aclose()

    # ------------------------------------------------------------------ JournalStore

    @property
    def run_id(self) -> str | None:
        """The run's id: the same for every worker of the run."""
        return self._run_id

    async def load(self) -> Mapping[int, JournalEntry]:
        """Every row, by index."""
        rows = await self._call(self._redis.hgetall(self._keys.rows), "read the run")
        return {int(k): decode_row(int(k), v, self._where) for k, v in rows.items()}

    async def rows(self, indexes: Sequence[int]) -> dict[int, JournalEntry]:
        """The rows of ``indexes`` that exist."""
        if not indexes:
            return {}
        values = await self._call(self._redis.hmget(self._keys.rows, list(indexes)), "read rows")
        return {i: decode_row(i, v, self._where) for i, v in zip(indexes, values, strict=True) if v}

    async def begin(self, index: int, fingerprint: str, kind: str, label: str) -> JournalEntry:
        """Add input ``index`` as pending, or return its row (another worker's too).

        Raises:
            ValidationError: the row exists with another fingerprint (other inputs).
        """
        script = self._scripts["begin"]
        stored = await self._call(
            script(keys=[self._keys.rows], args=[index, new_row(fingerprint, kind, label)]),
            "add a row",
        )
        entry = decode_row(index, stored, self._where)
        if entry.fingerprint != fingerprint:
            raise ValidationError(
                "journal",
                self._where,
                f"row {index} was written for a different input (another file, or the "
                "inputs changed): use another --run name, or the same inputs",
            )
        return entry

    async def transition(
        self,
        index: int,
        new: ItemState,
        *,
        job_id: str | None = None,
        hooked: bool = False,
        files: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        """Move row ``index`` to ``new``, if this worker still holds its claim.

        Raises:
            ClaimLostError: the claim lapsed or another worker took the item over; nothing
                was written, and this worker must not act on the item any more.
            JournalTransitionError: the table forbids the move.
            ValidationError: ``new`` lacks what it records, or the row is missing.
        """
        recorded(new, job_id=job_id, reason=reason)
        fence = self._held.get(index)
        if fence is None:
            raise ClaimLostError(index, self.run)
        allowed, fields = changes(new, job_id=job_id, hooked=hooked, files=files, reason=reason)
        script = self._scripts["transition"]
        keys = [self._keys.rows, self._keys.claims]
        reply = await self._call(
            script(keys=keys, args=[index, self.owner, fence, allowed, fields]), "write a row"
        )
        verdict = _text(reply[0])
        if verdict == "ok":
            return
        if verdict == "lost":
            self._held.pop(index, None)
            await self._check_still_there()
            raise ClaimLostError(index, self.run)
        if verdict == "missing":
            await self._check_still_there()
            raise ValidationError("index", index, f"no row {index} in run {self.run!r}")
        check_transition(ItemState(_text(reply[1])), new, index=index)

    async def claim(self, index: int) -> bool:
        """Take item ``index``; False while another live worker holds it."""
        script = self._scripts["claim"]
        keys = [self._keys.claims, self._keys.fence, self._keys.rows]
        args: list[str | int | bytes] = [index, self.owner, self._lease_ms, _LAPSED]
        fence = await self._call(script(keys=keys, args=args), "claim")
        if int(fence) <= 0:
            return False
        self._held[index] = int(fence)
        return True

    async def renew(self, index: int) -> bool:
        """Extend this worker's claim on ``index``; False if it was lost meanwhile."""
        fence = self._held.get(index)
        if fence is None:
            return False
        script = self._scripts["renew"]
        args: list[str | int | bytes] = [index, self.owner, fence, self._lease_ms]
        if int(await self._call(script(keys=[self._keys.claims], args=args), "renew")):
            return True
        self._held.pop(index, None)
        return False

    async def release(self, index: int) -> bool:
        """Let go of the claim on ``index``; False if this worker did not hold it."""
        fence = self._held.pop(index, None)
        if fence is None:
            return False
        script = self._scripts["release"]
        args: list[str | int | bytes] = [index, self.owner, fence]
        return bool(int(await self._call(script(keys=[self._keys.claims], args=args), "release")))

    async def aclose(self) -> None:
        """Nothing to do: :meth:`open`'s block closes the journal."""

    # ------------------------------------------------------------------ internals

    @property
    def _where(self) -> str:
        return f"{self.url} run {self.run!r}"

    async def _call(self, awaitable: Any, what: str) -> Any:
        try:
            return await awaitable
        except self._errors as exc:
            msg = f"cannot {what} of the shared run at {self._where}: {type(exc).__name__}: {exc}"
            raise BrokerError(msg) from None

    async def _start(self) -> None:
        """Create the run's meta (or join it) and read its run id."""
        mine = secrets.token_hex(8)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._keys.meta, "run_id", mine)
            pipe.hsetnx(self._keys.meta, "created", str(time.time()))
            pipe.hget(self._keys.meta, "run_id")
            _, _, run_id = await self._call(pipe.execute(), "open")
        self._run_id = _text(run_id)

    async def _check_still_there(self) -> None:
        """A run whose keys vanished (Redis came back empty) stops: nothing is sent again."""
        exists = await self._call(self._redis.exists(self._keys.meta), "check the run")
        if not exists:
            raise JournalCorruptError(
                self._where,
                (),
                "the shared run vanished from Redis (it came back empty: run Redis with "
                "appendonly yes and noeviction); nothing more is submitted",
            )

    async def _renew_forever(self) -> None:
        """Renew every held claim every lease / 3 while the journal is open."""
        while True:
            await anyio.sleep(self.lease / _RENEW_SHARE)
            for index in list(self._held):
                try:
                    if not await self.renew(index):
                        log.warning("run %s: lost the claim on item %d", self.run, index)
                except BrokerError as exc:  # Redis away: the lease may lapse; writes then fail
                    log.warning("run %s: cannot renew claims: %s", self.run, exc)
                    break

    async def _release_all(self) -> None:
        """Let go of every claim, and set the run's keys to expire in ``run_ttl`` seconds.

        A stopping worker's items go to the others at once, not after its lease.
        """
        for index in list(self._held):
            with contextlib.suppress(BrokerError):
                await self.release(index)
        keys = self._keys
        with contextlib.suppress(BrokerError):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in (keys.meta, keys.rows, keys.claims, keys.fence):
                    pipe.expire(key, self.run_ttl)
                await self._call(pipe.execute(), "set the run to expire")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
