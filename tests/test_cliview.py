"""What a batch shows: the live bar's last frame, outcome lines, the summary's advice.

The live bar draws into a rich console over a StringIO that says it is a terminal, so
what a user's terminal would receive is read back as text.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from ttapi_async import BulkOutcome, BulkProgress, GPT4oRequest, ItemState
from ttapi_async._cliview import Display, from_journal, ranges


def progress(**kw: float) -> BulkProgress:
    counts: dict[str, float | bool | None] = {
        "paused": False,
        "total": 10,
        "submitted": 0,
        "running": 0,
        "done": 0,
        "failed": 0,
        "unknown": 0,
        "timed_out": 0,
        "skipped": 0,
        "jobs_cap": 32,
        "elapsed": 1.0,
    }
    counts.update(kw)
    return BulkProgress(**counts)  # type: ignore[arg-type]


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=140, color_system=None), buffer


def last_frame(text: str) -> str:
    """The last line a terminal shows: control sequences (cursor moves) taken out."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [line for line in re.split(r"[\r\n]", plain) if line.strip()][-1]


def test_item_ranges_are_compact() -> None:
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert ranges([9, 3, 4, 2]) == "2-4, 9"
    assert ranges([3]) == "3"


def test_an_interrupted_bar_ends_without_an_eta() -> None:
    """After Ctrl-C the bar's last frame says why it stopped, not a stale time left."""
    console, buffer = terminal()
    with Display(10, live=True, console=console) as display:
        display.update(progress(done=3, running=4, elapsed=3.0))
        display.ended(progress(done=5, running=0, elapsed=5.0), "interrupted")
    last = last_frame(buffer.getvalue())
    assert "interrupted" in last
    assert "5/10" in last
    assert "0 running" in last
    assert not re.search(r"\d:\d\d:\d\d", last), last  # no ETA left on screen


def test_a_finished_bar_keeps_its_columns() -> None:
    console, buffer = terminal()
    with Display(10, live=True, console=console) as display:
        display.ended(progress(done=10, elapsed=2.0), None)
    last = last_frame(buffer.getvalue())
    assert "10/10" in last
    assert "interrupted" not in last


def outcome(*, state: ItemState, resumed: bool, **kw: object) -> BulkOutcome:
    return BulkOutcome(
        index=4,
        request=GPT4oRequest(prompt="a fox"),
        state=state,
        resumed=resumed,
        **kw,  # type: ignore[arg-type]
    )


def test_items_done_by_an_earlier_run_are_not_reported_as_new_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = Display(10, live=False, console=terminal()[0])
    earlier = outcome(state=ItemState.DONE, resumed=True, paths=(Path("a.png"),), job_id="j1")
    assert from_journal(earlier)
    display.outcome(earlier)
    fresh = outcome(state=ItemState.DONE, resumed=False, paths=(Path("b.png"),), job_id="j2")
    display.outcome(fresh)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["skipped", "4", "j1", "a.png", "(earlier run)"]
    assert lines[1].split("\t") == ["done", "4", "j2", "b.png"]


def test_a_job_waited_on_after_a_resume_is_this_runs_work() -> None:
    """A job submitted earlier and waited on now: resumed, but not handed back as it was."""
    from ttapi_async import JobResult  # noqa: PLC0415

    result = JobResult(job_id="j", image_url="https://cdn.example/j.png", elapsed=1.0)
    waited = outcome(state=ItemState.DONE, resumed=True, result=result)
    assert not from_journal(waited)


def test_the_summary_after_an_account_pause_says_to_fix_the_account_first() -> None:
    console, buffer = terminal()
    display = Display(10, live=False, console=console)
    display.summary(progress(done=2), Path("out"), Path("j.sqlite"), paused=True)
    text = buffer.getvalue()
    assert "Put the account right" in text
    console, buffer = terminal()
    Display(10, live=False, console=console).summary(progress(done=2), Path("out"), None)
    assert "same command" not in buffer.getvalue()  # no journal: a rerun cannot resume


def test_after_a_fresh_run_the_advice_is_to_rerun_without_fresh() -> None:
    """Rerunning with --fresh would set this run's journal aside and submit it all again."""
    console, buffer = terminal()
    Display(10, live=False, console=console).summary(
        progress(done=2), Path("out"), Path("j.sqlite"), fresh=True
    )
    assert "Run the same command again without --fresh to resume." in buffer.getvalue()


def test_in_a_shared_run_a_skipped_item_may_be_another_processs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = Display(10, live=False, console=terminal()[0], shared=True)
    display.outcome(outcome(state=ItemState.DONE, resumed=True, paths=(Path("a.png"),)))
    line = capsys.readouterr().out.rstrip("\n").split("\t")
    assert line[0] == "skipped"
    assert line[-1] == "(another process or an earlier run)"
