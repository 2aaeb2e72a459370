"""ttapi-async: an asyncio-native SDK for TTAPI's OpenAI image models.

::

    import ttapi_async as tt

    async with tt.Client() as client:        # TTAPI_API_KEY from the environment
        r = await client.images.generate(prompt="a red fox", model="gpt-image-1", quality="low")
        png = r.data[0].decode()
        job = await client.gpt4o.submit(prompt="draw a lighthouse")
        snap = await client.gpt4o.fetch(job.job_id)

This module is the only public door: everything a user needs is importable from here,
and ``ttapi_async.testing`` holds the emulator.
"""

from __future__ import annotations

import importlib as _importlib
import logging as _logging
import typing as _typing


# Every public name is imported when first used, not by `import ttapi_async`: the
# package's pytest plugin is loaded by every pytest run of every project that installs
# it, and importing this package runs this file first. The names and their modules are
# listed twice: below for type checkers and readers, and in _EXPORTS for the lookup
# (tests/test_exports.py checks the two agree with __all__).
if _typing.TYPE_CHECKING:
    from . import testing as testing
    from ._bulk import BulkOutcome, BulkProgress, BulkRun
    from ._client import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, Client
    from ._errors import (
        APIConnectionError,
        APIStatusError,
        AuthenticationError,
        BadRequestError,
        BrokerError,
        BulkPausedError,
        ClaimLostError,
        ClientClosedError,
        ConnectError,
        ConnectionDroppedError,
        ContentPolicyError,
        GatewayTimeoutError,
        ImageUnavailableError,
        InsufficientBalanceError,
        JobError,
        JobFailedError,
        JobMismatchError,
        JobNotFoundError,
        JobTimeoutError,
        JournalCorruptError,
        JournalTransitionError,
        NotFoundError,
        OutcomeUnknownError,
        PermissionDeniedError,
        QueueFullError,
        RateLimitError,
        RedirectError,
        RequestTimeout,
        ResponseFormatError,
        ServerError,
        StorageError,
        StreamInterruptedError,
        TTAPIError,
        ValidationError,
    )
    from ._fleet import JobRecord
    from ._imagestream import ImageStream
    from ._jobs import GPT, GPT4o, Job
    from ._journal import ItemState, Journal, JournalEntry
    from ._journalstore import JournalStore
    from ._limits import RequestBudget
    from ._models import (
        ImageData,
        ImagesResponse,
        ImageStreamEvent,
        InputTokensDetails,
        JobEvent,
        JobEventKind,
        JobResult,
        JobSnapshot,
        JobStatus,
        OutputTokensDetails,
        ResponseInfo,
        SavedImage,
        Usage,
    )
    from ._polling import PollPolicy
    from ._protocol import parse_callback
    from ._redisbroker import BrokerStats, RedisBroker
    from ._redisjournal import RedisJournal
    from ._requests import (
        Dalle3Request,
        EditRequest,
        GenerateRequest,
        GPT4oRequest,
        GPTRequest,
        Request,
    )
    from ._resources import Dalle3, Images
    from ._retry import RetryPolicy
    from ._sender import ClientStats
    from ._telemetry import Telemetry, TelemetryUnavailableError
    from ._types import NOT_GIVEN, FileID, ImageInput, ImageURL, NotGiven
    from ._waiter import JobWaiter, WaiterStats
    from ._webhook import WebhookReceiver

    __version__: str

_EXPORTS: _typing.Final[dict[str, str]] = {
    "BulkOutcome": "._bulk",
    "BulkProgress": "._bulk",
    "BulkRun": "._bulk",
    "DEFAULT_BASE_URL": "._client",
    "DEFAULT_TIMEOUT": "._client",
    "Client": "._client",
    "APIConnectionError": "._errors",
    "APIStatusError": "._errors",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "BrokerError": "._errors",
    "BulkPausedError": "._errors",
    "ClaimLostError": "._errors",
    "ClientClosedError": "._errors",
    "ConnectError": "._errors",
    "ConnectionDroppedError": "._errors",
    "ContentPolicyError": "._errors",
    "GatewayTimeoutError": "._errors",
    "ImageUnavailableError": "._errors",
    "InsufficientBalanceError": "._errors",
    "JobError": "._errors",
    "JobFailedError": "._errors",
    "JobMismatchError": "._errors",
    "JobNotFoundError": "._errors",
    "JobTimeoutError": "._errors",
    "JournalCorruptError": "._errors",
    "JournalTransitionError": "._errors",
    "NotFoundError": "._errors",
    "OutcomeUnknownError": "._errors",
    "PermissionDeniedError": "._errors",
    "QueueFullError": "._errors",
    "RateLimitError": "._errors",
    "RedirectError": "._errors",
    "RequestTimeout": "._errors",
    "ResponseFormatError": "._errors",
    "ServerError": "._errors",
    "StorageError": "._errors",
    "StreamInterruptedError": "._errors",
    "TTAPIError": "._errors",
    "ValidationError": "._errors",
    "JobRecord": "._fleet",
    "ImageStream": "._imagestream",
    "GPT": "._jobs",
    "GPT4o": "._jobs",
    "Job": "._jobs",
    "ItemState": "._journal",
    "Journal": "._journal",
    "JournalEntry": "._journal",
    "JournalStore": "._journalstore",
    "RequestBudget": "._limits",
    "ImageData": "._models",
    "ImagesResponse": "._models",
    "ImageStreamEvent": "._models",
    "InputTokensDetails": "._models",
    "JobEvent": "._models",
    "JobEventKind": "._models",
    "JobResult": "._models",
    "JobSnapshot": "._models",
    "JobStatus": "._models",
    "OutputTokensDetails": "._models",
    "ResponseInfo": "._models",
    "SavedImage": "._models",
    "Usage": "._models",
    "PollPolicy": "._polling",
    "parse_callback": "._protocol",
    "BrokerStats": "._redisbroker",
    "RedisBroker": "._redisbroker",
    "RedisJournal": "._redisjournal",
    "Dalle3Request": "._requests",
    "EditRequest": "._requests",
    "GenerateRequest": "._requests",
    "GPT4oRequest": "._requests",
    "GPTRequest": "._requests",
    "Request": "._requests",
    "Dalle3": "._resources",
    "Images": "._resources",
    "RetryPolicy": "._retry",
    "ClientStats": "._sender",
    "Telemetry": "._telemetry",
    "TelemetryUnavailableError": "._telemetry",
    "NOT_GIVEN": "._types",
    "FileID": "._types",
    "ImageInput": "._types",
    "ImageURL": "._types",
    "NotGiven": "._types",
    "JobWaiter": "._waiter",
    "WaiterStats": "._waiter",
    "WebhookReceiver": "._webhook",
}


# A library's records go where the application's logging sends them; with no logging set
# up, Python's last-resort handler would print bare warnings ("bulk run paused: ...") on
# stderr, next to what the caller itself reports. The standard library's advice for
# libraries: a NullHandler on the top logger.
_logging.getLogger("ttapi_async").addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "GPT",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BrokerError",
    "BrokerStats",
    "BulkOutcome",
    "BulkPausedError",
    "BulkProgress",
    "BulkRun",
    "ClaimLostError",
    "Client",
    "ClientClosedError",
    "ClientStats",
    "ConnectError",
    "ConnectionDroppedError",
    "ContentPolicyError",
    "Dalle3",
    "Dalle3Request",
    "EditRequest",
    "FileID",
    "GPT4o",
    "GPT4oRequest",
    "GPTRequest",
    "GatewayTimeoutError",
    "GenerateRequest",
    "ImageData",
    "ImageInput",
    "ImageStream",
    "ImageStreamEvent",
    "ImageURL",
    "ImageUnavailableError",
    "Images",
    "ImagesResponse",
    "InputTokensDetails",
    "InsufficientBalanceError",
    "ItemState",
    "Job",
    "JobError",
    "JobEvent",
    "JobEventKind",
    "JobFailedError",
    "JobMismatchError",
    "JobNotFoundError",
    "JobRecord",
    "JobResult",
    "JobSnapshot",
    "JobStatus",
    "JobTimeoutError",
    "JobWaiter",
    "Journal",
    "JournalCorruptError",
    "JournalEntry",
    "JournalStore",
    "JournalTransitionError",
    "NotFoundError",
    "NotGiven",
    "OutcomeUnknownError",
    "OutputTokensDetails",
    "PermissionDeniedError",
    "PollPolicy",
    "QueueFullError",
    "RateLimitError",
    "RedirectError",
    "RedisBroker",
    "RedisJournal",
    "Request",
    "RequestBudget",
    "RequestTimeout",
    "ResponseFormatError",
    "ResponseInfo",
    "RetryPolicy",
    "SavedImage",
    "ServerError",
    "StorageError",
    "StreamInterruptedError",
    "TTAPIError",
    "Telemetry",
    "TelemetryUnavailableError",
    "Usage",
    "ValidationError",
    "WaiterStats",
    "WebhookReceiver",
    "__version__",
    "parse_callback",
]


if not _typing.TYPE_CHECKING:  # for checkers, every name is declared above: a typo stays an error

    def __getattr__(name: str) -> object:
        """Import a public name on first use (PEP 562); ``__version__`` and ``testing`` too."""
        module = _EXPORTS.get(name)
        if module is not None:
            value = getattr(_importlib.import_module(module, __name__), name)
            globals()[name] = value  # later lookups are plain attribute reads
            return value
        # Lazy too: `import ttapi_async` must not import the emulator (and Pillow) for users
        # who never test, nor read package metadata before anyone asks.
        if name == "__version__":
            from .__about__ import VERSION  # noqa: PLC0415

            return VERSION
        if name == "testing":
            return _importlib.import_module(".testing", __name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, imported or not yet (not ``testing``: it needs the extra)."""
    return sorted({*globals(), *__all__})
