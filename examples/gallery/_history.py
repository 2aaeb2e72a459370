"""The gallery's state: the generations so far (in memory) and the pages watching them.

Every change to a generation is published to every watcher (one per open page, fed by
server-sent events) as the generation's whole JSON, so a page only ever upserts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import ttapi_async as tt


#: What each step is called on the page. ``submitted`` and ``saved`` are the gallery's
#: own; the rest are the waiter's events (``tt.JobEventKind``), named with TTAPI's status.
LABELS = {
    "submitted": "submitted",
    tt.JobEventKind.QUEUED.value: "queued",
    tt.JobEventKind.RUNNING.value: "running (ON_QUEUE)",
    tt.JobEventKind.SUCCEEDED.value: "succeeded (SUCCESS)",
    tt.JobEventKind.FAILED.value: "failed (FAILED)",
    tt.JobEventKind.TIMED_OUT.value: "timed out",
    "saved": "image saved",
}

#: How many updates a page may fall behind before it is dropped (it reconnects and is
#: sent a fresh snapshot: a slow page must never slow the waiter that feeds it).
WATCH_BUFFER = 256

Update = dict[str, Any]


@dataclass
class Status:
    """One step of a generation: its kind (a key of ``LABELS``), when, and any detail."""

    kind: str
    at: float
    detail: str | None = None

    def to_json(self) -> Update:
        label = LABELS.get(self.kind, self.kind)
        if self.detail:
            label = f"{label}: {self.detail}"
        return {"kind": self.kind, "label": label, "at": self.at}


@dataclass
class Generation:
    """One prompt, its job and what became of it."""

    job_id: str
    prompt: str
    created_at: float
    statuses: list[Status] = field(default_factory=list)
    state: str = "working"  # working, done or failed
    image: Path | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None

    def to_json(self) -> Update:
        """What a page is sent; the image by the gallery's own URL, never TTAPI's."""
        return {
            "job_id": self.job_id,
            "prompt": self.prompt,
            "created_at": self.created_at,
            "state": self.state,
            "statuses": [status.to_json() for status in self.statuses],
            "image": f"/images/{self.job_id}" if self.image is not None else None,
            "width": self.width,
            "height": self.height,
            "error": self.error,
        }


class Gallery:
    """Generations of one client: submitted here, waited on and saved in ``tg``.

    Args:
        client: an open client (its waiter runs); its job events feed the statuses.
        tg: the task group each generation's wait-and-save runs in (no stray tasks: the
            server's shutdown cancels them with the group).
        folder: where images are saved (``client.save``) and served from.
        model: the model of ``client.gpt.submit``; None is TTAPI's default (gpt-image-2).
        wait_timeout: seconds a job may take before the page is told it timed out.
    """

    def __init__(
        self,
        client: tt.Client,
        tg: anyio.abc.TaskGroup,
        folder: Path,
        *,
        model: str | None = None,
        wait_timeout: float = 900.0,
    ) -> None:
        self._client = client
        self._tg = tg
        self._folder = folder
        self._model = model
        self._wait_timeout = wait_timeout
        self._generations: dict[str, Generation] = {}  # by job id, oldest first
        self._watchers: set[MemoryObjectSendStream[Update]] = set()
        self._closed = False
        # A listener, not ``waiter.events()``: it is called inline as the waiter decides,
        # so "succeeded" is recorded before the wait it ends returns and "saved" follows.
        client.waiter.add_listener(self._on_event)

    async def generate(self, prompt: str) -> Generation:
        """Submit ``prompt`` as a job, record it, and wait for it and save it meanwhile.

        Raises what ``client.gpt.submit`` raises (nothing is recorded then).
        """
        job = await self._client.gpt.submit(prompt=prompt, model=self._model)
        generation = Generation(job.job_id, prompt, time.time())
        self._generations[job.job_id] = generation
        self._add(generation, Status("submitted", generation.created_at))
        self._tg.start_soon(self._finish, generation, job)
        return generation

    async def _finish(self, generation: Generation, job: tt.Job) -> None:
        """Wait for the job and save its image; whatever happens ends on the page."""
        # Only the SDK's errors are the job's fate; anything else is a bug, and it should
        # stop the server loudly rather than leave a page waiting forever.
        try:
            result = await job.wait(timeout=self._wait_timeout)
            saved = await self._client.save(result, self._folder)
        except tt.JobFailedError as exc:  # the waiter's "failed" event carries the reason
            self._end(generation, error=exc.reason or "the job failed")
        except tt.JobTimeoutError:
            self._end(generation, error=f"no result after {self._wait_timeout:g} s")
        except tt.TTAPIError as exc:  # the wait or the download failed: say why
            self._end(generation, error=f"{type(exc).__name__}: {exc}")
        else:
            image = saved[0]  # a job has one image
            generation.image = image.path
            generation.width, generation.height = image.width, image.height
            generation.state = "done"
            self._add(generation, Status("saved", time.time()))

    def _end(self, generation: Generation, *, error: str) -> None:
        generation.state, generation.error = "failed", error
        self._publish(generation)

    def _on_event(self, event: tt.JobEvent) -> None:
        """A waiter's event becomes a status of its generation (other jobs are not ours)."""
        generation = self._generations.get(event.job_id)
        if generation is not None:
            self._add(generation, Status(event.kind.value, event.at, event.detail))

    def _add(self, generation: Generation, status: Status) -> None:
        generation.statuses.append(status)
        self._publish(generation)

    def _publish(self, generation: Generation) -> None:
        update = generation.to_json()
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(update)
            except anyio.WouldBlock:  # too slow: drop it; its page reconnects afresh
                self._watchers.discard(watcher)
                watcher.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.discard(watcher)

    def history(self) -> list[Update]:
        """Every generation, newest first."""
        return [g.to_json() for g in reversed(self._generations.values())]

    def image_of(self, job_id: str) -> Path | None:
        """The saved image of a job of this gallery, or None (unknown or not yet saved)."""
        generation = self._generations.get(job_id)
        return generation.image if generation is not None else None

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[tuple[list[Update], MemoryObjectReceiveStream[Update]]]:
        """The history now, and every update after it until the block ends or :meth:`close`.

        The snapshot is taken in the same step as the watcher is added, so no update
        falls between the two.
        """
        send, receive = anyio.create_memory_object_stream[Update](WATCH_BUFFER)
        if self._closed:
            send.close()  # the server is stopping: the stream ends at once
        else:
            self._watchers.add(send)
        snapshot = self.history()
        try:
            with receive:
                yield snapshot, receive
        finally:
            self._watchers.discard(send)
            send.close()

    def close(self) -> None:
        """End every watch, so the server's shutdown never waits on an open page."""
        self._closed = True
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()
