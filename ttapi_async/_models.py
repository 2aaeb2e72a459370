"""Data models: frozen attrs classes, free of I/O and of any client reference.

Strictly private; the public names are re-exported by ``ttapi_async``. The wire is turned
into these by the one converter in :mod:`ttapi_async._serde`.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from collections.abc import Mapping
from pathlib import Path

import attrs


__all__ = [
    "ImageData",
    "ImagesResponse",
    "InputTokensDetails",
    "JobEvent",
    "JobEventKind",
    "JobResult",
    "JobSnapshot",
    "JobStatus",
    "OutputTokensDetails",
    "ResponseInfo",
    "SavedImage",
    "Usage",
]


def _short_b64(value: str | None) -> str:
    # A b64 image is megabytes; a repr that prints it is useless and slow.
    return "None" if value is None else f"<{len(value)} base64 chars>"


@attrs.frozen
class ResponseInfo:
    """How a result came back over HTTP: for debugging, rate-limit headers and metrics.

    Attributes:
        status: the final HTTP status.
        headers: the final response's headers (case-insensitive mapping).
        elapsed: seconds from the first attempt's start to the final body read.
        attempts: how many HTTP requests the call made (1 when nothing was retried).
    """

    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    elapsed: float
    attempts: int = 1


@attrs.frozen
class InputTokensDetails:
    """Token counts of the input, by kind (gpt-image models)."""

    image_tokens: int = 0
    text_tokens: int = 0


@attrs.frozen
class OutputTokensDetails:
    """Token counts of the output, by kind (gpt-image models: ``output_tokens_details``)."""

    image_tokens: int = 0
    text_tokens: int = 0


@attrs.frozen
class Usage:
    """Token usage reported by gpt-image models (absent for dall-e)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None


@attrs.frozen
class ImageData:
    """One generated image: ``b64_json`` or a short-lived ``url`` (about an hour)."""

    b64_json: str | None = attrs.field(default=None, repr=_short_b64)
    url: str | None = None
    revised_prompt: str | None = None

    def decode(self) -> bytes:
        """Return the image bytes decoded from ``b64_json``.

        Raises:
            ValueError: the image came as a URL; download it instead.
        """
        if self.b64_json is None:
            msg = "this image has no b64_json (it came as a url); download the url instead"
            raise ValueError(msg)
        # validate=True: junk in the field is an error, not silently dropped bytes.
        return base64.b64decode(self.b64_json, validate=True)


@attrs.frozen
class ImageStreamEvent:
    """One event of a streamed ``images.generate`` / ``images.edit`` (``stream=True``).

    Attributes:
        type: ``image_generation.partial_image``, ``image_generation.completed``,
            ``image_edit.partial_image`` or ``image_edit.completed`` (another type is kept
            as it came: the stream is read tolerantly).
        b64_json: the (partial or final) image; ``decode()`` gives its bytes.
        partial_image_index: 0-based, on partial images only.
        usage: on completed images.
        size, quality, background, output_format, created_at: as the server echoes them
            (any string: a gpt-image-2 size is free).
    """

    type: str
    b64_json: str | None = attrs.field(default=None, repr=_short_b64)
    partial_image_index: int | None = None
    usage: Usage | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    created_at: int | None = None

    @property
    def completed(self) -> bool:
        """True for a final image (``*.completed``)."""
        return self.type.endswith(".completed")

    def decode(self) -> bytes:
        """The image bytes (as ``ImageData.decode``).

        Raises:
            ValueError: the event carries no image.
        """
        return ImageData(b64_json=self.b64_json).decode()


@attrs.frozen
class ImagesResponse:
    """The OpenAI ``ImagesResponse`` of ``/v1/images/*`` and of the legacy DALL-E 3 route.

    ``background``, ``output_format``, ``quality`` and ``size`` are echoed by newer
    gpt-image responses only; ``usage`` is present for gpt-image models only.
    ``prompt`` and ``model`` are what the call asked for (not sent back by the server;
    None for a response built by hand): :meth:`Client.save` names files from the prompt
    and writes both into the sidecar.
    """

    created: int
    data: tuple[ImageData, ...] = ()
    usage: Usage | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    #: The HTTP side of the call; not part of equality.
    http: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)
    #: The prompt of the call; not part of equality (the server's reply is).
    prompt: str | None = attrs.field(default=None, eq=False, repr=False)
    #: The model the call named (None: the server's default); not part of equality.
    model: str | None = attrs.field(default=None, eq=False)


class JobStatus(enum.StrEnum):
    """State of a 4o-image job, as TTAPI names it.

    ``UNKNOWN`` stands for any value TTAPI may add later; it is treated as still running.
    """

    PENDING_QUEUE = "PENDING_QUEUE"
    ON_QUEUE = "ON_QUEUE"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True for SUCCESS and FAILED: the job will not change again."""
        return self in {JobStatus.SUCCESS, JobStatus.FAILED}


@attrs.frozen
class JobSnapshot:
    """One reading of a 4o-image job: a fetch reply, or the body of a hookUrl callback.

    Attributes:
        job_id: the job's id.
        status: the parsed state; an unrecognised one is ``JobStatus.UNKNOWN``.
        raw_status: the status string exactly as the server sent it.
        message: the failure reason on FAILED; None while running and on success
            (TTAPI's ``null``, ``""`` and ``"success"`` all normalise to None).
        image_url: the result's URL on SUCCESS (it expires; save it promptly).
        quota: the quota charged, parsed from TTAPI's string (``"2"`` -> 2.0).
        finish_time: when the job ended, as an aware UTC datetime (TTAPI sends
            ``"YYYY-MM-DD HH:MM:SS"`` with no zone; UTC is assumed).
        hook_url: the callback URL TTAPI echoes; hidden from repr since it may carry a token.
    """

    job_id: str
    status: JobStatus
    raw_status: str = ""
    message: str | None = None
    prompt: str | None = None
    refer_images: tuple[str, ...] = ()
    image_url: str | None = None
    quota: float | None = None
    finish_time: dt.datetime | None = None
    hook_url: str | None = attrs.field(default=None, repr=False)
    http: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """True once the job succeeded or failed."""
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        """True when the job ended with an image."""
        return self.status is JobStatus.SUCCESS

    @property
    def failed(self) -> bool:
        """True when the job ended without an image (``message`` says why)."""
        return self.status is JobStatus.FAILED


@attrs.frozen
class JobResult:
    """A 4o-image job that succeeded, as a wait returns it.

    Attributes:
        job_id: the job's id.
        image_url: the result's URL (it expires: save it with ``client.save``).
        prompt: the prompt TTAPI echoes.
        refer_images: the reference image URLs TTAPI echoes.
        quota: the quota charged.
        finish_time: when TTAPI says the job ended (aware UTC).
        elapsed: seconds from the start of tracking (the submit) to the result being known.
        source: ``"webhook"`` when a hookUrl callback ended the wait (confirmed by a fetch
            unless confirmation is off), ``"poll"`` when polling found the result.
    """

    job_id: str
    image_url: str
    prompt: str | None = None
    refer_images: tuple[str, ...] = ()
    quota: float | None = None
    finish_time: dt.datetime | None = None
    elapsed: float = 0.0
    source: str = "poll"

    @classmethod
    def from_snapshot(cls, snap: JobSnapshot, *, elapsed: float, source: str) -> JobResult:
        """Build the result of a SUCCESS snapshot."""
        return cls(
            job_id=snap.job_id,
            image_url=snap.image_url or "",
            prompt=snap.prompt,
            refer_images=snap.refer_images,
            quota=snap.quota,
            finish_time=snap.finish_time,
            elapsed=elapsed,
            source=source,
        )

    def as_snapshot(self) -> JobSnapshot:
        """The result as a SUCCESS :class:`JobSnapshot` (``client.save`` takes either)."""
        return JobSnapshot(
            job_id=self.job_id,
            status=JobStatus.SUCCESS,
            raw_status="SUCCESS",
            prompt=self.prompt,
            refer_images=self.refer_images,
            image_url=self.image_url,
            quota=self.quota,
            finish_time=self.finish_time,
        )


class JobEventKind(enum.StrEnum):
    """What happened to a tracked job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@attrs.frozen
class JobEvent:
    """One status event of a tracked job (``at`` is a Unix timestamp)."""

    job_id: str
    kind: JobEventKind
    at: float
    detail: str | None = None


@attrs.frozen
class SavedImage:
    """One image saved to disk by ``client.save``.

    It is path-like: ``open(saved)``, ``os.fspath(saved)`` and ``str(saved)`` give the
    image's path, so it stands in where a :class:`~pathlib.Path` was returned before.

    Attributes:
        path: the image file (a name of its own: an existing file is never overwritten).
        sidecar: the JSON metadata file next to it (``<image name>.json``), or None.
        sha256: hex SHA-256 of the file's bytes, computed while they were written.
        size: the file's size in bytes.
        mime: the type read from the bytes (``image/png``, ``image/jpeg``, ...).
        width: pixel width from the image header (None if it could not be read).
        height: pixel height from the image header (None if it could not be read).
        source: ``"url"`` (downloaded) or ``"b64_json"`` (decoded from the response).
        url: where a downloaded image came from, without its query string (signed URLs
            carry credentials there); None for ``b64_json`` images.
    """

    path: Path
    sidecar: Path | None
    sha256: str
    size: int
    mime: str
    width: int | None
    height: int | None
    source: str
    url: str | None = None

    def __fspath__(self) -> str:
        """The image's path, for ``open()`` and everything else that takes a path."""
        return str(self.path)

    def __str__(self) -> str:
        """The image's path, as ``str(path)`` gave when ``save`` returned paths."""
        return str(self.path)
