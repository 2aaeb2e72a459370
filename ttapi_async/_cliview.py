"""What ``ttapi-async batch`` shows: the live bar, one line per outcome, the summaries.

Strictly private. On a terminal a rich live bar runs on stderr and only failures print
lines above it; otherwise every outcome is one tab-separated line on stdout. Whatever is
printed while the bar is live goes through the bar's console, so no line is ever glued
to a half-drawn bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Self

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ._journalstore import ItemState, JournalEntry
from ._redisconn import shown_url


if TYPE_CHECKING:
    from pathlib import Path

    from ._bulk import BulkOutcome, BulkProgress
    from ._clijournal import SharedRun


__all__ = [
    "EXIT_API_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_JOB_FAILED",
    "EXIT_OUTCOME_UNKNOWN",
    "Display",
    "ranges",
]

#: Exit codes: 0 success; 2 bad usage, a parameter rule, a journal that cannot be used, or
#: no emulator to run without a key; 3 an API or network error; 4 a billable request whose
#: outcome is unknown; 5 a 4o-image job that failed; 130 interrupted.
EXIT_API_ERROR = 3
EXIT_OUTCOME_UNKNOWN = 4
EXIT_JOB_FAILED = 5
EXIT_INTERRUPTED = 130


def ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``"0-2, 5, 7-8"``."""
    spans: list[str] = []
    ordered = sorted(set(indexes))
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(spans)


class _Remaining(ProgressColumn):
    """The ETA while the run goes on; once it stops early, why instead of a stale time."""

    def __init__(self) -> None:
        super().__init__()
        self._eta = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        """Render the column for ``task``."""
        ended = task.fields.get("ended")
        if ended:
            return Text(str(ended), style="yellow")
        return self._eta.render(task)


def from_journal(o: BulkOutcome) -> bool:
    """True when an earlier run ended the item and this run only handed it back."""
    return o.resumed and o.result is None and o.error is None


class Display:
    """Shows a batch's progress: a live bar on a terminal, plain lines otherwise."""

    def __init__(
        self, total: int, *, live: bool, console: Console | None = None, shared: bool = False
    ) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.live = live
        # Where an item this process did not run was finished: in a shared run, by another
        # process as much as by an earlier run.
        self._elsewhere = "(another process or an earlier run)" if shared else "(earlier run)"
        self.total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if live:
            self._progress = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[green]{task.fields[done]} done"),
                TextColumn("[red]{task.fields[failed]} failed"),
                TextColumn("[cyan]{task.fields[running]} running"),
                TextColumn("{task.fields[rate]}/s"),
                _Remaining(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(
                "batch", total=total, done=0, failed=0, running=0, rate="0.0", ended=""
            )

    def __enter__(self) -> Self:
        """Start the live bar (on a terminal)."""
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the live bar; its last state stays on screen."""
        if self._progress is not None:
            self._progress.stop()

    def update(self, p: BulkProgress) -> None:
        """Show the run's counts."""
        if self._progress is not None and self._task is not None:
            # Items an earlier run finished are not this run's speed.
            rate = (p.done + p.failed + p.unknown) / p.elapsed if p.elapsed > 0 else 0.0
            self._progress.update(
                self._task,
                completed=p.finished,
                done=p.done + p.skipped,
                failed=p.failed + p.unknown,
                running=p.running,
                rate=f"{rate:.1f}",
            )

    def ended(self, p: BulkProgress, why: str | None) -> None:
        """Show the final counts; ``why`` (stopping, paused) replaces the ETA."""
        self.update(p)
        if self._progress is not None and self._task is not None and why:
            self._progress.update(self._task, ended=why)

    def outcome(self, o: BulkOutcome) -> None:
        """Report one outcome: failures above the bar, or one line on stdout."""
        earlier = from_journal(o)
        if self.live:
            if not o.ok and not earlier:
                self.console.print(f"[red]#{o.index} {o.state.value}[/red]: {o.reason or o.error}")
            return
        if earlier:
            # Not this run's work: said apart, so a script counting "done" lines counts
            # what this run made.
            state = "skipped" if o.ok else o.state.value
            tail = " ".join(str(p) for p in o.paths) if o.ok else (o.reason or "-")
            click.echo(f"{state}\t{o.index}\t{o.job_id or '-'}\t{tail}\t{self._elsewhere}")
            return
        tail = " ".join(str(p) for p in o.paths) if o.ok else (o.reason or str(o.error))
        click.echo(f"{o.state.value}\t{o.index}\t{o.job_id or '-'}\t{tail}")

    def note(self, text: str) -> None:
        """Print a line above the bar (or on stderr)."""
        self.console.print(text)

    def shared_summary(
        self,
        p: BulkProgress,
        out: Path,
        shared: SharedRun,
        rows: Mapping[int, JournalEntry],
        taken_over: int,
        mine: list[int],
        *,
        interrupted: bool,
    ) -> int:
        """The whole shared run's summary (every worker's items), and its exit code."""
        counts = dict.fromkeys(ItemState, 0)
        for row in rows.values():
            counts[row.state] += 1
        table = Table(title=f"shared run {shared.run!r}: every worker's items", show_header=True)
        table.add_column("state")
        table.add_column("whole run", justify="right")
        table.add_column("by this process", justify="right")
        by_me = {
            ItemState.DONE: p.done,
            ItemState.FAILED: p.failed,
            ItemState.OUTCOME_UNKNOWN: p.unknown,
        }
        for state in ItemState:
            table.add_row(state.value, str(counts[state]), str(by_me.get(state, "")))
        table.add_row("taken over from a dead process", "", str(taken_over))
        table.add_row("elapsed", "", f"{p.elapsed:.1f} s")
        self.console.print(table)
        self.console.print(f"images of this process: {out}   journal: {shown_url(shared.url)}")
        click.echo(
            f"this process: {p.done} done, {p.failed} failed, {p.unknown} outcome unknown, "
            f"{taken_over} taken over from stopped processes",
            err=True,
        )
        if mine:
            click.echo(f"items this process ran: {ranges(mine)}", err=True)
        for index, row in sorted(rows.items()):
            if row.state is ItemState.OUTCOME_UNKNOWN:
                line = shared.lines[index] if index < len(shared.lines) else "?"
                click.echo(f"item {index} (line {line}): outcome unknown: {row.reason}", err=True)
        ended = (
            counts[ItemState.DONE] + counts[ItemState.FAILED] + counts[ItemState.OUTCOME_UNKNOWN]
        )
        if interrupted or ended < len(shared.lines):
            return EXIT_INTERRUPTED
        if counts[ItemState.OUTCOME_UNKNOWN]:
            return EXIT_OUTCOME_UNKNOWN
        return EXIT_API_ERROR if counts[ItemState.FAILED] else 0

    def summary(
        self,
        p: BulkProgress,
        out: Path,
        journal: Path | None,
        *,
        paused: bool = False,
        fresh: bool = False,
    ) -> None:
        """The run's table, then what to run next (only advice that can work).

        ``fresh``: the run was started with ``--fresh``, which a rerun must not repeat (it
        would set this run's journal aside and submit everything again).
        """
        table = Table(title="batch summary", show_header=True)
        table.add_column("state")
        table.add_column("items", justify="right")
        for name, count in (
            ("done", p.done),
            ("already done (journal)", p.skipped),
            ("failed", p.failed),
            ("outcome unknown", p.unknown),
            ("still running (wait timed out)", p.timed_out),
            ("not started", max(0, p.total - p.finished) if p.total is not None else 0),
        ):
            table.add_row(name, str(count))
        table.add_row("elapsed", f"{p.elapsed:.1f} s")
        table.add_row("job cap at the end", str(p.jobs_cap))
        self.console.print(table)
        self.console.print(f"images: {out}" + (f"   journal: {journal}" if journal else ""))
        if journal is None:
            return
        # What to run next; the same command resumes where this run stopped.
        again = "the same command again" + (" without --fresh" if fresh else "")
        if p.total is not None and p.finished < p.total:
            if paused:
                self.console.print(
                    f"Put the account right (the error above), then run {again} to resume."
                )
            else:
                self.console.print(f"Run {again} to resume.")
        if p.failed:
            self.console.print("Add --retry-failed to run the failed items again.")
        if p.timed_out:
            self.console.print("Jobs still running at TTAPI are waited on by the next run.")
        if p.unknown:
            self.console.print(
                "Items with an unknown outcome may have been billed; add "
                "--resubmit-unknown to submit them again anyway."
            )
