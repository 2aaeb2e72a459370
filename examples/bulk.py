"""Bulk generation from a script: many 4o-image jobs, webhooks, a journal, saved images.

Run it (no key: it uses the embedded emulator and says so)::

    python examples/bulk.py --out bulk-images --jobs 40

Run it again with the same ``--out`` and it resumes from the journal: finished items are
skipped, jobs already submitted are waited on, nothing is submitted twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import anyio
from _common import free_port, ttapi_client

import ttapi_async as tt


SUBJECTS = ["a lighthouse", "a red fox", "a paper boat", "a bonsai tree", "a koi pond"]
STYLES = ["watercolour", "isometric", "woodcut", "neon noir"]


async def main(out: Path, jobs: int) -> None:
    """Submit ``jobs`` prompts at 16 in flight; callbacks end the jobs, polling backs them up."""
    requests = [
        tt.GPT4oRequest(prompt=f"{SUBJECTS[i % 5]}, {STYLES[i % 4]}, take {i}") for i in range(jobs)
    ]
    port = free_port()
    # On a server this is your public URL; here the emulator calls back over loopback.
    receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}/ttapi/hook")

    shown = -1

    def show(p: tt.BulkProgress) -> None:  # called on every change: print every 10th item
        nonlocal shown
        if p.finished != shown and (p.finished % 10 == 0 or p.finished == p.total):
            shown = p.finished
            print(f"progress: {p.finished}/{p.total} done={p.done} skipped={p.skipped}")

    async with anyio.create_task_group() as tg:
        await tg.start(receiver.serve, "127.0.0.1", port)
        async with ttapi_client(webhook=receiver, requests_per_second=50) as client:
            async with client.bulk(
                requests,
                max_jobs=16,
                save_to=out,
                journal=out / "journal.sqlite",
                on_progress=show,
            ) as outcomes:
                async for o in outcomes:
                    if o.ok:
                        print(f"done #{o.index}: {', '.join(p.name for p in o.paths)}")
                    else:
                        print(f"{o.state.value} #{o.index}: {o.reason or o.error}")
            print("callbacks accepted:", client.waiter.stats.callbacks_accepted)
        tg.cancel_scope.cancel()  # stop the receiver


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("BULK_OUT", "bulk-images")))
    parser.add_argument("--jobs", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.out, args.jobs))
