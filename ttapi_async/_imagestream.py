"""ImageStream: the events of a streamed ``images.generate`` / ``images.edit``.

Strictly private; ``ttapi_async.ImageStream`` is the public name. The shape of
openai-python's ``AsyncStream``: an async iterator of events that is also an async
context manager closing the connection on exit::

    async with await client.images.generate(prompt=..., model="gpt-image-1",
                                            stream=True, partial_images=2) as stream:
        async for event in stream:
            print(event.type, event.partial_image_index, len(event.decode()))

Events are handed over as they arrive, never buffered to the end. A stream cut off after
it started raises :class:`~ttapi_async.StreamInterruptedError` (an
:class:`~ttapi_async.OutcomeUnknownError`: the call was accepted and may be billed) with
the events received so far, and is never retried by itself; an error event raises a typed
error with the server's message. A server that answers a streamed call with plain JSON
(it buffered the stream) is read as one ``*.completed`` event per image.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._errors import (
    ConnectionDroppedError,
    ResponseFormatError,
    StreamInterruptedError,
    TTAPIError,
)
from ._models import ImagesResponse, ImageStreamEvent
from ._stream import DONE, EventReader, image_event


if TYPE_CHECKING:
    from ._http import OpenStream


__all__ = ["ImageStream"]


class ImageStream:
    """The events of one streamed image call, as they arrive (see the module docstring).

    Attributes:
        received: every event handed over so far.
    """

    __slots__ = (
        "_buffered",
        "_closed",
        "_expected",
        "_lines",
        "_opened",
        "_operation",
        "_reader",
        "_scrub",
        "received",
    )

    def __init__(
        self,
        opened: OpenStream | None,
        *,
        operation: str,
        expected: int,
        scrub: Callable[[TTAPIError], None],
        buffered: tuple[ImageStreamEvent, ...] = (),
    ) -> None:
        self._opened = opened
        self._operation = operation
        self._expected = expected
        self._scrub = scrub
        self._reader = EventReader()
        self._buffered = deque(buffered)
        self._closed = opened is None
        self.received: list[ImageStreamEvent] = []

    @classmethod
    def of_response(
        cls,
        response: ImagesResponse,
        *,
        kind: str,
        operation: str,
        scrub: Callable[[TTAPIError], None],
    ) -> ImageStream:
        """The events of a plain JSON reply to a streamed call: one completed per image."""
        events = tuple(
            ImageStreamEvent(
                type=f"{kind}.completed",
                b64_json=image.b64_json,
                usage=response.usage,
                size=response.size,
                quality=response.quality,
                background=response.background,
                output_format=response.output_format,
                created_at=response.created,
            )
            for image in response.data
        )
        return cls(None, operation=operation, expected=len(events), scrub=scrub, buffered=events)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ImageStream {self._operation} {state}, {len(self.received)} event(s)>"

    @property
    def completed(self) -> list[ImageStreamEvent]:
        """The final images received so far (``*.completed`` events), in arrival order."""
        return [event for event in self.received if event.completed]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (idempotent); what was not read is dropped."""
        self._closed = True
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ImageStreamEvent:
        if self._buffered:
            event = self._buffered.popleft()
            self.received.append(event)
            return event
        opened = self._opened
        if opened is None:
            raise StopAsyncIteration
        while True:
            # A cancelled read (a timeout around it) leaves the stream as it was.
            try:
                line = await opened.next_line()
            except TTAPIError as exc:
                await self.aclose()
                self._scrub(exc)
                raise self._interrupted(exc) from exc
            item = self._reader.close() if line is None else self._reader.feed(line)
            if line is None and (item is None or item is DONE):
                return await self._end(None)
            if item is None:
                continue
            if item is DONE:
                return await self._end(DONE)
            assert isinstance(item, tuple)  # noqa: S101 - the reader returns these or DONE
            try:
                event = image_event(*item)
            except TTAPIError as exc:
                await self.aclose()
                self._scrub(exc)
                raise
            self.received.append(event)
            return event

    async def _end(self, marker: object) -> ImageStreamEvent:
        """The stream ended: over, or short of images (never returns).

        Short after the connection closed: cut (``ConnectionDroppedError``); short after
        the server's own ``[DONE]``: its reply is short (``ResponseFormatError``). Either
        way the call was accepted, so the outcome is unknown.
        """
        await self.aclose()
        got = len(self.completed)
        if got < self._expected:
            why = f"the stream ended after {got} of {self._expected} image(s)"
            cause: TTAPIError = (
                ResponseFormatError(why, status=200)
                if marker is DONE
                else ConnectionDroppedError(why)
            )
            raise self._interrupted(cause)
        raise StopAsyncIteration

    def _interrupted(self, cause: TTAPIError) -> StreamInterruptedError:
        return StreamInterruptedError(self._operation, cause, tuple(self.received))
