"""The end of a bulk item (``ttapi_async._finish``): saving its images, recording it done.

Saves that fail, a caller who leaves while results are being saved, and the journal's
run id on the temporary files of a run's saves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from bulk_helpers import (
    Serve,
    a_png,
    billed,
    client_for,
    gated_images,
    generations,
    journal_states,
    prompts,
)

import ttapi_async as tt
from ttapi_async import (
    Client,
    GPT4oRequest,
    ItemState,
)
from ttapi_async._protocol import PATH_GENERATE
from ttapi_async._saver import Saver
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


async def test_os_errors_while_saving_fail_the_items_and_the_run_goes_on(
    emulator: Emulator, tmp_path: Path
) -> None:
    """``save_to`` lies under a regular file, so every save fails with an OSError.

    Each item ends FAILED with that error (4o jobs keep their job id), the run hands back
    every outcome and ends normally, and once the folder can be made a retry saves the 4o
    images without paying for new jobs.
    """
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    out = blocker / "out"
    reqs: list[tt.Request] = [*generations(3), *prompts(3)]
    journal = tmp_path / "j.sqlite"
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, max_jobs=6) as run:
            got = {o.index: o async for o in run}
    assert sorted(got) == list(range(6))
    assert all(o.state is ItemState.FAILED for o in got.values())
    assert all(isinstance(o.error, OSError) for o in got.values())
    assert all(got[i].job_id for i in range(3, 6))
    states, recovered = journal_states(journal)
    assert recovered == 0
    assert set(states.values()) == {ItemState.FAILED}
    assert billed(emulator) == 6

    blocker.unlink()
    async with client_for(emulator) as c:
        async with c.bulk(reqs, save_to=out, journal=journal, retry_failed=True) as run:
            again = {o.index: o async for o in run}
    assert all(o.ok for o in again.values()), [o.error for o in again.values()]
    assert [again[i].job_id for i in range(3, 6)] == [got[i].job_id for i in range(3, 6)]
    # Sync results cannot be fetched again: those three are new calls; the jobs are not.
    assert emulator.counters.submits_by_prompt == {
        **{f"g {i}": 2 for i in range(3)},
        **{f"p {i}": 1 for i in range(3)},
    }


async def test_leaving_while_saving_leaves_no_item_submitting(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller leaves while every result is being saved (the disk hangs).

    A sync result received but not saved cannot be fetched again: FAILED, not left in
    ``submitting`` (which a reopened journal would turn into ``outcome_unknown``). A 4o
    job stays submitted, and a resumed run saves it without paying again.
    """
    reqs: list[tt.Request] = [*generations(3), GPT4oRequest(prompt="p 0")]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    saving = 0
    async with client_for(emulator) as c:
        with anyio.CancelScope() as leave:

            async def hanging_save(*args: Any, **kwargs: Any) -> Any:
                nonlocal saving
                saving += 1
                if saving == len(reqs):
                    leave.cancel()  # every item is saving now: the caller gives up
                await anyio.sleep_forever()

            # A bulk run saves through the client's Saver (with its run id), not c.save;
            # patched on the class, so only for this first run.
            with monkeypatch.context() as patch:
                patch.setattr(Saver, "save_for_run", hanging_save)
                async with c.bulk(reqs, save_to=out, journal=journal) as run:
                    async for _ in run:
                        pass
        assert leave.cancelled_caught
    assert saving == len(reqs)
    states, recovered = journal_states(journal)
    assert recovered == 0
    assert states == {
        0: ItemState.FAILED,
        1: ItemState.FAILED,
        2: ItemState.FAILED,
        3: ItemState.SUBMITTED,
    }
    async with client_for(emulator) as c, c.bulk(reqs, save_to=out, journal=journal) as run:
        resumed = {o.index: o async for o in run}
    assert all(resumed[i].resumed and resumed[i].state is ItemState.FAILED for i in range(3))
    assert resumed[3].ok
    assert len(resumed[3].files) == 1
    assert emulator.counters.submits_by_prompt["p 0"] == 1


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "no-journal"])
async def test_a_runs_temporary_files_carry_its_journals_run_id(
    serve: Serve, tmp_path: Path, journaled: bool
) -> None:
    """While a run's image streams, its ``.part-`` file is named with the run id.

    That is what lets a resumed run (a new process) find it after a crash; a run
    without a journal has no resume and names its files like any other save.
    """
    started, release = anyio.Event(), anyio.Event()
    app = web.Application()
    base = ""

    async def generate(_: web.Request) -> web.Response:
        return web.json_response({"created": 1, "data": [{"url": base + "/gated.png"}]})

    app.router.add_post(PATH_GENERATE, generate)
    body = a_png()
    base = await serve(gated_images(body, started, release, app))
    out = tmp_path / "out"
    journal = tmp_path / "j.sqlite" if journaled else None
    seen: list[str] = []
    async with Client("test-key-123", base_url=base, timeout=30) as c:
        async with c.bulk(generations(1), save_to=out, journal=journal) as run:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await started.wait()
                    seen.extend(p.name for p in out.iterdir())
                    release.set()

                tg.start_soon(watch)
                got = [o async for o in run]
            run_id = run.journal.run_id if run.journal is not None else None
    assert [o.state for o in got] == [ItemState.DONE]
    assert len(seen) == 1
    if journaled:
        assert run_id is not None
        assert seen[0].startswith(f".part-{run_id}-")
    else:
        assert re.fullmatch(r"\.part-[a-z0-9_]{8}", seen[0]), seen
    assert got[0].paths[0].read_bytes() == body
    assert not list(out.glob(".part-*"))
