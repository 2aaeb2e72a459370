"""The resources a client hands out: ``images``, ``dalle3``, ``gpt4o``, and the ``Job`` handle.

Strictly private. Each method is the same three steps: build a checked
:class:`~ttapi_async._protocol.RequestSpec` (nothing is sent if a rule is broken), send it
through the :class:`~ttapi_async._sender.Sender` the resource was handed, and parse the
reply, all under one deadline. ``gpt4o`` is also handed the waiter (``job.wait()``) and
the webhook receiver, if any (submits then carry a hook URL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._errors import OutcomeUnknownError, RequestTimeout, ValidationError
from ._http import RawResponse
from ._inputs import load_edit_input
from ._models import ImagesResponse, JobResult, JobSnapshot, ResponseInfo
from ._protocol import (
    build_dalle3,
    build_edit,
    build_edit_json,
    build_fetch,
    build_generate,
    build_submit_4o,
    parse_fetch,
    parse_images,
    parse_submit,
)
from ._types import NOT_GIVEN, FileID, ImageInput, ImageRef, ImageURL, Timeout


if TYPE_CHECKING:
    from ._retry import RetryPolicy
    from ._sender import Sender
    from ._waiter import JobWaiter
    from ._webhook import WebhookReceiver


__all__ = ["Dalle3", "GPT4o", "Images", "Job", "fetch_once"]


def _images_parser(raw: RawResponse, info: ResponseInfo) -> ImagesResponse:
    return parse_images(raw.status, raw.headers, raw.body, info)


class _Resource:
    __slots__ = ("_sender",)

    def __init__(self, sender: Sender) -> None:
        self._sender = sender


class Images(_Resource):
    """``POST /v1/images/generations`` and ``POST /v1/images/edits``.

    OpenAI-compatible and synchronous: gpt-image-1, dall-e-2, dall-e-3.
    """

    __slots__ = ()

    async def generate(
        self,
        *,
        prompt: str,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        style: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse:
        """Create images from a prompt.

        Arguments follow OpenAI's Images API; a None is not sent. The rules of the known
        models (gpt-image-1, gpt-image-1.5, gpt-image-2, dall-e-2, dall-e-3) are checked
        first, and a broken rule raises :class:`ValidationError` naming the parameter.
        gpt-image-2 takes any ``WIDTHxHEIGHT`` with both sides multiples of 16, the longer
        edge at most 3840 and a ratio up to 3:1 (the server decides the rest). With no
        ``model`` the server's default is assumed: dall-e-2, or gpt-image-1 when a
        parameter only the GPT image models take is given (``background``,
        ``moderation``, ``output_format``, ``output_compression``). Other models pass
        through unchecked.
        ``extra_body`` adds raw fields (unchecked). ``timeout`` bounds the whole call.

        Returns:
            The :class:`ImagesResponse` (``data[i].b64_json`` or ``.url``; ``usage`` for
            gpt-image models; ``http`` for status, headers and attempts).
        """
        params = {
            "prompt": prompt,
            "model": model,
            "n": n,
            "size": size,
            "quality": quality,
            "response_format": response_format,
            "style": style,
            "background": background,
            "moderation": moderation,
            "output_format": output_format,
            "output_compression": output_compression,
            "user": user,
        }
        spec = build_generate(params, extra_body)
        return await self._sender.call(spec, _images_parser, self._sender.deadline(timeout))

    async def edit(
        self,
        *,
        image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
        prompt: str,
        mask: ImageInput | ImageRef | None = None,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        moderation: str | None = None,
        input_fidelity: str | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse:
        """Edit or extend one or more images with a prompt.

        ``image`` is a path, bytes, a binary file, or a list of those (the GPT image
        models: up to 16 png/webp/jpeg images under 50 MB; dall-e-2: one square PNG under
        4 MB). ``input_fidelity`` (``high`` or ``low``) is for the GPT image models; which
        of them take it is disputed, so the server decides that.
        ``mask`` is a PNG with the first image's dimensions whose transparent pixels mark
        what to edit. The MIME type of each upload is read from its bytes. Rules are
        checked before anything is sent; ``timeout`` bounds the whole call, reading the
        files included.
        """
        sender = self._sender
        deadline = sender.deadline(timeout)
        sources = _as_list(image)
        params = {
            "prompt": prompt,
            "model": model,
            "n": n,
            "size": size,
            "quality": quality,
            "response_format": response_format,
            "background": background,
            "output_format": output_format,
            "output_compression": output_compression,
            "moderation": moderation,
            "input_fidelity": input_fidelity,
            "user": user,
        }
        given = [*sources, *([] if mask is None else [mask])]
        by_ref = [isinstance(src, ImageURL | FileID) for src in given]
        if any(by_ref):
            if not all(by_ref):
                raise ValidationError(
                    "image",
                    "uploads and URLs mixed",
                    "give every image and the mask as tt.ImageURL / tt.FileID (a JSON edit), "
                    "or none of them (an upload)",
                )
            refs = cast("list[ImageRef]", sources)
            spec = build_edit_json(params, refs, cast("ImageRef | None", mask), extra_body)
            return await sender.call(spec, _images_parser, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                images = [
                    await load_edit_input(src, "image" if len(sources) == 1 else f"image[{i}]")
                    for i, src in enumerate(sources)
                ]
                mask_image = None if mask is None else await load_edit_input(mask, "mask")
        except TimeoutError as exc:
            msg = "images.edit timed out while reading its input files"
            raise RequestTimeout(msg, request_sent=False) from exc
        spec = build_edit(params, images, mask_image, extra_body)
        return await sender.call(spec, _images_parser, deadline)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())


def _as_list(
    image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
) -> list[ImageInput | ImageRef]:
    if isinstance(image, list | tuple):
        return list(image)
    return [image]  # type: ignore[list-item]  # a str/bytes is one image, not a sequence


class Dalle3(_Resource):
    """The legacy DALL-E 3 route ``POST /openai/v1/images/generations``.

    TTAPI wraps the OpenAI reply in its envelope; the SDK unwraps it, so this returns the
    same :class:`ImagesResponse` as ``images.generate``. TTAPI marks the route as no longer
    recommended; ``images.generate(model="dall-e-3")`` is the newer path.
    """

    __slots__ = ()

    async def generate(
        self,
        *,
        prompt: str,
        size: str,
        quality: str | None = None,
        style: str | None = None,
        n: int | None = None,
        model: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse:
        """Create one DALL-E 3 image.

        ``size`` is required on this route: 1024x1024, 1024x1792 or 1792x1024;
        ``quality`` is standard or hd.
        """
        params = {
            "prompt": prompt,
            "size": size,
            "quality": quality,
            "style": style,
            "n": n,
            "model": model,
        }
        spec = build_dalle3(params, extra_body)
        return await self._sender.call(spec, _images_parser, self._sender.deadline(timeout))


class Job:
    """A handle on a submitted 4o-image job: its id and the client that submitted it.

    A handle, not a data model: it can act (``await job.fetch()``). Rebuild one for a
    known id with ``client.gpt4o.job(job_id)``.
    """

    __slots__ = ("_gpt4o", "http", "job_id", "submitted_at")

    def __init__(
        self,
        job_id: str,
        gpt4o: GPT4o,
        http: ResponseInfo | None = None,
        submitted_at: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.http = http
        #: Event-loop time of the submit (None for a handle made from a known id).
        self.submitted_at = submitted_at
        self._gpt4o = gpt4o

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.job_id == self.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)

    async def fetch(self, *, timeout: Timeout = NOT_GIVEN) -> JobSnapshot:
        """Read the job's current state (one fetch request)."""
        return await self._gpt4o.fetch(self.job_id, timeout=timeout)

    async def wait(self, *, timeout: Timeout = NOT_GIVEN) -> JobResult:
        """Wait for the job's end through the client's :class:`JobWaiter`.

        Raises:
            JobFailedError: TTAPI reported the job FAILED.
            JobTimeoutError: ``timeout`` passed first (the job goes on; wait again later).
        """
        return await self._gpt4o.waiter.wait(self, timeout=timeout)


class GPT4o(_Resource):
    """4o-image jobs: ``POST /openai/4o-image/generations`` and ``/openai/4o-image/fetch``.

    A job yields one image; submit N jobs for N images.
    """

    __slots__ = ("waiter", "webhook")

    def __init__(
        self, sender: Sender, waiter: JobWaiter, webhook: WebhookReceiver | None = None
    ) -> None:
        super().__init__(sender)
        #: The waiter ``job.wait()`` uses (the client's).
        self.waiter = waiter
        #: The receiver submits report to (None: no hook URL unless given).
        self.webhook = webhook

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

        def parse(raw: RawResponse, info: ResponseInfo) -> Job:
            job_id = parse_submit(raw.status, raw.headers, raw.body)
            return Job(job_id, self, info, submitted_at=started)

        try:
            spec = build_submit_4o(prompt, refer_images, hook_url, extra_body)
            job = await sender.call(spec, parse, sender.deadline(timeout))
        except OutcomeUnknownError:
            # The job may exist: its callback (to this token) is the one way to learn its
            # id, so the token stays registered until it expires.
            raise
        except BaseException:
            if receiver is not None and token is not None:
                receiver.release(token)
            raise
        if receiver is not None and token is not None:
            if waiter.running:
                waiter.track(job.job_id, hooked=True, started=started)
            await receiver.bind(token, job.job_id)
        return job

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
        deadline = self._sender.deadline(timeout)
        job = await self.submit(
            prompt=prompt,
            refer_images=refer_images,
            hook_url=hook_url,
            extra_body=extra_body,
            timeout=_remaining(deadline),
        )
        return await job.wait(timeout=_remaining(deadline))

    async def fetch(self, job_id: str, *, timeout: Timeout = NOT_GIVEN) -> JobSnapshot:
        """Read a job's state. Free and idempotent, so retried on any passing error.

        A job that failed comes back as a snapshot with ``status=FAILED`` and the reason
        in ``message``; a failed *request* (unknown job id, auth, ...) raises.
        """
        return await fetch_once(self._sender, job_id, self._sender.deadline(timeout))

    def job(self, job_id: str) -> Job:
        """A handle for a job submitted earlier (by this process or another)."""
        return Job(job_id, self)


async def fetch_once(
    sender: Sender, job_id: str, deadline: float | None, retry: RetryPolicy | None = None
) -> JobSnapshot:
    """One ``/openai/4o-image/fetch`` of ``job_id`` through ``sender`` (the waiter's fetch)."""
    spec = build_fetch(job_id)

    def parse(raw: RawResponse, info: ResponseInfo) -> JobSnapshot:
        return parse_fetch(raw.status, raw.headers, raw.body, job_id, info)

    return await sender.call(spec, parse, deadline, retry)
