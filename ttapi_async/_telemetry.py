"""OpenTelemetry spans and counters for a client: optional, and off unless asked for.

Strictly private; ``ttapi_async.Telemetry`` is the public name. This is the only module
that imports opentelemetry, and only when a :class:`Telemetry` is made: ``import
ttapi_async`` never loads it. A client without telemetry hands its parts None where a
:class:`Recorder` would be, so its send path and poll loop pay one None-check.

What is recorded (``docs/telemetry.md`` has the table):

* one CLIENT span per API call (``images.generate``, ``gpt4o.submit``, ...), retries
  included, named as the GenAI semantic conventions name model calls;
* one INTERNAL span per job wait, from its start to its outcome;
* counters: retries, polls, webhook callbacks, job outcomes; and the conventions'
  ``gen_ai.client.operation.duration`` histogram for the image-making calls.

Attribute names follow the OpenTelemetry GenAI semantic conventions (Development status,
as released with semantic-conventions 1.37 and later: ``gen_ai.provider.name`` in place of
the deprecated ``gen_ai.system``). They define no image operation, so image-making calls
use ``generate_content`` with ``gen_ai.output.type = "image"``; the SDK's own call name is
in ``ttapi.operation``. No attribute ever holds the API key, a hook URL (it carries a
token), a request body, a prompt or a server's error message (which may quote a prompt).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, Protocol, Self
from urllib.parse import urlsplit

from ._errors import (
    APIStatusError,
    ClientClosedError,
    JobFailedError,
    JobTimeoutError,
    OutcomeUnknownError,
    TTAPIError,
    ValidationError,
)
from ._models import ImagesResponse, JobEventKind, JobResult, JobSnapshot


if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from ._models import JobEvent
    from ._protocol import RequestSpec


__all__ = ["CallRecord", "Recorder", "Telemetry", "TelemetryUnavailableError", "WaitRecord"]

#: The instrumentation scope's name (what a backend shows as the library).
SCOPE: Final = "ttapi_async"
#: ``gen_ai.provider.name``: the service the client talks to (it proxies OpenAI's models).
PROVIDER: Final = "ttapi"
#: ``gen_ai.operation.name`` of the calls that make images (the conventions have no image
#: operation; ``generate_content`` is their multimodal generation).
GENERATE: Final = "generate_content"
#: The histogram's buckets: the conventions' advice, doubled on up to image-job lengths.
_DURATION_BUCKETS: Final = tuple(0.01 * 2**i for i in range(17))  # 10 ms .. 655 s

#: Kinds of call whose span shape a recorder keeps (operations times models asked for).
_MAX_SHAPES: Final = 256
#: The models some routes imply when the caller names none.
_ROUTE_MODELS: Final = {"dalle3.generate": "dall-e-3", "gpt4o.submit": "gpt-4o-image"}
#: The job events counted as outcomes (``ttapi.job.outcomes``).
_OUTCOMES: Final = frozenset({JobEventKind.SUCCEEDED, JobEventKind.FAILED, JobEventKind.TIMED_OUT})


class TelemetryUnavailableError(TTAPIError, ImportError):
    """Telemetry was asked for, and opentelemetry is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "telemetry needs OpenTelemetry: pip install 'ttapi-async[otel]' "
            "(or pass telemetry=None to run without it)"
        )


class Telemetry:
    """Turns on OpenTelemetry spans and metrics for the clients it is given to.

    ``Client(..., telemetry=Telemetry())`` (or ``telemetry=True``, the same with the
    global providers). One instance may serve several clients; each records its own
    ``server.address``. Nothing is exported unless an OpenTelemetry SDK is set up: with
    only the API installed, every span and counter is a no-op.

    Args:
        tracer_provider: where spans go (default: the global one, as set by
            ``opentelemetry.trace.set_tracer_provider``).
        meter_provider: where metrics go (default: the global one).

    Raises:
        TelemetryUnavailableError: opentelemetry-api is not installed
            (``pip install 'ttapi-async[otel]'``).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        try:
            # Imported here, never at the top: `import ttapi_async` must not load it.
            from opentelemetry import context, metrics, trace  # noqa: PLC0415
        except ImportError as exc:
            raise TelemetryUnavailableError from exc
        from .__about__ import VERSION  # noqa: PLC0415 - metadata is read when needed only

        self._trace = trace
        self._context = context
        #: The tracer every span is started on (scope ``ttapi_async``).
        self.tracer: Final = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        #: ``gen_ai.client.operation.duration``: seconds of each image call, retries included.
        self.duration: Final = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of GenAI operations (image calls, retries included)",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        #: ``ttapi.client.retries``: retries scheduled.
        self.retries: Final = meter.create_counter(
            "ttapi.client.retries", unit="{retry}", description="HTTP retries scheduled"
        )
        #: ``ttapi.job.polls``: the waiter's fetches.
        self.polls: Final = meter.create_counter(
            "ttapi.job.polls", unit="{poll}", description="Fetches made by the job waiter"
        )
        #: ``ttapi.webhook.callbacks``: callbacks answered, by result.
        self.callbacks: Final = meter.create_counter(
            "ttapi.webhook.callbacks",
            unit="{callback}",
            description="Callbacks the webhook receiver answered, by result",
        )
        #: ``ttapi.job.outcomes``: jobs ended, and waits timed out.
        self.outcomes: Final = meter.create_counter(
            "ttapi.job.outcomes",
            unit="{job}",
            description="Jobs that ended (succeeded, failed) and waits that timed out",
        )

    def __repr__(self) -> str:
        return "<ttapi_async.Telemetry>"

    def _recorder(self, base_url: str) -> Recorder:
        """What one client (talking to ``base_url``) hands its parts."""
        return Recorder(self, base_url)


def resolve(telemetry: Telemetry | bool | None) -> Telemetry | None:
    """The ``telemetry=`` argument of a client as a :class:`Telemetry` (None: off)."""
    if telemetry is True:
        return Telemetry()
    if telemetry is None or telemetry is False:
        return None
    if not isinstance(telemetry, Telemetry):
        raise ValidationError(
            "telemetry",
            type(telemetry).__name__,
            "a tt.Telemetry, True (the global providers) or None",
        )
    return telemetry


def error_type(exc: BaseException) -> str:
    """``error.type``: the exception's class name (low cardinality, never its message)."""
    return type(exc).__qualname__


class _Tracked(Protocol):
    """What a wait span reads of the waiter's record of a job."""

    route: str
    called_back: bool


class Recorder:
    """One client's telemetry: the spans and counters its parts record into.

    The client makes it and passes it (or None) to the sender, the waiter, the poller and
    the webhook receiver; they call it, never the other way round.
    """

    __slots__ = ("_base", "_shapes", "_tel", "_trace", "_waits")

    def __init__(self, telemetry: Telemetry, base_url: str) -> None:
        self._tel = telemetry
        self._trace = telemetry._trace  # noqa: SLF001 - the module Telemetry imported
        url = urlsplit(base_url)  # the host only: userinfo or a query never reach a span
        port = url.port or (443 if url.scheme == "https" else 80)
        self._base: dict[str, AttributeValue] = {
            "gen_ai.provider.name": PROVIDER,
            "server.address": url.hostname or "",
            "server.port": port,
        }
        # The waits in progress, by job id: each poll of the job is counted on their spans.
        self._waits: dict[str, list[WaitRecord]] = {}
        # Each kind of call's span name and attributes, made once (a handful of kinds).
        self._shapes: dict[
            tuple[str, str, str, bool, str | None],
            tuple[str, dict[str, AttributeValue], dict[str, AttributeValue] | None],
        ] = {}

    @property
    def telemetry(self) -> Telemetry:
        """The :class:`Telemetry` this recorder writes through."""
        return self._tel

    def call(self, spec: RequestSpec, model: str | None) -> CallRecord:
        """The span of one API call (a context manager; retries happen inside it)."""
        key = (spec.operation, spec.method, spec.path, spec.billable, model)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shape(spec, model)
            if len(self._shapes) < _MAX_SHAPES:  # models are the caller's: bound the cache
                self._shapes[key] = shape
        name, attrs, duration = shape
        return CallRecord(self, name, attrs, duration)

    def _shape(
        self, spec: RequestSpec, model: str | None
    ) -> tuple[str, dict[str, AttributeValue], dict[str, AttributeValue] | None]:
        """A call's span name, its starting attributes and the histogram's (None: none)."""
        operation = spec.operation
        model = model or _ROUTE_MODELS.get(operation)
        attrs = dict(self._base)
        attrs["ttapi.operation"] = operation
        if spec.billable:  # a call that makes images: a GenAI operation
            attrs["gen_ai.operation.name"] = GENERATE
            name = GENERATE if model is None else f"{GENERATE} {model}"
            if model is not None:
                attrs["gen_ai.request.model"] = model
            duration: dict[str, AttributeValue] | None = dict(attrs)  # before the HTTP ones
            attrs["gen_ai.output.type"] = "image"
        else:  # a fetch: no GenAI operation, the SDK's name
            name = operation
            duration = None
        attrs["http.request.method"] = spec.method
        attrs["url.path"] = spec.path  # fixed per operation: ids travel in the query
        return name, attrs, duration

    def wait(self, job_id: str, route: str | None) -> WaitRecord:
        """The span of one job wait (a context manager)."""
        attrs = dict(self._base)
        attrs["ttapi.job.id"] = job_id
        if route is not None:
            attrs["ttapi.job.route"] = route
        return WaitRecord(self, job_id, attrs)

    def polled(self, job_id: str, route: str, error: BaseException | None) -> None:
        """Count one poll of a job (``error``: it failed), on the counter and its waits."""
        if error is None:
            self._tel.polls.add(1, {"ttapi.job.route": route})
        else:
            self._tel.polls.add(1, {"ttapi.job.route": route, "error.type": error_type(error)})
        for wait in self._waits.get(job_id, ()):
            wait.polls += 1

    def job_event(self, event: JobEvent) -> None:
        """Count a job's outcome: a listener on the waiter's event hub."""
        if event.kind in _OUTCOMES:
            self._tel.outcomes.add(1, {"ttapi.job.outcome": event.kind.value})

    def callback(self, status: int | None) -> None:
        """Count one callback the receiver answered with ``status``.

        None: refused before its body was read (too large, too slow).
        """
        if status is None:
            self._tel.callbacks.add(1, {"ttapi.callback.result": "refused"})
            return
        if status == 200:  # noqa: PLR2004
            result = "accepted"
        elif status == 202:  # noqa: PLR2004
            result = "kept"  # it beat the submit's reply; judged when the job id is known
        elif status == 503:  # noqa: PLR2004
            result = "unavailable"
        else:
            result = "refused"
        self._tel.callbacks.add(
            1, {"ttapi.callback.result": result, "http.response.status_code": status}
        )

    # The spans' plumbing, shared by the two records.

    def attach(self, span: Span) -> object:
        """Make ``span`` the current one; returns what :meth:`detach` takes."""
        context = self._tel._context  # noqa: SLF001
        return context.attach(self._trace.set_span_in_context(span))

    def detach(self, token: object) -> None:
        """Undo :meth:`attach`."""
        self._tel._context.detach(token)  # noqa: SLF001

    def _open(self, name: str, attrs: Mapping[str, AttributeValue], *, client: bool) -> Span:
        trace = self._trace
        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        return self._tel.tracer.start_span(name, kind=kind, attributes=attrs)

    def _fail(self, span: Span, exc: BaseException) -> None:
        # The type alone: a message may quote a prompt (content policy) or, unscrubbed, a
        # secret. Status description and error.type say the same low-cardinality thing.
        kind = error_type(exc)
        span.set_attribute("error.type", kind)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, kind))


class CallRecord:
    """One API call's span while it runs: attempts, the last HTTP status, retries.

    The sender notes what happens (:meth:`replied`, :meth:`retrying`, ``attempts``); the
    span is current while the call runs, so the spans of an instrumented HTTP library
    nest under it, one per attempt.
    """

    __slots__ = (
        "_duration",
        "_operation",
        "_rec",
        "_span",
        "_start",
        "_token",
        "attempts",
        "status",
    )

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        attrs: dict[str, AttributeValue],
        duration: dict[str, AttributeValue] | None,
    ) -> None:
        self._rec = recorder
        self._operation = attrs["ttapi.operation"]
        self._duration = duration  # the histogram's attributes (None: not a GenAI call)
        self._span = recorder._open(name, attrs, client=True)  # noqa: SLF001
        self._token: object = None  # the context attached while the call runs
        self._start = 0.0
        #: Requests written so far (the sender counts them).
        self.attempts = 1
        #: The status of the reply the call ended with (None: none yet).
        self.status: int | None = None

    def __enter__(self) -> Self:
        self._start = time.perf_counter()
        # The span is current while the call runs (attach/detach: use_span's own context
        # manager costs more, and its exception handling is done here anyway).
        self._token = self._rec.attach(self._span)
        return self

    def replied(self, status: int, attempts: int) -> None:
        """A 2xx reply is being parsed: its status and the attempts it took."""
        self.status = status
        self.attempts = attempts

    def retrying(self, exc: BaseException, attempt: int, delay: float) -> None:
        """Attempt number ``attempt`` failed with ``exc``; the next one in ``delay`` s."""
        kind = error_type(exc)
        self.status = None  # that attempt is over; the next one says
        self._span.add_event(
            "retry",
            {"ttapi.retry.attempt": attempt, "ttapi.retry.delay": delay, "error.type": kind},
        )
        self._rec.telemetry.retries.add(1, {"ttapi.operation": self._operation, "error.type": kind})

    def result(self, value: object) -> None:
        """What the call returned: its job id, or its token usage, go on the span."""
        span = self._span
        job_id = getattr(value, "job_id", None)
        if isinstance(job_id, str):
            span.set_attribute("ttapi.job.id", job_id)
        if isinstance(value, JobSnapshot):
            span.set_attribute("ttapi.job.status", value.status.value)
        elif isinstance(value, ImagesResponse) and value.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", value.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", value.usage.output_tokens)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            attempts, status = self.attempts, self.status
            if isinstance(exc, OutcomeUnknownError):
                attempts = exc.attempts
                if isinstance(exc.cause, APIStatusError):
                    status = exc.cause.status
            elif isinstance(exc, APIStatusError):
                status = exc.status
            span.set_attribute("ttapi.request.attempts", attempts)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if exc is not None:
                self._rec._fail(span, exc)  # noqa: SLF001
            if self._duration is not None:
                attrs = self._duration
                if exc is not None:
                    attrs = {**attrs, "error.type": error_type(exc)}
                self._rec.telemetry.duration.record(time.perf_counter() - self._start, attrs)
        finally:
            self._rec.detach(self._token)
            span.end()


class WaitRecord:
    """One job wait's span while it runs: the job's route, its polls, how it ended."""

    __slots__ = ("_job_id", "_rec", "_span", "job", "polls", "result")

    def __init__(self, recorder: Recorder, job_id: str, attrs: dict[str, AttributeValue]) -> None:
        self._rec = recorder
        self._job_id = job_id
        self._span = recorder._open("job.wait", attrs, client=False)  # noqa: SLF001
        self.polls = 0
        self.job: _Tracked | None = None  # the waiter's record of the job, once known
        self.result: JobResult | None = None

    def __enter__(self) -> Self:
        self._rec._waits.setdefault(self._job_id, []).append(self)  # noqa: SLF001
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        waits = self._rec._waits  # noqa: SLF001
        mine = waits.get(self._job_id, [])
        if self in mine:
            mine.remove(self)
        if not mine:
            waits.pop(self._job_id, None)
        span = self._span
        try:
            span.set_attribute("ttapi.job.polls", self.polls)
            job = self.job
            if job is not None:
                span.set_attribute("ttapi.job.route", job.route)
            if self.result is not None:
                span.set_attribute("ttapi.job.outcome", JobEventKind.SUCCEEDED.value)
                span.set_attribute("ttapi.job.ended_by", self.result.source)
            elif exc is not None:
                outcome = _wait_end(exc)
                span.set_attribute("ttapi.job.outcome", outcome)
                if outcome == JobEventKind.FAILED.value and job is not None:
                    by = "webhook" if job.called_back else "poll"
                    span.set_attribute("ttapi.job.ended_by", by)
                self._rec._fail(span, exc)  # noqa: SLF001
        finally:
            span.end()


def _wait_end(exc: BaseException) -> str:
    """How a wait that raised ended (``ttapi.job.outcome``)."""
    if isinstance(exc, JobFailedError):
        return JobEventKind.FAILED.value
    if isinstance(exc, JobTimeoutError):
        return JobEventKind.TIMED_OUT.value
    if isinstance(exc, ClientClosedError):
        return "closed"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"
