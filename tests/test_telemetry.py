"""OpenTelemetry spans and counters, read back from the SDK's in-memory exporters.

Every test talks HTTP to the emulator (or a receiver on 127.0.0.1) through a client given
a :class:`Telemetry` over its own tracer and meter providers; the spans and metric points
it recorded are then checked one by one. ``telemetry=True`` and "telemetry off records
nothing" are seen through the global providers, in a child process each (a process sets
them once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import attrs
import pytest
from helpers import served
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import ttapi_async as tt
from ttapi_async._sender import SendHook
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio

GENERATE = "/v1/images/generations"
# Only callbacks (and their confirming fetches) end hooked jobs here.
HOOKED = tt.PollPolicy(
    backstop_interval=3600.0,
    confirm_retry=tt.RetryPolicy(max_retries=100, initial_delay=0.05, max_delay=0.2),
)
PROMPT = "a red fox, secret-prompt-words"


@attrs.define
class Otel:
    """One test's providers and what they caught."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    telemetry: tt.Telemetry

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, value)`` of each point of ``metric`` (a sum, or a histogram's count)."""
        return points(self.reader, metric)

    def total(self, metric: str, **attrs: object) -> int:
        """The sum of ``metric`` over the points whose attributes include ``attrs``."""
        return sum(
            int(v)
            for a, v in self.points(metric)
            if all(a.get(k.replace("_", ".")) == x for k, x in attrs.items())
        )


def points(reader: InMemoryMetricReader, metric: str) -> list[tuple[dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    found: list[tuple[dict[str, Any], Any]] = []
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name != metric:
                    continue
                for p in m.data.data_points:
                    value = getattr(p, "value", None)
                    found.append((dict(p.attributes or {}), getattr(p, "count", value)))
    return found


def providers() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


@pytest.fixture
def otel() -> Otel:
    tracer_provider, exporter, meter_provider, reader = providers()
    telemetry = tt.Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Otel(exporter, reader, telemetry)


def client(emulator: Emulator, **kwargs: Any) -> tt.Client:
    return tt.Client(emulator.api_key, base_url=emulator.url, **kwargs)


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def everything_recorded(otel: Otel) -> list[str]:
    """Every string a backend would get: span names, attributes, events, statuses, metrics."""
    texts: list[str] = []
    for span in otel.spans():
        texts.append(span.name)
        texts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            texts.append(event.name)
            texts.extend(str(v) for v in (event.attributes or {}).values())
        texts.append(str(span.status.description))
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    texts.extend(str(v) for v in (p.attributes or {}).values())
    return texts


# ----------------------------------------------------------------------------- API calls


async def test_generate_is_one_client_span_named_as_genai(emulator: Emulator, otel: Otel) -> None:
    async with client(emulator, telemetry=otel.telemetry) as c:
        r = await c.images.generate(prompt=PROMPT, model="gpt-image-1", quality="low")
    span = only(otel.spans())
    assert span.name == "generate_content gpt-image-1"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.request.model"] == "gpt-image-1"
    assert attrs["gen_ai.provider.name"] == "ttapi"
    assert attrs["gen_ai.output.type"] == "image"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == int(emulator.url.rsplit(":", 1)[1])
    assert attrs["http.response.status_code"] == 200
    assert attrs["ttapi.request.attempts"] == 1
    assert attrs["ttapi.operation"] == "images.generate"
    assert attrs["url.path"] == GENERATE
    assert r.usage is not None
    assert attrs["gen_ai.usage.output_tokens"] == r.usage.output_tokens
    assert "error.type" not in attrs
    [(point, count)] = otel.points("gen_ai.client.operation.duration")
    assert count == 1
    assert point["gen_ai.request.model"] == "gpt-image-1"
    assert "error.type" not in point


async def test_a_retried_call_is_one_span_with_two_attempts(emulator: Emulator, otel: Otel) -> None:
    emulator.add_fault(Fault(route=GENERATE, status=429, count=1))
    async with client(emulator, telemetry=otel.telemetry) as c:
        r = await c.images.generate(prompt=PROMPT, model="gpt-image-1", quality="low")
        assert c.stats.retries == 1
    assert r.http is not None
    assert r.http.attempts == 2
    span = only(otel.spans())
    attrs = dict(span.attributes or {})
    assert attrs["ttapi.request.attempts"] == 2
    assert attrs["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET
    [retry] = span.events
    assert retry.name == "retry"
    assert dict(retry.attributes or {})["error.type"] == "RateLimitError"
    assert otel.points("ttapi.client.retries") == [
        ({"ttapi.operation": "images.generate", "error.type": "RateLimitError"}, 1)
    ]


async def test_a_call_failing_after_its_retries_counts_every_attempt(
    emulator: Emulator, otel: Otel
) -> None:
    emulator.add_fault(Fault(route=GENERATE, status=429, count=3))
    async with client(emulator, telemetry=otel.telemetry, max_retries=2) as c:
        with pytest.raises(tt.RateLimitError):
            await c.images.generate(prompt=PROMPT, model="gpt-image-1", quality="low")
    span = only(otel.spans())
    attrs = dict(span.attributes or {})
    assert attrs["ttapi.request.attempts"] == 3
    assert attrs["http.response.status_code"] == 429
    assert attrs["error.type"] == "RateLimitError"
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert otel.total("ttapi.client.retries", error_type="RateLimitError") == 2


async def test_a_failed_call_sets_error_type_and_status(emulator: Emulator, otel: Otel) -> None:
    async with client(emulator, telemetry=otel.telemetry) as c:
        with pytest.raises(tt.ContentPolicyError):
            await c.images.generate(prompt=PROMPT + " [moderation]", model="gpt-image-1")
    span = only(otel.spans())
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "ContentPolicyError"
    assert attrs["http.response.status_code"] == 400
    assert attrs["ttapi.request.attempts"] == 1
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ContentPolicyError"  # the type, never the message
    [(point, _)] = otel.points("gen_ai.client.operation.duration")
    assert point["error.type"] == "ContentPolicyError"
    assert otel.points("ttapi.client.retries") == []


async def test_an_outcome_unknown_keeps_its_attempts_and_status(
    emulator: Emulator, otel: Otel
) -> None:
    emulator.add_fault(Fault(route=GENERATE, status=502, count=1, after_accept=True))
    async with client(emulator, telemetry=otel.telemetry) as c:
        with pytest.raises(tt.OutcomeUnknownError):
            await c.images.generate(prompt=PROMPT, model="gpt-image-1", quality="low")
    attrs = dict(only(otel.spans()).attributes or {})
    assert attrs["error.type"] == "OutcomeUnknownError"
    assert attrs["http.response.status_code"] == 502
    assert attrs["ttapi.request.attempts"] == 1


async def test_the_call_span_is_current_while_the_request_is_sent(
    emulator: Emulator, otel: Otel
) -> None:
    """What runs inside the call (an instrumented HTTP library's spans) nests under it."""
    seen: list[int] = []

    async def before_send() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    async with client(emulator, telemetry=otel.telemetry) as c:
        hooked = c._sender.with_hook(SendHook(before_send))
        await tt.Images(hooked).generate(prompt=PROMPT, model="gpt-image-1", quality="low")
        assert trace.get_current_span() is trace.INVALID_SPAN  # and not after it
    span = only(otel.spans())
    assert span.context is not None
    assert seen == [span.context.span_id]


async def test_dalle3_and_a_fetch_are_named_by_what_they_are(
    emulator: Emulator, otel: Otel
) -> None:
    async with client(emulator, telemetry=otel.telemetry) as c:
        await c.dalle3.generate(prompt=PROMPT, size="1024x1024")
        job = await c.gpt4o.submit(prompt=PROMPT)
        snap = await c.gpt4o.fetch(job.job_id)
    dalle, submit, fetch = otel.spans()
    assert dalle.name == "generate_content dall-e-3"
    assert submit.name == "generate_content gpt-4o-image"
    assert dict(submit.attributes or {})["ttapi.job.id"] == job.job_id
    assert fetch.name == "gpt4o.fetch"
    assert fetch.kind is SpanKind.CLIENT
    attrs = dict(fetch.attributes or {})
    assert "gen_ai.operation.name" not in attrs  # reading a job's state is no GenAI operation
    assert attrs["ttapi.job.id"] == job.job_id
    assert attrs["ttapi.job.status"] == snap.status.value
    assert attrs["http.request.method"] == "GET"
    # The histogram is for the GenAI calls only: two of them.
    assert otel.total("gen_ai.client.operation.duration") == 2


# ----------------------------------------------------------------------------- job waits


async def test_a_wait_by_polling(emulator: Emulator, otel: Otel) -> None:
    async with client(emulator, telemetry=otel.telemetry) as c:
        job = await c.gpt4o.submit(prompt=PROMPT)
        result = await job.wait(timeout=10)
        polls = c.waiter.stats.polls_sent
    assert result.source == "poll"
    wait = only(otel.named("job.wait"))
    assert wait.kind is SpanKind.INTERNAL
    attrs = dict(wait.attributes or {})
    assert attrs["ttapi.job.id"] == job.job_id
    assert attrs["ttapi.job.route"] == "4o-image"
    assert attrs["ttapi.job.outcome"] == "succeeded"
    assert attrs["ttapi.job.ended_by"] == "poll"
    assert polls >= 1
    assert attrs["ttapi.job.polls"] == polls
    assert wait.status.status_code is StatusCode.UNSET
    # The waiter's polls are counted, not traced one span each.
    assert [s.name for s in otel.spans()] == ["generate_content gpt-4o-image", "job.wait"]
    assert otel.total("ttapi.job.polls", ttapi_job_route="4o-image") == polls
    assert otel.points("ttapi.job.outcomes") == [({"ttapi.job.outcome": "succeeded"}, 1)]


async def test_a_failed_job_and_a_timed_out_wait(emulator: Emulator, otel: Otel) -> None:
    async with client(emulator, telemetry=otel.telemetry) as c:
        bad = await c.gpt.submit(prompt=PROMPT + " [fail]")
        with pytest.raises(tt.JobFailedError):
            await bad.wait(timeout=10)
        emulator.job_duration = 30.0
        slow = await c.gpt.submit(prompt=PROMPT)
        with pytest.raises(tt.JobTimeoutError):
            await slow.wait(timeout=0.2)
    failed, timed_out = otel.named("job.wait")
    attrs = dict(failed.attributes or {})
    assert attrs["ttapi.job.route"] == "gpt"
    assert attrs["ttapi.job.outcome"] == "failed"
    assert attrs["ttapi.job.ended_by"] == "poll"
    assert attrs["error.type"] == "JobFailedError"
    assert failed.status.status_code is StatusCode.ERROR
    attrs = dict(timed_out.attributes or {})
    assert attrs["ttapi.job.outcome"] == "timed_out"
    assert attrs["error.type"] == "JobTimeoutError"
    assert "ttapi.job.ended_by" not in attrs
    assert otel.total("ttapi.job.outcomes", ttapi_job_outcome="failed") == 1
    assert otel.total("ttapi.job.outcomes", ttapi_job_outcome="timed_out") == 1
    assert otel.total("ttapi.job.outcomes", ttapi_job_outcome="succeeded") == 0


async def test_a_wait_ended_by_callback_and_no_secret_is_recorded(
    emulator: Emulator, otel: Otel
) -> None:
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(emulator, telemetry=otel.telemetry, webhook=rec, poll_policy=HOOKED) as c:
            result = await c.gpt4o.generate(prompt=PROMPT, timeout=10)
            confirms = c.waiter.stats.polls_sent
        tokens = list(rec._hooks)  # kept for the grace period after the job ended
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    attrs = dict(only(otel.named("job.wait")).attributes or {})
    assert attrs["ttapi.job.ended_by"] == "webhook"
    assert attrs["ttapi.job.outcome"] == "succeeded"
    assert attrs["ttapi.job.polls"] == confirms == 1  # the confirming fetch only
    assert otel.points("ttapi.webhook.callbacks") == [
        ({"ttapi.callback.result": "accepted", "http.response.status_code": 200}, 1)
    ]
    # The secrets: the key, the hook token (and so any hook URL), the prompt.
    assert tokens
    recorded = everything_recorded(otel)
    assert recorded
    for secret in [emulator.api_key, rec.public_url, "secret-prompt-words", *tokens]:
        assert not [text for text in recorded if secret in text], secret


async def test_refused_callbacks_are_counted(emulator: Emulator, otel: Otel) -> None:
    async with anyio.create_task_group() as tg:
        rec = await served(tg)
        async with client(emulator, telemetry=otel.telemetry, webhook=rec):
            import aiohttp  # noqa: PLC0415

            async with aiohttp.ClientSession() as http:
                for path in ("/unknown-token", "/another"):
                    async with http.post(rec.public_url + path, json={}) as resp:
                        assert resp.status == 404
        tg.cancel_scope.cancel()
    assert otel.points("ttapi.webhook.callbacks") == [
        ({"ttapi.callback.result": "refused", "http.response.status_code": 404}, 2)
    ]


# ----------------------------------------------------------------------------- on and off


# The global providers can be set once per process, and another test module (the docs'
# telemetry page) may have set them: these tests run in a child of their own.
GLOBAL_RUN = """
import json, sys
import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import ttapi_async as tt
from ttapi_async.testing import Emulator, Fault, fast_waits

exporter = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
telemetry = {"true": True, "none": None, "false": False}[sys.argv[1]]

async def main():
    with fast_waits():
        async with Emulator(job_duration=0.05) as emu:
            emu.add_fault(Fault(route="/v1/images/generations", status=429, count=1))
            async with tt.Client(emu.api_key, base_url=emu.url, telemetry=telemetry) as c:
                await c.images.generate(prompt="a fox", model="gpt-image-1", quality="low")
                await (await c.gpt4o.submit(prompt="a fox")).wait(timeout=10)
                retries, polls = c.stats.retries, c.waiter.stats.polls_sent
    data = reader.get_metrics_data()
    names = sorted(
        {m.name for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
         for m in sm.metrics}
    )
    spans = [s.name for s in exporter.get_finished_spans()]
    print(json.dumps({"spans": spans, "metrics": names, "retries": retries, "polls": polls}))

anyio.run(main)
"""


def run_with_global_providers(telemetry: str) -> dict[str, Any]:
    """A client given ``telemetry`` (true, none, false) in a child with global providers."""
    proc = subprocess.run(
        [sys.executable, "-c", GLOBAL_RUN, telemetry],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_telemetry_true_records_into_the_global_providers() -> None:
    seen = run_with_global_providers("true")
    assert "generate_content gpt-image-1" in seen["spans"]
    assert "job.wait" in seen["spans"]
    assert {"ttapi.client.retries", "ttapi.job.polls", "ttapi.job.outcomes"} <= set(seen["metrics"])


@pytest.mark.parametrize("off", ["none", "false"])
def test_telemetry_off_records_nothing(off: str) -> None:
    seen = run_with_global_providers(off)
    assert seen["retries"] == 1  # the call was retried and the job polled, unrecorded
    assert seen["polls"] >= 1
    assert seen["spans"] == []
    assert seen["metrics"] == []


def test_importing_the_sdk_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, ttapi_async as tt\n"
        "tt.Client('k', base_url='http://127.0.0.1:9')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "print(loaded)\n"
        "tt.Telemetry()\n"
        "print('opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["[]", "True"]  # not before telemetry is asked for; then, yes


def test_without_opentelemetry_asking_for_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(tt.TelemetryUnavailableError, match=r"pip install 'ttapi-async\[otel\]'"):
        tt.Client("k", base_url="http://127.0.0.1:9", telemetry=True)
    with pytest.raises(ImportError):
        tt.Telemetry()
    tt.Client("k", base_url="http://127.0.0.1:9")  # off: no need of it


@pytest.mark.parametrize("wrong", [1, "yes", object()])
def test_telemetry_of_another_type_is_a_validation_error(wrong: object) -> None:
    with pytest.raises(tt.ValidationError, match="telemetry"):
        tt.Client("k", base_url="http://127.0.0.1:9", telemetry=wrong)  # type: ignore[arg-type]
