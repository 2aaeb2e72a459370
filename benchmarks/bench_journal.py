"""The bulk journal's cost per operation: 10,000 items through pending -> done.

Run: ``python benchmarks/bench_journal.py``. Each item takes the four writes a 4o item of a
bulk run makes (``add_pending``, ``mark_submitting``, ``mark_submitted``, ``mark_done``),
each its own SQLite transaction (WAL, ``synchronous=NORMAL``), on a file in a temporary
folder of the local disk; three rounds. Wall time per operation is CPU plus the write
system calls (no fsync at this durability level).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ttapi_async import Journal


N = 10_000
OPS = ("add_pending", "mark_submitting", "mark_submitted", "mark_done")


def one_round() -> dict[str, float]:
    """Seconds spent in each operation over N items."""
    spent = dict.fromkeys(OPS, 0.0)
    clock = time.perf_counter
    with tempfile.TemporaryDirectory() as folder, Journal.open(Path(folder) / "j.db") as j:
        for i in range(N):
            a = clock()
            j.add_pending(i, f"{i:064x}", "4o", "a prompt excerpt for the report")
            b = clock()
            j.mark_submitting(i)
            c = clock()
            j.mark_submitted(i, f"job-{i}", hooked=False)
            d = clock()
            j.mark_done(i, [f"/out/{i}-0.png"])
            e = clock()
            spent["add_pending"] += b - a
            spent["mark_submitting"] += c - b
            spent["mark_submitted"] += d - c
            spent["mark_done"] += e - d
    return spent


def main() -> None:
    """Print µs per operation and per item for three rounds."""
    for n in range(3):
        spent = one_round()
        per_op = ", ".join(f"{op} {spent[op] / N * 1e6:.1f} µs" for op in OPS)
        print(f"round {n + 1}: {per_op}; per item {sum(spent.values()) / N * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
