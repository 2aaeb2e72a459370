"""The only module that talks to aiohttp: one session, one pool, and the error mapping.

Strictly private. :class:`AiohttpTransport` sends a :class:`~ttapi_async._protocol.RequestSpec`
and returns ``(status, headers, body)``; every aiohttp and asyncio error is turned into the
SDK's tree here, in :func:`_map_error`, and nowhere else.

Whether a request reached the wire decides whether a billable call may be retried, and
aiohttp cannot tell us: it raises the same errors before and after writing. So the
connector marks a per-request :class:`SendState` once it hands out a connection (see
:class:`_TrackingConnector`). An error before that point means the request was never
written; after it, the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
from yarl import URL

from . import __about__
from ._errors import (
    APIConnectionError,
    ConnectError,
    ConnectionDroppedError,
    RedirectError,
    RequestTimeout,
    ResponseFormatError,
)
from ._http import RawResponse, SendState
from ._protocol import API_KEY_HEADER, Multipart, RequestSpec


__all__ = ["AiohttpTransport"]

#: How much later than its deadline a call may end when it shares the prebuilt timeout.
_REUSE_SLACK: Final = 0.001
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 5


_STATE: contextvars.ContextVar[SendState | None] = contextvars.ContextVar(
    "ttapi_async_send_state", default=None
)


class _TrackingConnector(aiohttp.TCPConnector):
    """A TCPConnector that records, per request, that a connection was handed out.

    ``connect`` runs in the task that called ``session.request``, so a context variable
    carries the request's :class:`SendState` here without touching aiohttp's internals.
    """

    async def connect(self, *args: Any, **kwargs: Any) -> aiohttp.connector.Connection:
        conn = await super().connect(*args, **kwargs)
        state = _STATE.get()
        if state is not None:
            state.connected = True
        return conn


def _map_error(exc: BaseException, state: SendState) -> BaseException:
    """Turn an aiohttp or asyncio error into the SDK's, noting whether the request went out.

    A plain function called from ``except`` clauses (not a context manager): it sits on the
    path of every request, and a generator-based context manager costs a microsecond there.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # ClientTimeout.connect covers waiting for a pooled connection and connecting.
        return ConnectError(f"no connection within the pool/connect timeout: {exc!r}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return RequestTimeout(f"read timed out: {exc!r}", request_sent=state.connected)
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp raises this for replies it cannot parse as HTTP.
        return ResponseFormatError(f"malformed HTTP reply: {exc.message}", status=exc.status)
    if isinstance(exc, aiohttp.InvalidURL):
        return ConnectError(f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        if not state.connected:
            return ConnectError(f"connection failed before sending: {exc!r}")
        return ConnectionDroppedError(f"connection lost: {exc!r}")
    if isinstance(exc, TimeoutError):
        # aiohttp's total timeout raises a bare asyncio.TimeoutError whether or not the
        # request was written; SendState says which.
        return RequestTimeout("the call's timeout ran out", request_sent=state.connected)
    return APIConnectionError(f"HTTP client error: {exc!r}", request_sent=state.connected)


_MAPPED = (aiohttp.ClientError, TimeoutError)

#: Read size of a streamed download: big enough to be cheap, small enough to write inline.
_CHUNK: Final = 1 << 16
#: How much of a download's error page is read, for the message.
_ERROR_EXCERPT: Final = 4096


def _is_success(status: int) -> bool:
    return 200 <= status < 300  # noqa: PLR2004


def _too_large(max_bytes: int, status: int) -> ResponseFormatError:
    return ResponseFormatError(f"the image is larger than {max_bytes} bytes", status=status)


async def _read_some(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of an error reply's body.

    The status already is the answer; the excerpt only helps the message, so a connection
    that breaks while it is read ends the excerpt rather than replacing the status.
    """
    buf = bytearray()
    try:
        while len(buf) < limit:
            chunk = await resp.content.read(limit - len(buf))
            if not chunk:
                break
            buf += chunk
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        pass
    return bytes(buf)


class _EventStream:
    """An open ``text/event-stream`` reply (see :class:`~ttapi_async._http.OpenStream`).

    Lines are cut from the chunks as they come, not with aiohttp's ``readline``: an image
    event is one ``data:`` line of megabytes of base64, past aiohttp's line limit. A read
    cancelled while it waits consumes nothing, so the next one goes on where it was.
    """

    __slots__ = ("_buf", "_resp", "_state")

    def __init__(self, resp: aiohttp.ClientResponse, state: SendState) -> None:
        self._resp = resp
        self._state = state
        self._buf = bytearray()

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The reply's headers."""
        return self._resp.headers

    async def next_line(self) -> bytes | None:
        """The next line with its ending (the last may have none); None at the end."""
        buf = self._buf
        while (end := buf.find(b"\n")) < 0:
            try:
                chunk = await self._resp.content.readany()
            except _MAPPED as exc:
                hidden = _map_error(exc, self._state)
                break
            if not chunk:
                if not buf:
                    return None
                line = bytes(buf)
                buf.clear()
                return line
            buf += chunk
        else:
            line = bytes(buf[: end + 1])
            del buf[: end + 1]
            return line
        raise hidden

    async def aclose(self) -> None:
        """Let the connection go: back to the pool if the body is over, else aborted."""
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


class AiohttpTransport:
    """Owns the aiohttp session and connection pool of one client.

    The API key goes only on requests to ``base_url``: it is added per request, never as
    a session default, and a redirect to another origin is refused rather than followed.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_connections: int = 100,
        max_connections_per_host: int = 0,
        connect_timeout: float | None = 10.0,
        pool_timeout: float | None = 60.0,
        trust_env: bool = False,
        headers: Mapping[str, str] | None = None,
        default_timeout: float | None = None,
    ) -> None:
        self._base = URL(base_url.rstrip("/"))
        self._urls: dict[str, URL] = {}
        common = {"User-Agent": f"ttapi-async/{__about__.VERSION}", "Accept": "application/json"}
        common.update(headers or {})
        common[API_KEY_HEADER] = api_key
        self._form_headers: Final = common
        self._json_headers: Final = {**common, "Content-Type": "application/json"}
        self._connector = _TrackingConnector(
            limit=max_connections, limit_per_host=max_connections_per_host
        )
        # No total timeout by default: each request gets the time left of its call.
        self._limits = aiohttp.ClientTimeout(
            total=None, connect=pool_timeout, sock_connect=connect_timeout
        )
        # Most calls use the client's default timeout and send at once, so their time
        # left is that default to within microseconds: they share one prebuilt
        # ClientTimeout instead of building one per request (a measurable share of a
        # small call). Their deadline moves by less than _REUSE_SLACK.
        self._default_total = default_timeout
        self._default_limits = aiohttp.ClientTimeout(
            total=default_timeout, connect=pool_timeout, sock_connect=connect_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            timeout=self._limits,
            trust_env=trust_env,
            auto_decompress=True,
            raise_for_status=False,
        )

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._session.closed

    async def aclose(self) -> None:
        """Close the session and every pooled connection."""
        await self._session.close()

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            # Cache parsed URLs: yarl parsing is a measurable share of a small request.
            url = self._urls[path] = self._base.with_path(self._base.path.rstrip("/") + path)
        return url

    def _data(self, spec: RequestSpec) -> Any:
        body = spec.body
        if not isinstance(body, Multipart):
            return body
        form = aiohttp.FormData(quote_fields=False)
        for name, value in body.fields:
            form.add_field(name, value)
        for name, filename, data, mime in body.files:
            form.add_field(name, data, filename=filename, content_type=mime)
        return form

    async def send(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse:
        """Send one request and read the whole reply within ``timeout`` seconds (None: no limit).

        Raises:
            ConnectError: never written. ConnectionDroppedError, RequestTimeout,
            APIConnectionError, ResponseFormatError: see :func:`_map_error`.
            RedirectError: the server redirected to another origin.
        """
        url = self._url(spec.path)
        headers = self._json_headers if spec.json else self._form_headers
        method = spec.method
        if timeout is None:
            limits = self._limits
        elif (
            self._default_total is not None and 0.0 <= self._default_total - timeout < _REUSE_SLACK
        ):
            limits = self._default_limits
        else:
            limits = aiohttp.ClientTimeout(
                total=timeout, connect=self._limits.connect, sock_connect=self._limits.sock_connect
            )
        state.connected = False
        token = _STATE.set(state)
        end = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                async with self._session.request(
                    method,
                    url,
                    params=spec.params,
                    data=self._data(spec),
                    headers=headers,
                    allow_redirects=False,
                    timeout=limits,
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    if status not in _REDIRECTS or "Location" not in resp.headers:
                        return RawResponse(status, resp.headers, body)
                url = self._follow(url, resp.headers["Location"], status, resp.headers, method)
                if status == 303:  # noqa: PLR2004
                    method = "GET"
                if end is not None:  # one deadline for all hops
                    left = end - asyncio.get_running_loop().time()
                    if left <= 0:
                        raise RequestTimeout("the call's timeout ran out", request_sent=True)
                    limits = aiohttp.ClientTimeout(
                        total=left,
                        connect=self._limits.connect,
                        sock_connect=self._limits.sock_connect,
                    )
            raise RedirectError("too many redirects", status=status, headers=resp.headers)
        except _MAPPED as exc:
            mapped = _map_error(exc, state)
            if not isinstance(exc, aiohttp.ClientResponseError):
                raise mapped from exc
            # Its repr carries the request's headers, the API key among them: raise the
            # mapped error outside this handler, so it is neither chained nor the context.
            hidden = mapped
        finally:
            _STATE.reset(token)
        raise hidden

    async def open_stream(
        self, spec: RequestSpec, state: SendState, timeout: float | None = None
    ) -> RawResponse | _EventStream:
        """Send one API request; keep a ``text/event-stream`` success open for reading.

        Any other reply (an error, or a plain JSON success: a server that buffers the
        stream) is read whole and returned as :meth:`send` would. No redirects are
        followed (the API does not redirect its calls). ``timeout`` bounds the whole call,
        the stream included.
        """
        headers = self._json_headers if spec.json else self._form_headers
        limits = (
            self._limits
            if timeout is None
            else aiohttp.ClientTimeout(
                total=timeout, connect=self._limits.connect, sock_connect=self._limits.sock_connect
            )
        )
        state.connected = False
        token = _STATE.set(state)
        try:
            resp = await self._session.request(
                spec.method,
                self._url(spec.path),
                params=spec.params,
                data=self._data(spec),
                headers={**headers, "Accept": "text/event-stream"},
                allow_redirects=False,
                timeout=limits,
            )
            if _is_success(resp.status) and resp.content_type == "text/event-stream":
                return _EventStream(resp, state)
            try:
                body = await resp.read()
            finally:
                resp.release()
            return RawResponse(resp.status, resp.headers, body)
        except _MAPPED as exc:
            hidden = _map_error(exc, state)  # raised outside: its repr holds the key
        finally:
            _STATE.reset(token)
        raise hidden

    async def download(self, url: str, state: SendState, max_bytes: int) -> RawResponse:
        """GET an image into memory, without the API key: :meth:`stream` into a list.

        A non-2xx reply comes back with only an excerpt of its body, as :meth:`stream` says.
        """
        chunks: list[bytes] = []
        raw = await self.stream(url, state, chunks.append, max_bytes=max_bytes)
        if not _is_success(raw.status):
            return raw
        return raw._replace(body=b"".join(chunks))

    async def stream(
        self,
        url: str,
        state: SendState,
        sink: Callable[[bytes], None],
        *,
        max_bytes: int,
        check_headers: Callable[[int, Mapping[str, str]], None] | None = None,
    ) -> RawResponse:
        """GET an image from anywhere (a CDN, a signed blob URL) and hand its body to ``sink``.

        Only the User-Agent goes out, never the API key: image hosts are not TTAPI. So
        redirects are followed to any host (up to five): there is no credential to leak.

        For a 2xx reply, ``check_headers(status, headers)`` runs before any of the body is
        read (it raises to refuse the reply), then each chunk goes to ``sink`` as it
        arrives and the returned body is empty. For any other status ``sink`` is never
        called and the returned body is at most the first :data:`_ERROR_EXCERPT` bytes,
        for the error message: an error page may be large, and only its start is useful.

        Raises:
            ResponseFormatError: the body is larger than ``max_bytes`` (declared up front or
                counted while streaming), or there were too many redirects.
            ConnectError, ConnectionDroppedError, RequestTimeout, APIConnectionError: see
                :func:`_map_error`; errors while the body streams are mapped too.
            Whatever ``check_headers`` or ``sink`` raise, unchanged.
        """
        state.connected = False
        token = _STATE.set(state)
        try:
            async with self._session.get(
                url,
                headers={"User-Agent": self._form_headers["User-Agent"]},
                max_redirects=_MAX_REDIRECTS,
            ) as resp:
                status = resp.status
                headers = resp.headers
                if not _is_success(status):
                    return RawResponse(status, headers, await _read_some(resp, _ERROR_EXCERPT))
                if check_headers is not None:
                    check_headers(status, headers)
                declared = resp.content_length
                # With a Content-Encoding the declared length is the compressed one; the
                # count while streaming (of decoded bytes) still applies.
                if (
                    declared is not None
                    and declared > max_bytes
                    and not resp.headers.get("Content-Encoding")
                ):
                    raise _too_large(max_bytes, status)
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(max_bytes, status)
                    sink(chunk)
                return RawResponse(status, headers, b"")
        except aiohttp.TooManyRedirects as exc:
            msg = f"more than {_MAX_REDIRECTS} redirects"
            raise ResponseFormatError(msg, status=exc.status) from exc
        except _MAPPED as exc:
            raise _map_error(exc, state) from exc
        finally:
            _STATE.reset(token)

    def _follow(
        self, url: URL, location: str, status: int, headers: Mapping[str, str], method: str
    ) -> URL:
        """Allow a redirect only within the API's origin, where the key may go."""
        try:
            target = url.join(URL(location))
            origin = target.origin()
        except ValueError as exc:
            raise RedirectError(
                "the API redirected to an invalid Location", status=status, headers=headers
            ) from exc
        if origin != self._base.origin():
            raise RedirectError(
                f"the API redirected to another host ({target.host}); the SDK does not send "
                "the API key there",
                status=status,
                headers=headers,
            )
        if method != "GET" and status in {301, 302}:
            # Browsers turn these into GET, which would drop the body; refuse instead.
            raise RedirectError(
                f"refusing to follow a {status} redirect of a {method}",
                status=status,
                headers=headers,
            )
        return target
