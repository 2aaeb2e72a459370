"""What the send path needs of a transport, without importing one.

Strictly private. httpx keeps ``BaseTransport`` apart from its transports; this is that
seam. :class:`RawResponse` and :class:`SendState` are plain values, and :class:`Transport`
is the small protocol the sender and the download pipeline are written against.
:class:`~ttapi_async._transport.AiohttpTransport` is the one implementation (and the one
module that imports aiohttp's client); a test or another backend can supply its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol


if TYPE_CHECKING:
    from ._protocol import RequestSpec


__all__ = ["OpenStream", "RawResponse", "SendState", "Transport"]


class RawResponse(NamedTuple):
    """A complete HTTP reply: status, headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class OpenStream(Protocol):
    """A reply whose body is still arriving (a streamed image call): read it line by line.

    :meth:`next_line` raises the SDK's I/O errors (a connection cut midway:
    :class:`~ttapi_async.ConnectionDroppedError`); :meth:`aclose` lets the connection go
    (aborting it if the body is not over).
    """

    @property
    def status(self) -> int:
        """The HTTP status (2xx: a stream is only opened for a success)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The reply's headers."""

    async def next_line(self) -> bytes | None:
        """The body's next line as it arrives (with its ending); None at the end.

        Cancel-safe: a read cancelled while waiting loses no data.
        """

    async def aclose(self) -> None:
        """Let the connection go."""


class SendState:
    """Whether a request in flight got a connection (so may have been written).

    Whether a billable request may be retried depends on it: an error before a connection
    was handed out means the request was never written.
    """

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False


class Transport(Protocol):
    """Sends API requests and downloads images; maps every I/O error to the SDK's tree."""

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran."""

    async def aclose(self) -> None:
        """Release the connections."""

    async def send(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse:
        """Send one API request (with the key) and read the whole reply within ``timeout``."""

    async def open_stream(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse | OpenStream:
        """Send one API request and keep a ``text/event-stream`` success open.

        Any other reply (an error, or a success that is plain JSON) is read whole, as
        :meth:`send` does. ``timeout`` bounds the whole call, the stream included.
        """

    async def download(self, url: str, state: SendState, max_bytes: int) -> RawResponse:
        """GET an image into memory, without the API key."""

    async def stream(
        self,
        url: str,
        state: SendState,
        sink: Callable[[bytes], None],
        *,
        max_bytes: int,
        check_headers: Callable[[int, Mapping[str, str]], None] | None = None,
    ) -> RawResponse:
        """GET an image without the API key, handing a 2xx body to ``sink`` chunk by chunk."""
