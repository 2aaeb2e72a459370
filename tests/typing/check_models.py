"""What a user's type checker sees of the results and of the error tree.

Type-checked, never run (see ``check_client.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import assert_type

import ttapi_async as tt


def images_response(r: tt.ImagesResponse) -> None:
    """The README's Quickstart reads these off an ``ImagesResponse``."""
    assert_type(r.created, int)
    assert_type(r.data, tuple[tt.ImageData, ...])
    assert_type(r.data[0], tt.ImageData)
    assert_type(r.data[0].decode(), bytes)
    assert_type(r.data[0].b64_json, str | None)
    assert_type(r.data[0].url, str | None)
    assert_type(r.data[0].revised_prompt, str | None)
    assert_type(r.size, str | None)
    assert_type(r.usage, tt.Usage | None)
    if r.usage is not None:
        assert_type(r.usage.total_tokens, int)
        assert_type(r.usage.input_tokens_details, tt.InputTokensDetails | None)
        assert_type(r.usage.output_tokens_details, tt.OutputTokensDetails | None)
    assert_type(r.http, tt.ResponseInfo | None)
    if r.http is not None:
        assert_type(r.http.status, int)
        assert_type(r.http.attempts, int)
        assert_type(r.http.elapsed, float)
        assert_type(r.http.headers, Mapping[str, str])


def jobs(snap: tt.JobSnapshot, result: tt.JobResult, event: tt.JobEvent) -> None:
    """A fetch's snapshot, a wait's result and a waiter event."""
    assert_type(snap.job_id, str)
    assert_type(snap.status, tt.JobStatus)
    assert_type(snap.status.is_terminal, bool)
    assert_type(snap.is_terminal, bool)
    assert_type(snap.succeeded, bool)
    assert_type(snap.failed, bool)
    assert_type(snap.message, str | None)
    assert_type(snap.image_url, str | None)
    assert_type(snap.quota, float | None)
    assert_type(snap.finish_time, dt.datetime | None)
    assert_type(snap.http, tt.ResponseInfo | None)
    assert_type(result.job_id, str)
    assert_type(result.image_url, str)
    assert_type(result.elapsed, float)
    assert_type(result.source, str)
    assert_type(result.as_snapshot(), tt.JobSnapshot)
    assert_type(event.kind, tt.JobEventKind)
    assert_type(event.detail, str | None)
    assert_type(tt.parse_callback(b"{}"), tt.JobSnapshot)


def saved(image: tt.SavedImage) -> None:
    """A saved image is a path-like, and says what it saved."""
    assert_type(image.path, Path)
    assert_type(image.mime, str)
    assert_type(image.url, str | None)
    assert_type(Path(image), Path)  # __fspath__


def error_tree() -> None:
    """Every public error is a ``TTAPIError``, with the documented builtin bases too."""
    # An annotated assignment checks each element against the annotation (``assert_type``
    # would see the narrowed union of the literal tuple).
    every: tuple[type[tt.TTAPIError], ...] = (
        tt.ValidationError,
        tt.ClientClosedError,
        tt.APIConnectionError,
        tt.ConnectError,
        tt.ConnectionDroppedError,
        tt.RequestTimeout,
        tt.APIStatusError,
        tt.BadRequestError,
        tt.ContentPolicyError,
        tt.AuthenticationError,
        tt.InsufficientBalanceError,
        tt.PermissionDeniedError,
        tt.NotFoundError,
        tt.JobNotFoundError,
        tt.ImageUnavailableError,
        tt.RateLimitError,
        tt.QueueFullError,
        tt.RedirectError,
        tt.ServerError,
        tt.GatewayTimeoutError,
        tt.ResponseFormatError,
        tt.JobMismatchError,
        tt.OutcomeUnknownError,
        tt.StreamInterruptedError,
        tt.JobError,
        tt.JobFailedError,
        tt.JobTimeoutError,
        tt.BulkPausedError,
        tt.StorageError,
        tt.JournalCorruptError,
        tt.JournalTransitionError,
        tt.BrokerError,
        tt.ClaimLostError,
        tt.TelemetryUnavailableError,
    )
    # The builtin bases ``except`` clauses rely on.
    value_error: type[ValueError] = tt.ValidationError
    runtime_error: type[RuntimeError] = tt.ClientClosedError
    timeouts: tuple[type[TimeoutError], ...] = (tt.RequestTimeout, tt.JobTimeoutError)
    os_error: type[OSError] = tt.StorageError
    import_error: type[ImportError] = tt.TelemetryUnavailableError
    # The tree's inner nodes.
    status: tuple[type[tt.APIStatusError], ...] = (tt.ContentPolicyError, tt.GatewayTimeoutError)
    not_found: tuple[type[tt.NotFoundError], ...] = (tt.JobNotFoundError, tt.ImageUnavailableError)
    connection: tuple[type[tt.APIConnectionError], ...] = (tt.ConnectError, tt.RequestTimeout)
    unknown: type[tt.OutcomeUnknownError] = tt.StreamInterruptedError
    job: tuple[type[tt.JobError], ...] = (tt.JobFailedError, tt.JobTimeoutError)
    transition: type[tt.ValidationError] = tt.JournalTransitionError
    mismatch: type[tt.ResponseFormatError] = tt.JobMismatchError
    del (
        every,
        value_error,
        runtime_error,
        timeouts,
        os_error,
        import_error,
        status,
        not_found,
        connection,
    )
    del unknown, job, transition, mismatch


def error_attributes() -> None:
    """What an ``except`` clause can read off each error."""
    try:
        pass
    except tt.ValidationError as exc:
        assert_type(exc.param, str)
        assert_type(exc.rule, str)
    except tt.RateLimitError as exc:
        assert_type(exc.status, int)
        assert_type(exc.retry_after, float | None)
        assert_type(exc.message, str)
        assert_type(exc.code, str | None)
        assert_type(exc.headers, Mapping[str, str])
    except tt.APIStatusError as exc:
        assert_type(exc.status, int)
        assert_type(exc.body, str)
    except tt.APIConnectionError as exc:
        assert_type(exc.request_sent, bool)
    except tt.StreamInterruptedError as exc:
        assert_type(exc.operation, str)
        assert_type(exc.cause, tt.TTAPIError)
        assert_type(exc.attempts, int)
        assert_type(exc.partials, tuple[tt.ImageStreamEvent, ...])
    except tt.OutcomeUnknownError as exc:
        assert_type(exc.cause, tt.TTAPIError)
    except tt.JobFailedError as exc:
        assert_type(exc.job_id, str)
        assert_type(exc.reason, str | None)
        assert_type(exc.snapshot, tt.JobSnapshot | None)
    except tt.JobTimeoutError as exc:
        assert_type(exc.job_id, str)
        assert_type(exc.timeout, float | None)
        assert_type(exc.last_error, BaseException | None)
    except tt.BulkPausedError as exc:
        assert_type(exc.cause, tt.TTAPIError)
    except tt.JournalCorruptError as exc:
        assert_type(exc.rows, tuple[int, ...])


def module_attributes() -> None:
    """The module's constants, and the two names its ``__getattr__`` makes."""
    timeout: float = tt.DEFAULT_TIMEOUT
    base_url: str = tt.DEFAULT_BASE_URL
    not_given: tt.NotGiven = tt.NOT_GIVEN
    # ``__version__`` and ``testing`` come from the module's ``__getattr__`` at run time,
    # and are declared for checkers under ``TYPE_CHECKING``.
    version = tt.__version__
    assert_type(version, str)
    del timeout, base_url, not_given, version
