"""The job routes a client hands out: ``gpt4o`` and ``gpt``, and the ``Job`` handle.

Strictly private. Both routes submit a job that yields one image, report its end to a
hook URL, and are fetched by job id: ``/openai/4o-image/*`` (the original document's) and
``/openai/gpt/*`` (2026 sections 6 and 7, which lists ``gpt-4o-image`` as one of its
models). A :class:`Job` knows its route, so ``job.fetch()``, ``job.wait()`` and the
waiter's polls and callback confirmations use the right one.

Each submit is the same steps on either route: with a webhook receiver, a token is
registered before the POST (a callback may beat the reply); the checked request is sent
through the :class:`~ttapi_async._sender.Sender` under one deadline; the job is tracked
by the waiter and its token bound to the job id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import OutcomeUnknownError, ValidationError
from ._models import JobResult, JobSnapshot, ResponseInfo
from ._protocol import (
    ROUTE_4O,
    ROUTE_GPT,
    RequestSpec,
    build_fetch,
    build_submit_4o,
    build_submit_gpt,
    parse_fetch,
    parse_submit,
)
from ._types import NOT_GIVEN, Timeout


if TYPE_CHECKING:
    from ._http import RawResponse
    from ._retry import RetryPolicy
    from ._sender import Sender
    from ._waiter import JobWaiter
    from ._webhook import WebhookReceiver


__all__ = ["GPT", "GPT4o", "Job", "fetch_once"]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())


class Job:
    """A handle on a submitted job: its id, its route and the client that submitted it.

    A handle, not a data model: it can act (``await job.fetch()``). Rebuild one for a
    known id with ``client.gpt4o.job(job_id)`` or ``client.gpt.job(job_id)``.
    """

    __slots__ = ("_jobs", "http", "job_id", "submitted_at")

    def __init__(
        self,
        job_id: str,
        jobs: _JobRoute,
        http: ResponseInfo | None = None,
        submitted_at: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.http = http
        #: Event-loop time of the submit (None for a handle made from a known id).
        self.submitted_at = submitted_at
        self._jobs = jobs

    @property
    def route(self) -> str:
        """The job route that made it: ``"4o-image"`` or ``"gpt"``."""
        return self._jobs.route

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r}, route={self.route!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and (other.job_id, other.route) == (self.job_id, self.route)

    def __hash__(self) -> int:
        return hash((self.job_id, self.route))

    async def fetch(self, *, timeout: Timeout = NOT_GIVEN) -> JobSnapshot:
        """Read the job's current state (one fetch request, on its route)."""
        return await self._jobs.fetch(self.job_id, timeout=timeout)

    async def wait(self, *, timeout: Timeout = NOT_GIVEN) -> JobResult:
        """Wait for the job's end through the client's :class:`JobWaiter`.

        Raises:
            JobFailedError: TTAPI reported the job FAILED.
            JobTimeoutError: ``timeout`` passed first (the job goes on; wait again later).
        """
        return await self._jobs.waiter.wait(self, timeout=timeout)


class _JobRoute:
    """What the two job routes share: submit (with a hook), fetch, handles."""

    __slots__ = ("_sender", "waiter", "webhook")

    #: The route's name (``Job.route``).
    route: str = ROUTE_4O

    def __init__(
        self, sender: Sender, waiter: JobWaiter, webhook: WebhookReceiver | None = None
    ) -> None:
        self._sender = sender
        #: The waiter ``job.wait()`` uses (the client's).
        self.waiter = waiter
        #: The receiver submits report to (None: no hook URL unless given).
        self.webhook = webhook

    async def _submit(
        self,
        build: Callable[[str | None], RequestSpec],
        hook_url: str | None,
        extra_body: Mapping[str, Any] | None,
        timeout: Timeout,
        model: str | None = None,
    ) -> Job:
        """Send the spec ``build(hook_url)`` makes, with the receiver's hook if any.

        ``model`` is the model asked for, for telemetry (the body already carries it).
        """
        sender = self._sender
        waiter = self.waiter
        receiver = self.webhook if hook_url is None else None
        if receiver is not None and extra_body and "hookUrl" in extra_body:
            raise ValidationError(
                "extra_body", "hookUrl", "pass hook_url= (the webhook receiver makes hook URLs)"
            )
        token = None
        if receiver is not None:
            # The token is registered before the POST: a callback may beat the reply.
            token, hook_url = await receiver.register(waiter)
        started = asyncio.get_running_loop().time()
        route = self.route

        def parse(raw: RawResponse, info: ResponseInfo) -> Job:
            job_id = parse_submit(raw.status, raw.headers, raw.body, f"{route}.submit")
            return Job(job_id, self, info, submitted_at=started)

        try:
            spec = build(hook_url)
            job = await sender.call(spec, parse, sender.deadline(timeout), model=model)
        except OutcomeUnknownError:
            # The job may exist: its callback (to this token) is the one way to learn its
            # id, so the token stays registered until it expires.
            raise
        except BaseException:
            if receiver is not None and token is not None:
                receiver.release(token)
            raise
        if waiter.running:
            waiter.remember_route(job.job_id, route)
        if receiver is not None and token is not None:
            if waiter.running:
                waiter.track(job.job_id, hooked=True, started=started, route=route)
            await receiver.bind(token, job.job_id, route=route)
        return job

    async def _submit_and_wait(
        self, submit: Callable[[float | None], Awaitable[Job]], timeout: Timeout
    ) -> JobResult:
        """``submit`` then wait, both within one ``timeout`` (``generate``)."""
        deadline = self._sender.deadline(timeout)
        job = await submit(_remaining(deadline))
        return await job.wait(timeout=_remaining(deadline))

    async def fetch(self, job_id: str, *, timeout: Timeout = NOT_GIVEN) -> JobSnapshot:
        """Read a job's state. Free and idempotent, so retried on any passing error.

        A job that failed comes back as a snapshot with ``status=FAILED`` and the reason
        in ``message``; a failed *request* (unknown job id, auth, ...) raises.
        """
        return await fetch_once(
            self._sender, job_id, self._sender.deadline(timeout), route=self.route
        )

    def job(self, job_id: str) -> Job:
        """A handle for a job submitted earlier (by this process or another)."""
        return Job(job_id, self)


class GPT4o(_JobRoute):
    """4o-image jobs: ``POST /openai/4o-image/generations`` and ``/openai/4o-image/fetch``.

    A job yields one image; submit N jobs for N images. TTAPI now lists ``gpt-4o-image``
    as a model of ``client.gpt`` too (and badges this route's fetch page deprecated).
    """

    __slots__ = ()
    route = ROUTE_4O

    async def submit(
        self,
        *,
        prompt: str,
        refer_images: Sequence[str] | str | None = None,
        hook_url: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> Job:
        """Submit a job and return its handle at once (the image comes later).

        ``refer_images`` are URLs of reference images. With ``hook_url``, TTAPI POSTs the
        job's final state there. The submit is billable: it is retried only when it
        provably never reached the server (see :class:`OutcomeUnknownError`).
        """
        return await self._submit(
            lambda hook: build_submit_4o(prompt, refer_images, hook, extra_body),
            hook_url,
            extra_body,
            timeout,
        )

    async def generate(
        self,
        *,
        prompt: str,
        refer_images: Sequence[str] | str | None = None,
        hook_url: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> JobResult:
        """Submit a job and wait for its result: ``submit`` then ``job.wait``.

        ``timeout`` bounds the whole call, submit and wait together.

        Raises:
            JobFailedError: TTAPI reported the job FAILED.
            JobTimeoutError: the job did not end in time; ``job_id`` is on the error.
        """
        return await self._submit_and_wait(
            lambda left: self.submit(
                prompt=prompt,
                refer_images=refer_images,
                hook_url=hook_url,
                extra_body=extra_body,
                timeout=left,
            ),
            timeout,
        )


class GPT(_JobRoute):
    """GPT image jobs: ``POST /openai/gpt/generations`` and ``/openai/gpt/fetch``.

    The models: ``gpt-image-2`` (the server's default), ``gpt-image-2-plus``,
    ``gpt-image-1.5``, ``gpt-image-1`` and ``gpt-4o-image``; unlisted ones pass through.
    A job yields one image (the route has no ``n``).
    """

    __slots__ = ()
    route = ROUTE_GPT

    async def submit(
        self,
        *,
        prompt: str,
        model: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        refer_images: Sequence[str] | str | None = None,
        hook_url: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> Job:
        """Submit a job and return its handle at once (the image comes later).

        ``aspect_ratio`` (``1:1``, ``3:4``, ``4:3``, ``16:9``, ``9:16``) is for gpt-image-2
        only, also when ``model`` is omitted; ``size`` (``WIDTHxHEIGHT``) for
        gpt-image-2-plus only: both sides multiples of 16, the longer edge at most 3840, a
        ratio up to 3:1 and 655,360 to 8,294,400 pixels. TTAPI silently adjusts a size
        outside those, so the SDK refuses it first (:class:`ValidationError`).
        ``refer_images`` are URLs of reference images; ``hook_url`` as on ``gpt4o``.
        """
        return await self._submit(
            lambda hook: build_submit_gpt(
                prompt,
                model=model,
                aspect_ratio=aspect_ratio,
                size=size,
                refer_images=refer_images,
                hook_url=hook,
                extra_body=extra_body,
            ),
            hook_url,
            extra_body,
            timeout,
            model,
        )

    async def generate(
        self,
        *,
        prompt: str,
        model: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        refer_images: Sequence[str] | str | None = None,
        hook_url: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> JobResult:
        """Submit a job and wait for its result: ``submit`` then ``job.wait``.

        ``timeout`` bounds the whole call, submit and wait together.

        Raises:
            JobFailedError: TTAPI reported the job FAILED.
            JobTimeoutError: the job did not end in time; ``job_id`` is on the error.
        """
        return await self._submit_and_wait(
            lambda left: self.submit(
                prompt=prompt,
                model=model,
                aspect_ratio=aspect_ratio,
                size=size,
                refer_images=refer_images,
                hook_url=hook_url,
                extra_body=extra_body,
                timeout=left,
            ),
            timeout,
        )


async def fetch_once(
    sender: Sender,
    job_id: str,
    deadline: float | None,
    retry: RetryPolicy | None = None,
    *,
    route: str = ROUTE_4O,
) -> JobSnapshot:
    """One fetch of ``job_id`` on ``route`` through ``sender`` (also the waiter's fetch)."""
    spec = build_fetch(job_id, route)

    def parse(raw: RawResponse, info: ResponseInfo) -> JobSnapshot:
        return parse_fetch(raw.status, raw.headers, raw.body, job_id, info)

    return await sender.call(spec, parse, deadline, retry)
