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
from ._types import NOT_GIVEN, FileID, ImageInput, ImageURL, NotGiven
from ._waiter import JobWaiter, WaiterStats
from ._webhook import WebhookReceiver


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
    "Usage",
    "ValidationError",
    "WaiterStats",
    "WebhookReceiver",
    "__version__",
    "parse_callback",
]


def __getattr__(name: str) -> object:
    # Lazy: `import ttapi_async` must not import the emulator (and Pillow) for users who
    # never test, nor read package metadata before anyone asks.
    if name == "__version__":
        from .__about__ import VERSION  # noqa: PLC0415

        return VERSION
    if name == "testing":
        import importlib  # noqa: PLC0415

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
