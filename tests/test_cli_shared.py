"""`ttapi-async batch --journal redis://... --run NAME`: one run shared by real processes.

Each process is a real child running the CLI against the emulator (served by this test in
a thread) and a real redis-server of the test's own; each saves into its own folder.
Counted in each test: every item ends exactly once in the shared journal, no prompt is
submitted twice, and every process's summary and exit code cover the whole run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from helpers import RedisServer

import ttapi_async as tt
from ttapi_async._sharedrun import FINAL_STATES
from ttapi_async.testing import Emulator


LEASE = "2"  # seconds: a dead or stalled process's items are taken over after this


def start(
    cli: list[str], emu: Emulator, url: str, prompts: Path, out: Path, lease: str = LEASE
) -> subprocess.Popen[str]:
    env = {**os.environ, "TTAPI_API_KEY": emu.api_key, "TTAPI_BASE_URL": emu.url}
    return subprocess.Popen(
        [
            *cli,
            "batch",
            str(prompts),
            "--out",
            str(out),
            "--no-progress",
            "--concurrency",
            "4",
            "--journal",
            url,
            "--run",
            "shared-1",
            "--lease",
            LEASE,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def prompts_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.txt"
    # A comment and a blank line: item i is on line i + 3.
    path.write_text("# shared\n\n" + "".join(f"prompt {i}\n" for i in range(n)), encoding="utf-8")
    return path


async def rows(url: str) -> dict[int, tt.JournalEntry]:
    async with tt.RedisJournal.open(url, "shared-1") as journal:
        return dict(await journal.load())


def check_the_whole_run(
    emu: Emulator, url: str, n: int, finished: list[tuple[int, str, str]]
) -> dict[int, tt.JournalEntry]:
    """Every item ended once; no prompt billed twice; every survivor reports the same."""
    table = anyio.run(rows, url)
    assert sorted(table) == list(range(n))
    assert all(row.state in FINAL_STATES for row in table.values())
    billed = emu.counters.submits_by_prompt
    assert max(billed.values()) == 1  # none submitted twice
    for index, row in table.items():
        if row.state is tt.ItemState.DONE:
            assert billed[f"prompt {index}"] == 1
    codes = {code for code, _, _ in finished}
    unknown = sorted(i for i, row in table.items() if row.state is tt.ItemState.OUTCOME_UNKNOWN)
    assert codes == ({4} if unknown else {0})
    for _, _, err in finished:
        # Each item that ended outcome-unknown is named, with its line in the file.
        named = sorted(int(m) for m in re.findall(r"item (\d+) \(line \d+\): outcome unknown", err))
        assert named == unknown
        for index in unknown:
            assert f"item {index} (line {index + 3}): outcome unknown" in err
    return table


@pytest.mark.timeout(120)
def test_three_processes_share_a_run_and_take_over_a_killed_one(
    cli: list[str], emu: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    emu.job_duration = (0.3, 0.6)
    n = 40
    prompts = prompts_file(tmp_path, n)
    procs = [start(cli, emu, redis_server.url, prompts, tmp_path / f"out{i}") for i in range(3)]
    victim = procs[0]
    assert victim.stdout is not None
    # Once it has finished an item of its own, it holds others. (Items other processes
    # finished print as "skipped" lines, which may come first.)
    first = victim.stdout.readline()
    while first.startswith("skipped\t"):
        first = victim.stdout.readline()
    assert first.startswith("done\t")
    victim.kill()
    victim.wait()
    # What it printed before the kill (the pipe may hold more than the first line).
    victim_done = 1 + sum(line.startswith("done\t") for line in victim.stdout.read().splitlines())
    finished = []
    for proc in procs[1:]:
        out, err = proc.communicate(timeout=90)
        finished.append((proc.returncode, out, err))
    table = check_the_whole_run(emu, redis_server.url, n, finished)
    taken = sum(int(m) for _, _, err in finished for m in re.findall(r"(\d+) taken over", err))
    assert taken >= 1  # the killed process's claims lapsed and were taken over
    # Each survivor names what it did itself; with what the victim did, that is all.
    did = sum(
        int(m) for _, _, err in finished for m in re.findall(r"this process: (\d+) done", err)
    )
    done = sum(1 for row in table.values() if row.state is tt.ItemState.DONE)
    # (An item it saved may have been killed before its line was printed: at most its
    # four job slots.)
    assert victim_done <= done - did <= victim_done + 4, (done, did, victim_done)


@pytest.mark.timeout(120)
def test_a_process_stalled_past_its_lease_never_sends_for_what_it_lost(
    cli: list[str], emu: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    emu.job_duration = (0.3, 0.6)
    n = 24
    prompts = prompts_file(tmp_path, n)
    stalled = start(cli, emu, redis_server.url, prompts, tmp_path / "stalled")
    assert stalled.stdout is not None
    assert stalled.stdout.readline().startswith("done\t")
    stalled.send_signal(signal.SIGSTOP)  # paused, with claims in hand
    before = sum(emu.counters.submits_by_prompt.values())
    other = start(cli, emu, redis_server.url, prompts, tmp_path / "other")
    out, err = other.communicate(timeout=90)  # ends the whole run, taking over the claims
    assert sum(emu.counters.submits_by_prompt.values()) >= before
    submitted = dict(emu.counters.submits_by_prompt)
    stalled.send_signal(signal.SIGCONT)
    s_out, s_err = stalled.communicate(timeout=60)
    # Woken past its lease, it sent nothing more: every write of the items it lost is
    # refused (fenced), so their submits never went out.
    assert dict(emu.counters.submits_by_prompt) == submitted
    check_the_whole_run(
        emu, redis_server.url, n, [(other.returncode, out, err), (stalled.returncode, s_out, s_err)]
    )
    assert re.search(r"[1-9]\d* taken over", err)


@pytest.mark.timeout(120)
def test_sigterm_finishes_in_flight_work_and_lets_go_of_the_claims(
    cli: list[str], emu: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A deploy stops a process: it finishes what it sent and releases its claims, so
    the next process takes its items at once instead of waiting out a 60 s lease."""
    emu.job_duration = (0.3, 0.6)
    n = 16
    prompts = prompts_file(tmp_path, n)
    first = start(cli, emu, redis_server.url, prompts, tmp_path / "first", lease="60")
    assert first.stdout is not None
    assert first.stdout.readline().startswith("done\t")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    started = time.monotonic()
    second = start(cli, emu, redis_server.url, prompts, tmp_path / "second", lease="60")
    out, err2 = second.communicate(timeout=60)
    assert time.monotonic() - started < 30  # well under the 60 s lease
    check_the_whole_run(emu, redis_server.url, n, [(second.returncode, out, err2)])
    assert re.search(r"items this process ran: \d", err2)


def test_a_shared_run_of_other_inputs_is_a_usage_error(
    cli: list[str], emu: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The run name holds another input's rows: exit 2, the journal named, no rerun advice
    (it exited 0 with a summary of the other input's run)."""
    first = start(cli, emu, redis_server.url, prompts_file(tmp_path, 2), tmp_path / "a")
    assert first.wait(timeout=60) == 0
    other = tmp_path / "other.txt"
    other.write_text("an owl\na cat\n", encoding="utf-8")
    proc = start(cli, emu, redis_server.url, other, tmp_path / "b")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "written for a different input" in err
    assert "same command" not in err + out
