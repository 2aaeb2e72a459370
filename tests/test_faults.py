"""The small fault matrix in CI: every fault x every mode loses nothing, doubles nothing and
hands no input another job's image.

The matrix is ``benchmarks/faults.py --small`` itself (run once per module, about 10 s):
each cell is a fresh emulator with one fault, 8 inputs, and a client in one mode (polling,
webhook, bulk with a journal). Its counts come from the emulator's ledger and job records
and from the files on disk, never from the SDK's counters; see that script for the columns.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import anyio
import pytest


# The matrix lives with the benchmarks (a script, not a package): it is run here, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import faults


CELLS = [
    (s.name, mode)
    for s in faults.SCENARIOS
    for mode in faults.MODES
    if not (s.hooked_only and mode == "polling")
]


@pytest.fixture(scope="module")
def matrix() -> dict[tuple[str, str], faults.Cell]:
    """Run the small matrix once for the whole module.

    Once per process: under pytest-xdist, ``--dist loadfile`` (pyproject) keeps this
    module's tests on one worker, so it runs once there too.
    """
    cells = anyio.run(functools.partial(faults.run_matrix, faults.SMALL))
    return {(c.scenario, c.mode): c for c in cells}


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("scenario", "mode"), CELLS)
def test_cell_loses_nothing(
    matrix: dict[tuple[str, str], faults.Cell], scenario: str, mode: str
) -> None:
    """0 lost, 0 double-submitted, 0 wrong results; every input ends once, honestly."""
    cell = matrix[scenario, mode]
    row = cell.row()
    assert cell.lost == 0, row
    assert cell.double_submitted == 0, row
    assert cell.wrong == 0, row
    assert cell.resolved_once == cell.inputs, row
    # A job the server took whose id the client never learned must end its input as
    # outcome_unknown (reported), not as a result or a plain failure.
    assert cell.accepted_unknown <= cell.unknown, row
    assert not any(note.startswith("ESCAPED") for note in cell.notes), row
    if scenario != "none":
        assert cell.fired > 0, f"the fault never fired: {row}"


def test_matrix_covers_every_fault_and_mode() -> None:
    """The CI matrix is the whole table: every fault of the list, each mode it applies to."""
    names = [s.name for s in faults.SCENARIOS]
    for fault in (
        "429 burst, Retry-After",
        "429 burst, no Retry-After",
        "499 queue full",
        "502 HTML page",
        "500 JSON, after accept",
        "drop before accept",
        "drop after accept",
        "truncated JSON",
        "hanging submit",
        "fetch of another job",
        "expired image URLs",
        "callbacks lost",
        "callbacks duplicated",
        "callbacks early",
        "callbacks forged",
        "callbacks cross-job",
    ):
        assert fault in names
    assert faults.MODES == ("polling", "webhook", "bulk")
    assert len(CELLS) == 3 * len(names) - sum(s.hooked_only for s in faults.SCENARIOS)
