"""Bulk runs end to end, through their shell (``ttapi_async._bulk``).

The whole run, ``stop()``, leaving the block early, fail-fast, the errors the loop raises,
the progress callback and secrets. The parts a run is cut into have files of their own:
``test_admission``, ``test_items``, ``test_finish``, ``test_outcomes``, ``test_resume``,
``test_runstate`` and ``test_journalstore``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest
from bulk_helpers import (
    client_for,
    generations,
    prompts,
)
from PIL import Image

import ttapi_async as tt
from ttapi_async import (
    BulkPausedError,
    BulkProgress,
    GPT4oRequest,
    ItemState,
    JobFailedError,
)
from ttapi_async._journal import Journal
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async.testing import Emulator, Fault


pytestmark = pytest.mark.anyio


async def test_every_input_ends_once_and_is_saved(emulator: Emulator, tmp_path: Path) -> None:
    reqs = prompts(12)
    seen: list[BulkProgress] = []
    async with client_for(emulator) as c:
        async with c.bulk(reqs, max_jobs=4, save_to=tmp_path, on_progress=seen.append) as run:
            outcomes = [o async for o in run]
    assert sorted(o.index for o in outcomes) == list(range(12))
    assert all(o.ok and o.job_id and len(o.files) == 1 for o in outcomes)
    assert all(outcomes[i].request is reqs[outcomes[i].index] for i in range(12))
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}
    assert emulator.counters.in_flight_peak <= 4
    images = sorted(p for p in tmp_path.iterdir() if p.suffix == ".png")
    assert len(images) == 12
    with Image.open(images[0]) as img:
        assert img.format == "PNG"
    sidecar = json.loads(images[0].with_name(images[0].name + ".json").read_text())
    assert sidecar["prompt"].startswith("p ")
    assert emulator.api_key not in json.dumps(sidecar)
    final = seen[-1]
    assert (final.done, final.failed, final.running, final.submitted) == (12, 0, 0, 12)
    assert max(p.running for p in seen) <= 4


async def test_fail_fast_raises_and_leaves_nothing_running(emulator: Emulator) -> None:
    emulator.job_duration = (0.15, 0.15)
    reqs = [GPT4oRequest(prompt="[fail] first"), *prompts(40)]
    async with client_for(emulator) as c:
        with pytest.raises(JobFailedError):
            async with c.bulk(reqs, max_jobs=4, fail_fast=True) as run:
                async for _ in run:
                    pass
        submitted = sum(emulator.counters.submits_by_prompt.values())
        await anyio.sleep(0.25)
        assert c.waiter.pending == 0
    assert submitted < 10
    assert sum(emulator.counters.submits_by_prompt.values()) == submitted


async def test_leaving_early_stops_submitting_and_resume_waits_instead(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (0.05, 0.1)
    reqs = prompts(30)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(reqs, max_jobs=6, journal=journal) as run:
            async for _ in run:
                break
        submitted = sum(emulator.counters.submits_by_prompt.values())
        await anyio.sleep(0.3)
        assert sum(emulator.counters.submits_by_prompt.values()) == submitted
        assert c.waiter.pending == 0
    with Journal.open(journal) as j:
        states = {e.state for e in j.entries().values()}
        assert j.recovered == 0  # no submit was cut off between send and record
    assert ItemState.SUBMITTED in states or ItemState.DONE in states
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=6, journal=journal) as run:
        got = [o async for o in run]
    assert len(got) == 30
    assert all(o.ok for o in got)
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}


async def test_stop_finishes_in_flight_and_keeps_the_rest_pending(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.job_duration = (0.2, 0.3)
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(prompts(40), max_jobs=4, journal=journal) as run:
            got = []
            async for o in run:
                got.append(o)
                run.stop()
    assert 1 <= len(got) <= 8
    assert all(o.ok for o in got)
    with Journal.open(journal) as j:
        counts = j.counts()
    assert counts[ItemState.DONE] == len(got)
    assert counts[ItemState.SUBMITTED] == counts[ItemState.SUBMITTING] == 0
    assert sum(emulator.counters.submits_by_prompt.values()) == len(got)


async def test_bulk_needs_an_entered_client(emulator: Emulator) -> None:
    c = client_for(emulator)
    with pytest.raises(tt.ClientClosedError, match="async with"):
        async with c.bulk(prompts(1)) as run:
            [o async for o in run]
    await c.aclose()


async def test_paused_error_chains_the_account_error(emulator: Emulator) -> None:
    """BulkPausedError's ``__cause__`` is the account error (its ``cause``), for tracebacks."""
    emulator.balance = 0
    async with client_for(emulator) as c:
        with pytest.raises(BulkPausedError) as info:
            async with c.bulk(prompts(2)) as run:
                [o async for o in run]
    assert isinstance(info.value.cause, tt.InsufficientBalanceError)
    assert info.value.__cause__ is info.value.cause


async def test_fail_fast_error_keeps_its_cause(emulator: Emulator) -> None:
    """Fail-fast raises the item's error with its own cause chain intact."""
    emulator.add_fault(Fault(route=PATH_GENERATE, kind="drop", after_accept=True, count=1))
    async with client_for(emulator) as c:
        with pytest.raises(tt.OutcomeUnknownError) as info:
            async with c.bulk(generations(1), fail_fast=True) as run:
                [o async for o in run]
    assert info.value.__cause__ is not None
    assert info.value.__cause__ is info.value.cause


async def test_hook_token_never_leaves_the_request(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook URL (and its token) in ``extra_body`` is sent, but never shown or stored.

    Not in the requests' or outcomes' reprs (a failed job's too), the logs, the sidecars
    or the journal.
    """
    caplog.set_level(logging.DEBUG)
    token = "tok_SECRET_abcdef0123456789"
    hook = {"hookUrl": f"http://127.0.0.1:9/hooks/{token}"}
    reqs = [
        GPT4oRequest(prompt="x", extra_body=hook),
        GPT4oRequest(prompt="[fail] y", extra_body=hook),
    ]
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c, c.bulk(reqs, save_to=out, journal=journal) as run:
        got = [o async for o in run]
    assert sorted(o.state for o in got) == sorted([ItemState.DONE, ItemState.FAILED])
    # It was sent: TTAPI got the hook URL with both jobs.
    assert [j.hook_url for j in emulator.jobs.values()] == [hook["hookUrl"]] * 2
    assert not [r for r in reqs if token in repr(r)]
    assert not [o for o in got if token in repr(o) or token in str(o.error)]
    assert token not in caplog.text
    stored = [*out.iterdir(), *tmp_path.glob("j.sqlite*")]
    assert any(p.suffix == ".json" for p in stored)
    assert not [p.name for p in stored if token.encode() in p.read_bytes()]


async def test_an_on_progress_error_is_logged_and_the_run_goes_on(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A progress callback that raises (a display bug) does not abandon billed work."""
    seen: list[BulkProgress] = []

    def flaky(p: BulkProgress) -> None:
        seen.append(p)
        if len(seen) == 5:
            raise ValueError("bug in my progress bar")

    reqs = prompts(10)
    async with client_for(emulator) as c, c.bulk(reqs, on_progress=flaky) as run:
        got = [o async for o in run]
    assert len(got) == 10
    assert all(o.ok for o in got)
    assert seen[-1].done == 10  # still called after it raised
    errors = [r for r in caplog.records if r.name == "ttapi_async.bulk" and r.exc_info]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ValueError


async def test_gpt_route_items_run_and_resume_on_their_route(
    emulator: Emulator, tmp_path: Path
) -> None:
    """GPTRequest items submit on /openai/gpt/*, and a resumed run waits there (the
    journal's kind says the route); a 4o item beside them stays on its own route."""
    emulator.job_duration = (0.05, 0.1)
    reqs: list[tt.Request] = [
        *(tt.GPTRequest(prompt=f"gpt {i}", aspect_ratio="16:9") for i in range(6)),
        tt.GPT4oRequest(prompt="4o 0"),
    ]
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(reqs, max_jobs=3, journal=journal, save_to=tmp_path) as run:
            async for _ in run:
                break  # leave early: some jobs are submitted and not waited on
    async with client_for(emulator) as c, c.bulk(reqs, max_jobs=3, journal=journal) as run:
        got = [o async for o in run]
    assert len(got) == len(reqs)
    assert all(o.ok for o in got)
    assert emulator.counters.submits_by_prompt == {r.prompt: 1 for r in reqs}
    assert emulator.counters.billed["/openai/gpt/generations"] == 6
    assert emulator.counters.billed["/openai/4o-image/generations"] == 1
    sidecars = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert {s["model"] for s in sidecars if s["kind"] == "gpt"} <= {"gpt-image-2"}
