"""The job routes: ``client.gpt`` (``/openai/gpt/*``) beside ``client.gpt4o``, against the
emulator over real HTTP on 127.0.0.1 (the 4o route's own tests are in test_resources)."""

from __future__ import annotations

import anyio
import pytest
from helpers import served

import ttapi_async as tt
from ttapi_async._protocol import build_fetch, build_submit_gpt, parse_submit
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

GPT_FETCH = "/openai/gpt/fetch"
FOUR_O_FETCH = "/openai/4o-image/fetch"


def sdk(emu: Emulator, **kwargs: object) -> tt.Client:
    return tt.Client(emu.api_key, base_url=emu.url, **kwargs)  # type: ignore[arg-type]


def test_the_gpt_submit_sends_only_what_is_given() -> None:
    spec = build_submit_gpt(
        "draw a corgi",
        model="gpt-image-2",
        aspect_ratio="16:9",
        size=None,
        refer_images="https://cdn.example/a.png",
        hook_url=None,
    )
    assert (spec.method, spec.path, spec.operation) == (
        "POST",
        "/openai/gpt/generations",
        "gpt.submit",
    )
    assert spec.billable
    assert tt._json.loads(spec.body) == {  # type: ignore[arg-type]
        "prompt": "draw a corgi",
        "model": "gpt-image-2",
        "aspect_ratio": "16:9",
        "referImages": ["https://cdn.example/a.png"],
    }


def test_a_fetch_goes_to_its_route() -> None:
    assert build_fetch("j1").path == FOUR_O_FETCH
    gpt = build_fetch("j1", "gpt")
    assert (gpt.path, gpt.params, gpt.operation) == (GPT_FETCH, {"jobId": "j1"}, "gpt.fetch")
    with pytest.raises(tt.ValidationError, match="route"):
        build_fetch("j1", "midjourney")


def test_the_submit_reply_may_say_job_id_or_jobId() -> None:
    for key in ("job_id", "jobId"):
        body = b'{"status":"SUCCESS","message":"success","data":{"' + key.encode() + b'":"j9"}}'
        assert parse_submit(200, {}, body, "gpt.submit") == "j9"


@pytest.mark.parametrize(
    ("kwargs", "param", "rule"),
    [
        ({"model": "gpt-image-1.5", "aspect_ratio": "16:9"}, "aspect_ratio", "only gpt-image-2"),
        ({"aspect_ratio": "21:9"}, "aspect_ratio", "16:9"),  # model omitted: gpt-image-2
        ({"model": "gpt-image-2", "size": "1024x1024"}, "size", "only gpt-image-2-plus"),
        ({"model": "gpt-image-2-plus", "size": "1000x1000"}, "size", "multiples of 16"),
        ({"model": "gpt-image-2-plus", "size": "3840x1248"}, "size", "3:1"),
        ({"model": "gpt-image-2-plus", "size": "512x512"}, "size", "655,360"),
        ({"refer_images": ["ftp://x"]}, "refer_images[0]", "http"),
    ],
)
async def test_gpt_rules_are_checked_before_sending(
    emulator: Emulator, kwargs: dict[str, object], param: str, rule: str
) -> None:
    async with sdk(emulator) as c:
        with pytest.raises(tt.ValidationError, match=rule) as info:
            await c.gpt.submit(prompt="p", **kwargs)  # type: ignore[arg-type]
    assert info.value.param == param
    assert emulator.counters.requests["/openai/gpt/generations"] == 0


async def test_gpt_jobs_are_submitted_fetched_and_waited_on_their_route(
    emulator: Emulator,
) -> None:
    async with sdk(emulator) as c:
        job = await c.gpt.submit(prompt="a corgi", model="gpt-image-2-plus", size="1536x1024")
        assert job.route == "gpt"
        snap = await job.fetch()
        assert snap.job_id == job.job_id
        result = await job.wait(timeout=10)
        assert result.image_url
        # A bare id: the route this client saw it submitted on.
        again = await c.waiter.wait(job.job_id, timeout=10)
        assert again.image_url == result.image_url
        other = await c.gpt.generate(prompt="a cat", aspect_ratio="9:16", timeout=10)
        assert other.job_id != job.job_id
    assert emulator.counters.requests[GPT_FETCH] >= 2
    assert emulator.counters.requests[FOUR_O_FETCH] == 0
    assert emulator.counters.billed["/openai/gpt/generations"] == 2


async def test_a_bare_id_from_elsewhere_takes_route(emulator: Emulator) -> None:
    async with sdk(emulator) as first:
        job = await first.gpt.submit(prompt="a fox")
    async with sdk(emulator) as second:  # knows nothing of the job
        result = await second.waiter.wait(job.job_id, route="gpt", timeout=10)
        assert result.job_id == job.job_id
        with pytest.raises(tt.JobNotFoundError):  # the 4o route does not know it
            await second.gpt4o.fetch(job.job_id)


async def test_a_gpt_jobs_callback_is_confirmed_on_its_route(emulator: Emulator) -> None:
    emulator.job_duration = 0.1
    async with anyio.create_task_group() as tg:
        receiver = await served(tg, token_ttl=60)
        async with sdk(emulator, webhook=receiver) as c:
            result = await c.gpt.generate(prompt="a hooked corgi", timeout=10)
        tg.cancel_scope.cancel()
    assert result.source == "webhook"
    assert receiver.accepted == 1
    assert emulator.counters.requests[GPT_FETCH] == 1  # the confirmation
    assert emulator.counters.requests[FOUR_O_FETCH] == 0


async def test_a_bad_route_is_refused_and_a_later_handle_corrects_a_guess(
    emulator: Emulator,
) -> None:
    async with sdk(emulator) as c:
        with pytest.raises(tt.ValidationError, match="route"):
            await c.waiter.wait("j1", route="bogus")
        job = await c.gpt.submit(prompt="a corgi")
        other = tt.Client(emulator.api_key, base_url=emulator.url)
        async with other:
            # A bare-id wait guesses the 4o route and times out; the handle then corrects it.
            with pytest.raises(tt.JobTimeoutError):
                await other.waiter.wait(job.job_id, timeout=0.05)
            result = await other.gpt.job(job.job_id).wait(timeout=10)
    assert result.job_id == job.job_id


def test_an_image_url_of_the_wrong_type_is_a_validation_error() -> None:
    from ttapi_async._protocol import build_edit_json  # noqa: PLC0415

    with pytest.raises(tt.ValidationError):
        build_edit_json({"prompt": "p", "model": "gpt-image-1"}, [tt.ImageURL(123)], None)  # type: ignore[arg-type]
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
        "RU5ErkJggg=="
    )
    with pytest.raises(tt.ValidationError, match="says image/jpeg"):
        build_edit_json(
            {"prompt": "p", "model": "gpt-image-1"},
            [tt.ImageURL("data:image/jpeg;base64," + png)],
            None,
        )
