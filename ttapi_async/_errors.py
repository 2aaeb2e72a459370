"""The exception tree: every error this SDK raises is a :class:`TTAPIError`.

::

    TTAPIError
    ├── ValidationError (ValueError)         bad input; nothing was sent
    ├── ClientClosedError (RuntimeError)     the client is not open
    ├── APIConnectionError                   no HTTP answer came back
    │   ├── ConnectError                     no connection; the request was never written
    │   ├── ConnectionDroppedError           the connection broke after the request went out
    │   └── RequestTimeout (TimeoutError)    the call's ``timeout=`` ran out
    ├── APIStatusError                       the server answered with an error
    │   ├── BadRequestError                  400 (and other 4xx without a class of their own)
    │   │   └── ContentPolicyError           moderation_blocked / content_policy_violation
    │   ├── AuthenticationError              401
    │   ├── InsufficientBalanceError         402, or OpenAI's 429 ``insufficient_quota``
    │   ├── PermissionDeniedError            403 (account blocked)
    │   ├── NotFoundError                    404
    │   │   ├── JobNotFoundError             fetch of a job id the server does not know
    │   │   └── ImageUnavailableError        403/404/410 on an image URL: expired or gone
    │   ├── RateLimitError                   429 (``retry_after``)
    │   ├── QueueFullError                   499: TTAPI's queue for the product is full
    │   ├── RedirectError                    3xx to another host (the key is not followed there)
    │   └── ServerError                      5xx
    │       └── GatewayTimeoutError          504
    ├── ResponseFormatError                  a body that is not what the route promises
    │   └── JobMismatchError                 a job reply about another job than the one asked
    ├── OutcomeUnknownError                  a billable request was sent, no definite answer
    ├── JobError                             about one 4o-image job (``job_id``)
    │   ├── JobFailedError                   the job ended FAILED (``reason``, ``snapshot``)
    │   └── JobTimeoutError (TimeoutError)   a wait reached its deadline; the job goes on
    ├── BulkPausedError                      a bulk run stopped after a 401/402/403
    ├── StorageError (OSError)               a local file operation failed (disk full, ...)
    └── JournalCorruptError                  a journal file is damaged; the run refuses to start

:class:`OutcomeUnknownError` is what a billable call (``images.generate``, ``images.edit``,
``dalle3.generate``, ``gpt4o.submit``) raises when the request reached the wire and then
something went wrong that does not tell whether the server accepted it: a 5xx, a gateway
504, a dropped connection, or the deadline running out while waiting for the answer.
TTAPI has no idempotency key, so retrying such a call could bill twice; the SDK does
not, unless you pass ``retry_unknown_outcome=True`` to the client. The underlying error
is on ``.cause`` (and ``__cause__``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit


if TYPE_CHECKING:
    from ._models import ImageStreamEvent, JobSnapshot


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BulkPausedError",
    "ClientClosedError",
    "ConnectError",
    "ConnectionDroppedError",
    "ContentPolicyError",
    "GatewayTimeoutError",
    "ImageUnavailableError",
    "InsufficientBalanceError",
    "JobError",
    "JobFailedError",
    "JobMismatchError",
    "JobNotFoundError",
    "JobTimeoutError",
    "JournalCorruptError",
    "JournalTransitionError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "RedirectError",
    "RequestTimeout",
    "ResponseFormatError",
    "ServerError",
    "StorageError",
    "TTAPIError",
    "ValidationError",
]

_EXCERPT = 300


# Everything after a hookUrl key up to the next separator: well-formed JSON, truncated
# JSON, escaped quotes and form encoding alike (a hook URL may carry a secret token).
_HOOK_URL = re.compile(r"""(hook_?url["']?\s*[:=]\s*)[^,}&\s]*""", re.IGNORECASE)


def excerpt(body: bytes | str, limit: int = _EXCERPT) -> str:
    """Return a short, printable excerpt of a response body for an error message.

    A ``hookUrl`` value is hidden: it may carry a per-job secret token.
    """
    text = body[: limit * 4].decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = redact(" ".join(text.split()))
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if _WORD.match(text, limit):
        # Cut inside a run of key-like characters: drop the run's start, which may be the
        # first 30 characters of a key the server quoted (the whole key is hidden later).
        cut = _TRAILING_WORD.sub("", cut)
    return cut + "…"


def redact(text: str) -> str:
    """Hide hook URLs (which may carry a per-job token) in text bound for a message."""
    return _HOOK_URL.sub(r"\1<hidden>", text)


_HIDDEN = "<hidden>"
#: Length of a webhook receiver's tokens (``secrets.token_urlsafe(24)``), and the runs of
#: URL-safe characters that may hold one.
TOKEN_LENGTH: Final = 32
_TOKEN_RUN = re.compile(rf"[A-Za-z0-9_\-]{{{TOKEN_LENGTH},}}")
_WORD = re.compile(r"[A-Za-z0-9_\-]")
_TRAILING_WORD = re.compile(r"[A-Za-z0-9_\-]+$")
#: Exception attributes that may repeat what a server said (see :meth:`Redactor.scrub`).
_TEXT_ATTRS = ("message", "body", "reason", "strerror", "param", "code", "type", "url")
#: Attributes that hold another exception whose text is repeated in this one's.
_CHAINED_ATTRS = ("cause", "last_error")


def _spellings(secret: str) -> set[str]:
    """The ways a server may echo ``secret``: as is, JSON-escaped, or percent-encoded."""
    return {
        secret,
        secret.replace("/", "\\/"),  # JSON with escaped slashes (PHP's json_encode)
        # surrogatepass: a hostile server's hook URL may hold a lone surrogate.
        quote(secret, safe="", errors="surrogatepass"),
        quote(secret, errors="surrogatepass"),
    }


class Redactor:
    """Hides secrets (the API key, hook URLs and their tokens) in text a server sent back.

    A server may quote what it was sent: "Incorrect API key provided: <key>", or a 400
    that repeats a submit's ``hookUrl``. Wherever the SDK repeats a server message (an
    error, a log line, a bulk outcome's reason, the journal), it goes through here first.

    ``literals`` are hidden wherever they appear (the key, a hook URL given by hand);
    ``hook_prefixes`` are receivers' public URLs: any ``<prefix>/<token>`` is hidden,
    for every token ever minted there. Pure: plain strings in, plain strings out.
    """

    __slots__ = ("_is_token", "_literals", "_pattern", "_prefixes", "_secrets")

    def __init__(
        self,
        literals: Iterable[str] = (),
        hook_prefixes: Iterable[str] = (),
        is_token: Callable[[str], bool] | None = None,
    ) -> None:
        # is_token: the receiver's "is this one of my live tokens?", so a token echoed on
        # its own (a bare path, another host name) is hidden too.
        self._is_token = is_token
        self._secrets = tuple(s for s in literals if s)
        self._prefixes = tuple(p.rstrip("/") for p in hook_prefixes if p)
        # Longest first, so a secret that contains another is hidden whole.
        spelled = {v for s in self._secrets for v in _spellings(s)}
        self._literals = tuple(sorted(spelled, key=len, reverse=True))
        prefixes = sorted({re.escape(v) for p in self._prefixes for v in _spellings(p)}, key=len)
        # A token is URL-safe base64; the slash before it may be escaped or encoded too.
        self._pattern = (
            re.compile(f"({'|'.join(reversed(prefixes))})(?:/|\\\\/|%2[Ff])[A-Za-z0-9_-]+")
            if prefixes
            else None
        )

    def __repr__(self) -> str:
        return f"<Redactor secrets={len(self._secrets)} hook_prefixes={len(self._prefixes)}>"

    def with_literals(self, extra: Iterable[str]) -> Redactor:
        """A redactor that also hides ``extra`` (one call's own hook URL, say)."""
        return Redactor((*self._secrets, *extra), self._prefixes, self._is_token)

    def redact(self, text: str) -> str:
        """``text`` with every known secret, hook URL and hook token hidden."""
        # Tokens first, so a hook URL of a known receiver keeps its (harmless) prefix.
        if self._pattern is not None:
            text = self._pattern.sub(rf"\1/{_HIDDEN}", text)
        for secret in self._literals:
            if secret in text:
                text = text.replace(secret, _HIDDEN)
        if self._is_token is not None:
            text = _TOKEN_RUN.sub(self._hide_tokens, text)
        return redact(text)

    def _hide_tokens(self, match: re.Match[str]) -> str:
        """Hide every live token inside one run of URL-safe characters."""
        is_token = self._is_token
        assert is_token is not None  # noqa: S101 - only called when set
        run = match.group()
        parts: list[str] = []
        start = i = 0
        while i + TOKEN_LENGTH <= len(run):
            if is_token(run[i : i + TOKEN_LENGTH]):
                parts += [run[start:i], _HIDDEN]
                i += TOKEN_LENGTH
                start = i
            else:
                i += 1
        parts.append(run[start:])
        return "".join(parts)

    def scrub(self, exc: BaseException) -> None:
        """Redact, in place, the text of ``exc`` and of every exception it carries.

        Its ``args`` (what ``str()`` shows), the attributes that repeat a server's words
        (``message``, ``body``, ``reason``) and, along the cause chain and the errors it
        holds (``cause``, ``last_error``), the same again.
        """
        seen: set[int] = set()
        todo: list[BaseException] = [exc]
        while todo:
            err = todo.pop()
            if id(err) in seen:
                continue
            seen.add(id(err))
            err.args = tuple(self.redact(a) if isinstance(a, str) else a for a in err.args)
            for name in _TEXT_ATTRS:
                value = getattr(err, name, None)
                if isinstance(value, str):
                    cleaned = self.redact(value)
                    if cleaned != value:
                        setattr(err, name, cleaned)
            headers = getattr(err, "headers", None)
            if isinstance(headers, Mapping) and headers:
                cleaned_headers = {k: self.redact(v) for k, v in headers.items()}
                if cleaned_headers != dict(headers):
                    err.headers = cleaned_headers  # type: ignore[attr-defined]
            for name in _CHAINED_ATTRS:
                value = getattr(err, name, None)
                if isinstance(value, BaseException):
                    todo.append(value)
            todo.extend(e for e in (err.__cause__, err.__context__) if e is not None)


class TTAPIError(Exception):
    """Base class of every error raised by ttapi-async.

    Every error pickles and unpickles to an equal one (its message, its attributes), so
    it crosses process boundaries (multiprocessing, pytest-xdist) whatever its
    constructor takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild from the message and the attributes, not by calling ``__init__`` again.

        The subclasses' constructors take their own arguments (a parameter and a rule, a
        status and a body...): the default, ``cls(*args)``, would call them with the message.
        """
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[TTAPIError], args: tuple[Any, ...], state: dict[str, Any]) -> TTAPIError:
    """An unpickled error: its class, message and attributes, no constructor run."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ValidationError(TTAPIError, ValueError):
    """A parameter breaks a rule the API is known to enforce; nothing was sent.

    ``param`` names the parameter, ``value`` is what was given (shortened for long
    values) and ``rule`` says what is allowed.
    """

    def __init__(self, param: str, value: object, rule: str) -> None:
        self.param = param
        self.value = value
        self.rule = rule
        super().__init__(f"{param}={_short(value)}: {rule}")


def _short(value: object) -> str:
    if isinstance(value, str | bytes) and len(value) > 60:  # noqa: PLR2004
        kind = "str" if isinstance(value, str) else "bytes"
        return f"<{kind} of length {len(value)}>"
    return repr(value)


class ClientClosedError(TTAPIError, RuntimeError):
    """The client was used outside ``async with`` or after it was closed."""


class APIConnectionError(TTAPIError):
    """No HTTP response was received.

    ``request_sent`` says whether the request may have reached the server.
    """

    request_sent: bool = True

    def __init__(self, message: str, *, request_sent: bool | None = None) -> None:
        super().__init__(message)
        if request_sent is not None:
            self.request_sent = request_sent


class ConnectError(APIConnectionError):
    """No connection could be made (refused, DNS, TLS, or none free in the pool in time).

    The request was never written, so retrying it cannot bill twice.
    """

    request_sent = False


class ConnectionDroppedError(APIConnectionError):
    """The connection broke after the request was written (reset, server disconnect)."""


class RequestTimeout(APIConnectionError, TimeoutError):
    """The call's ``timeout=`` ran out.

    ``request_sent`` is False when the deadline passed before the request was written
    (waiting for a pooled connection, or sleeping before a retry).
    """


class APIStatusError(TTAPIError):
    """The server answered with an error status or a failed envelope.

    Attributes:
        status: the HTTP status code.
        message: the server's message (TTAPI envelope ``message`` or OpenAI ``error.message``).
        code: OpenAI's ``error.code`` when the body had that shape, else None.
        type: OpenAI's ``error.type`` when present.
        param: OpenAI's ``error.param`` when present.
        headers: the response headers.
        body: a short excerpt of the response body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - mirrors OpenAI's field name
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.body = body
        detail = f" (code={code})" if code else ""
        super().__init__(f"HTTP {status}: {message}{detail}")


class BadRequestError(APIStatusError):
    """HTTP 400, or another 4xx with no class of its own: the server refused the parameters."""


class ContentPolicyError(BadRequestError):
    """The prompt or image was refused by the safety system.

    OpenAI's codes ``moderation_blocked`` (gpt-image) and ``content_policy_violation`` (dall-e).
    """


class AuthenticationError(APIStatusError):
    """HTTP 401: the TT-API-KEY is wrong, or the account's email is not activated."""


class InsufficientBalanceError(APIStatusError):
    """HTTP 402, or OpenAI's 429 ``insufficient_quota``: the account is out of credit.

    Never retried: waiting does not refill a balance.
    """


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the account is blocked."""


class NotFoundError(APIStatusError):
    """HTTP 404: wrong endpoint, or a missing resource."""


class JobNotFoundError(NotFoundError):
    """A fetch named a job id the server does not know."""


class ImageUnavailableError(NotFoundError):
    """An image URL answered 403, 404 or 410: it has expired or never existed.

    TTAPI and DALL-E image URLs last about an hour, so save results as they arrive.
    ``url`` is the URL without its query string and fragment: signed URLs carry
    credentials there, so neither the message nor the attribute repeats them.
    """

    def __init__(
        self,
        url: str,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.url = public_url(url)
        parts = urlsplit(self.url)
        where = f"{parts.hostname or '?'}{parts.path or '/'}"
        super().__init__(
            f"the image URL has expired or does not exist ({where}); TTAPI and DALL-E "
            "image URLs last about an hour, so save results as soon as they arrive",
            status=status,
            headers=headers,
            body=body,
        )


def public_url(url: str) -> str:
    """``url`` without user info, query string and fragment: the parts that carry secrets.

    Signed CDN and blob URLs put their signature in the query string; what remains
    still says where an image came from.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:  # an IPv6 literal lost its brackets in .hostname
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _RetryAfterMixin:
    retry_after: float | None = None


class RateLimitError(_RetryAfterMixin, APIStatusError):
    """HTTP 429: too many requests. ``retry_after`` holds the server's hint in seconds, if any."""


class QueueFullError(_RetryAfterMixin, APIStatusError):
    """HTTP 499: TTAPI's queue for this product is full for the account; try again later."""


class RedirectError(APIStatusError):
    """The API redirected to another host; the SDK does not send the key there."""


class ServerError(APIStatusError):
    """HTTP 5xx: the server or the gateway failed."""


class GatewayTimeoutError(ServerError):
    """HTTP 504: a long synchronous call timed out at TTAPI's gateway."""


class ResponseFormatError(TTAPIError):
    """A response body is not what the route promises (not JSON, missing fields, ...).

    ``status`` is the HTTP status and ``body`` a short, safe excerpt.
    """

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {message}" + (f"; body: {body}" if body else ""))


class JobMismatchError(ResponseFormatError):
    """A job reply (a fetch) is about another job than the one asked for.

    Never taken as the asked job's state: the waiter counts it as a failed poll and
    polls again. ``expected`` is the id asked for, ``received`` the id answered.
    """

    def __init__(self, expected: str, received: str, *, status: int) -> None:
        self.expected = expected
        self.received = received
        super().__init__(
            f"asked for job {expected!r}, the reply is about job {received!r}", status=status
        )


class OutcomeUnknownError(TTAPIError):
    """A billable request was written, and no answer says whether it was accepted.

    The job may exist and may be billed. The SDK does not retry (TTAPI has no
    idempotency key), unless the client was created with ``retry_unknown_outcome=True``.

    Attributes:
        operation: which call, e.g. ``"images.generate"``.
        cause: the error seen (a :class:`ServerError`, :class:`ConnectionDroppedError`,
            :class:`RequestTimeout`, ...). Also on ``__cause__``.
        attempts: how many times the request was written.
    """

    def __init__(self, operation: str, cause: TTAPIError, *, attempts: int = 1) -> None:
        self.operation = operation
        self.cause = cause
        self.attempts = attempts
        super().__init__(
            f"{operation}: the request was sent but its outcome is unknown ({cause}); "
            "it may have been accepted and billed, so it was not retried"
        )


def status_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    error_type: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: str = "",
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the most specific :class:`APIStatusError` for a status and an error code."""
    cls: type[APIStatusError]
    if code in {"moderation_blocked", "content_policy_violation"}:
        cls = ContentPolicyError
    elif code == "insufficient_quota" or error_type == "insufficient_quota" or status == 402:  # noqa: PLR2004
        cls = InsufficientBalanceError
    else:
        cls = _BY_STATUS.get(status) or (
            ServerError if status >= 500 else BadRequestError  # noqa: PLR2004
        )
    err = cls(
        message, status=status, code=code, type=error_type, param=param, headers=headers, body=body
    )
    if isinstance(err, _RetryAfterMixin):
        err.retry_after = retry_after
    return err


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
    499: QueueFullError,
    504: GatewayTimeoutError,
}


class JobError(TTAPIError):
    """An error about one 4o-image job; ``job_id`` names it."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: {message}")


class JobFailedError(JobError):
    """The job ended FAILED on TTAPI's side (never raised for a failed *poll*).

    ``reason`` is TTAPI's message; ``snapshot`` the :class:`JobSnapshot` that said so.
    """

    def __init__(
        self, job_id: str, reason: str | None, snapshot: JobSnapshot | None = None
    ) -> None:
        self.reason = reason
        self.snapshot = snapshot
        super().__init__(job_id, f"failed: {reason or 'no reason given'}")


class JobTimeoutError(JobError, TimeoutError):
    """A wait reached its deadline before the job ended.

    The job is not lost: wait on ``job_id`` again later. ``last_error`` is the last poll
    error seen, if polls were failing (a wrong key, TTAPI down, ...).
    """

    def __init__(
        self, job_id: str, timeout: float | None, last_error: BaseException | None = None
    ) -> None:
        self.timeout = timeout
        self.last_error = last_error
        detail = f"; last poll error: {last_error}" if last_error is not None else ""
        super().__init__(job_id, f"not finished within {timeout} s (it may still finish){detail}")


class BulkPausedError(TTAPIError):
    """A bulk run stopped submitting after an account-level error, and ended.

    401 (bad key), 402 or ``insufficient_quota`` (no balance) and 403 (account blocked)
    would fail every remaining item the same way, so the run pauses instead: nothing new
    is submitted, jobs already running finish and are handed back, then this is raised.
    Items not yet submitted stay pending; with a journal, the same run started again
    (after topping up, say) goes on from there.

    Attributes:
        cause: the account-level error (also on ``__cause__``).
    """

    def __init__(self, cause: TTAPIError) -> None:
        self.cause = cause
        super().__init__(
            f"the bulk run paused after an account-level error ({cause}); items not yet "
            "submitted are still pending"
        )


class StorageError(TTAPIError, OSError):
    """A local file operation failed: a full disk, a permission, a bad path.

    Raised by :meth:`Client.save`, bulk runs and the journal in place of the ``OSError``
    they met, so ``except OSError`` and ``except TTAPIError`` both catch it. ``errno``,
    ``strerror`` and ``filename`` are the original error's; it is also ``__cause__``.
    """

    @classmethod
    def wrap(cls, exc: OSError, what: str) -> StorageError:
        """A :class:`StorageError` for ``exc``, met while doing ``what`` ("saving an image")."""
        if isinstance(exc, cls):
            return exc
        reason = exc.strerror or str(exc) or type(exc).__name__
        err = cls(exc.errno, f"{what}: {reason}", exc.filename)
        err.__cause__ = exc
        return err


class JournalCorruptError(TTAPIError):
    """A journal file is damaged: it is not SQLite, or some rows cannot be read.

    The run refuses to start and deletes nothing. ``path`` names the file and ``rows``
    the indexes of the damaged rows (empty when the whole file is unreadable).
    """

    def __init__(self, path: str, rows: tuple[int, ...] = (), detail: str = "") -> None:
        self.path = path
        self.rows = rows
        where = ""
        if rows:
            shown = ", ".join(str(r) for r in rows[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""  # noqa: PLR2004
            where = f" (rows {shown}{more})"
        tail = f": {detail}" if detail else ""
        super().__init__(
            f"the journal {path!r} is damaged{where}{tail}; the run was not started and "
            "nothing was deleted: move the file aside to start afresh, or restore it"
        )


class JournalTransitionError(ValidationError):
    """A journal row was to move between two states the journal's transition table forbids.

    A :class:`ValidationError` on ``index``, like the journal's other refusals (a missing
    row, another input's fingerprint). Nothing was written.

    Attributes:
        index: the row. old: the state it is in. new: the state it was to take.
    """

    def __init__(self, index: int, old: str, new: str, *, hint: str = "") -> None:
        self.index = index
        self.old = old
        self.new = new
        tail = f" ({hint})" if hint else ""
        super().__init__("index", index, f"journal row {index} cannot go from {old} to {new}{tail}")


class BrokerError(TTAPIError):
    """The shared store (Redis, through :class:`~ttapi_async.RedisBroker`) failed.

    Raised when it is unreachable as the client opens (a clear error rather than a fleet
    silently split in two), and by the broker's own public calls. While a client runs,
    the broker never raises into waits: they fall back to polling. The message names the
    server without its password.
    """


class ClaimLostError(TTAPIError):
    """An item of a shared bulk run is no longer this worker's: nothing was written.

    Its lease lapsed, or another worker took the item over; this worker must not act on it
    any more. The bulk runner handles it: the item is left to the worker that holds it now.

    Attributes:
        index: the item. run: the shared run's name.
    """

    def __init__(self, index: int, run: str) -> None:
        self.index = index
        self.run = run
        super().__init__(f"item {index} of the shared run {run!r} is held by another worker now")


class StreamInterruptedError(OutcomeUnknownError):
    """A streamed image call was cut off after it started: accepted, and maybe billed.

    Never retried by itself (a retry would bill again). ``partials`` holds the events
    received before the cut (partial images, and any completed ones).
    """

    def __init__(
        self, operation: str, cause: TTAPIError, partials: tuple[ImageStreamEvent, ...]
    ) -> None:
        super().__init__(operation, cause)
        self.partials = partials
