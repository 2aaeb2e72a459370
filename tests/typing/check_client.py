"""What a user's type checker sees of the client: construction, calls and their results.

Type-checked (mypy over ``tests``; basedpyright with ``tests/typing/pyrightconfig.json``),
never run: the bodies are ``async def`` functions nobody calls, and pytest does not collect
``check_*.py``. Each ``assert_type`` fails a checker when a public signature drifts.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, assert_type

import ttapi_async as tt


async def construction() -> None:
    """Every documented way to build a client, and ``async with`` giving the client back."""
    assert_type(tt.Client(), tt.Client)
    assert_type(tt.Client("key", base_url="http://127.0.0.1:1", timeout=None), tt.Client)
    client = tt.Client(
        "key",
        timeout=30.0,
        max_retries=0,
        retry=tt.RetryPolicy(),
        poll_policy=tt.PollPolicy(),
        requests_per_second=5.0,
        headers={"X-Trace": "1"},
    )
    # OpenTelemetry: a Telemetry, or True (the same with the global providers).
    assert_type(tt.Client("key", telemetry=True), tt.Client)
    assert_type(tt.Client("key", telemetry=tt.Telemetry()), tt.Client)
    async with client as entered:
        assert_type(entered, tt.Client)
    async with tt.Client() as c:
        assert_type(c, tt.Client)
        assert_type(c.closed, bool)
        assert_type(c.waiting_enabled, bool)
        assert_type(c.base_url, str)
        assert_type(c.timeout, float | None)
        assert_type(c.images, tt.Images)
        assert_type(c.dalle3, tt.Dalle3)
        assert_type(c.gpt4o, tt.GPT4o)
        assert_type(c.gpt, tt.GPT)
        assert_type(c.waiter, tt.JobWaiter)
        assert_type(c.stats, tt.ClientStats)
        assert_type(c.budget, tt.RequestBudget | None)
        assert_type(c.webhook, tt.WebhookReceiver | None)
        assert_type(c.broker, tt.RedisBroker | None)
        assert_type(c.deadline(1.0), float | None)
        assert_type(c.deadline(tt.NOT_GIVEN), float | None)
    assert_type(await client.aclose(), None)


async def images(client: tt.Client, fh: IO[bytes]) -> None:
    """``images.generate``/``edit``: the ``stream`` overloads pick the return type."""
    r = await client.images.generate(prompt="a red fox", model="gpt-image-1", quality="low")
    assert_type(r, tt.ImagesResponse)
    assert_type(await client.images.generate(prompt="x", stream=False), tt.ImagesResponse)
    assert_type(await client.images.generate(prompt="x", timeout=None), tt.ImagesResponse)
    stream = await client.images.generate(
        prompt="a red fox", model="gpt-image-1", stream=True, partial_images=2
    )
    assert_type(stream, tt.ImageStream)
    async with stream as entered:
        assert_type(entered, tt.ImageStream)
        async for event in stream:
            assert_type(event, tt.ImageStreamEvent)
            assert_type(event.type, str)
            assert_type(event.partial_image_index, int | None)
            assert_type(event.usage, tt.Usage | None)
            assert_type(event.completed, bool)
            assert_type(event.decode(), bytes)
    assert_type(stream.received, list[tt.ImageStreamEvent])
    assert_type(stream.completed, list[tt.ImageStreamEvent])
    assert_type(await stream.aclose(), None)

    edited = await client.images.edit(
        image=["a.png", fh, b"\x89PNG", bytearray(), Path("c.png")], prompt="gift", mask="m.png"
    )
    assert_type(edited, tt.ImagesResponse)
    assert_type(await client.images.edit(image=io.BytesIO(b""), prompt="x"), tt.ImagesResponse)
    by_url = await client.images.edit(
        image=[tt.ImageURL("https://example.com/a.png"), tt.FileID("file-1")],
        prompt="x",
        model="gpt-image-1.5",
    )
    assert_type(by_url, tt.ImagesResponse)
    assert_type(
        await client.images.edit(image="a.png", prompt="x", stream=True, partial_images=1),
        tt.ImageStream,
    )

    d3 = await client.dalle3.generate(prompt="a cat", size="1792x1024", quality="hd")
    assert_type(d3, tt.ImagesResponse)


async def jobs(client: tt.Client) -> None:
    """The two job routes, a job handle, and the waiter."""
    job = await client.gpt4o.submit(prompt="draw a lighthouse", refer_images=["https://x/a.png"])
    assert_type(job, tt.Job)
    assert_type(job.job_id, str)
    assert_type(job.route, str)
    assert_type(job.http, tt.ResponseInfo | None)
    assert_type(job.submitted_at, float | None)
    assert_type(await job.fetch(), tt.JobSnapshot)
    assert_type(await job.wait(timeout=600), tt.JobResult)
    assert_type(await job.wait(timeout=None), tt.JobResult)
    assert_type(await client.gpt4o.fetch(job.job_id), tt.JobSnapshot)
    assert_type(client.gpt4o.job("id"), tt.Job)
    assert_type(await client.gpt4o.generate(prompt="x", timeout=60.0), tt.JobResult)

    gjob = await client.gpt.submit(prompt="x", model="gpt-image-2", aspect_ratio="16:9")
    assert_type(gjob, tt.Job)
    assert_type(await client.gpt.submit(prompt="x", size="1024x1024", hook_url="https://h"), tt.Job)
    assert_type(await client.gpt.fetch("id"), tt.JobSnapshot)
    assert_type(client.gpt.job("id"), tt.Job)
    assert_type(await client.gpt.generate(prompt="x", model="gpt-image-2-plus"), tt.JobResult)

    waiter = client.waiter
    assert_type(await waiter.wait(job), tt.JobResult)
    assert_type(await waiter.wait("id", route="gpt", timeout=5.0), tt.JobResult)
    assert_type(waiter.running, bool)
    assert_type(waiter.pending, int)
    assert_type(waiter.pending_ids(), list[str])
    assert_type(waiter.stats, tt.WaiterStats)
    async with waiter.events() as events:
        async for ev in events:
            assert_type(ev, tt.JobEvent)
            assert_type(ev.kind, tt.JobEventKind)


async def saving(client: tt.Client, r: tt.ImagesResponse, result: tt.JobResult) -> None:
    """``client.save`` takes every kind of result, ``client.download`` gives bytes."""
    saved = await client.save(r, "images")
    assert_type(saved, list[tt.SavedImage])
    assert_type(
        await client.save(result, Path("images"), stem="cat", sidecar=False), list[tt.SavedImage]
    )
    assert_type(await client.save(result.as_snapshot(), "images"), list[tt.SavedImage])
    stream = await client.images.generate(prompt="x", stream=True)
    assert_type(await client.save(stream.received, "out"), list[tt.SavedImage])
    assert_type(await client.save(stream.received[0], "out"), list[tt.SavedImage])
    first = saved[0]
    assert_type(first.path, Path)
    assert_type(first.sidecar, Path | None)
    assert_type(first.size, int)
    assert_type(first.width, int | None)
    assert_type(await client.download("https://x/a.png"), bytes)


async def bulk(client: tt.Client) -> None:
    """``client.bulk``: a context manager whose iteration yields ``BulkOutcome``."""
    requests: list[tt.Request] = [
        tt.GPT4oRequest(prompt="a"),
        tt.GPTRequest(prompt="b", model="gpt-image-2"),
        tt.GenerateRequest(prompt="c", model="gpt-image-1"),
        tt.EditRequest(image=("a.png",), prompt="d"),
        tt.Dalle3Request(prompt="e", size="1024x1024"),
    ]

    def on_progress(progress: tt.BulkProgress) -> None:
        assert_type(progress.total, int | None)
        assert_type(progress.finished, int)

    run = client.bulk(
        requests, max_jobs=8, save_to="out", journal="run.db", on_progress=on_progress
    )
    assert_type(run, tt.BulkRun)
    async with run as outcomes:
        assert_type(outcomes, tt.BulkRun)
        assert_type(outcomes.progress, tt.BulkProgress)
        async for outcome in outcomes:
            assert_type(outcome, tt.BulkOutcome)
            assert_type(outcome.index, int)
            assert_type(outcome.request, tt.Request)
            assert_type(outcome.state, tt.ItemState)
            assert_type(outcome.ok, bool)
            assert_type(outcome.result, tt.ImagesResponse | tt.JobResult | None)
            assert_type(outcome.error, Exception | None)
            assert_type(outcome.job_id, str | None)
            assert_type(outcome.files, tuple[tt.SavedImage, ...])
            assert_type(outcome.paths, tuple[Path, ...])
        assert_type(run.stop(), None)

    async def generated() -> AsyncIterator[tt.Request]:
        yield tt.GPT4oRequest(prompt="lazy")

    assert_type(client.bulk(generated(), ordered=True), tt.BulkRun)
