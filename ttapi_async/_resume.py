"""Resuming a bulk run from its journal: where each item starts, and what is on disk.

Strictly private. :func:`resume_point` reads an item's journal row (through the
:class:`~ttapi_async._journalstore.JournalStore` protocol) and says where it starts: hand
back what an earlier run finished, wait again on a submitted job, or start afresh.
:func:`sweep_parts` and :func:`saved_before` look at the output folder an earlier run of
the same journal may have left half-written (a kill between two steps).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Final

import attrs

from ._files import part_prefix
from ._journalstore import ItemState, JournalStore
from ._outcomes import BulkOutcome
from ._requests import GPT4oRequest, GPTRequest, Request, fingerprint, label


__all__ = ["FRESH", "Start", "resume_point", "saved_before", "sweep_parts"]

#: Journal states a resumed run hands back as they are (unless asked to retry them).
_FINISHED: Final = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.OUTCOME_UNKNOWN})


@attrs.frozen
class Start:
    """Where an item starts.

    Attributes:
        job_id: a 4o job an earlier run submitted, to wait on (None: send the request).
        retrying: that job failed before (its image was not saved, say): if it cannot be
            saved now, a new job is submitted, as ``retry_failed`` asked.
    """

    job_id: str | None = None
    retrying: bool = False


#: An item with nothing to resume.
FRESH: Final = Start()


async def resume_point(
    journal: JournalStore | None,
    index: int,
    request: Request,
    *,
    retry_failed: bool,
    resubmit_unknown: bool,
) -> Start | BulkOutcome:
    """Where input ``index`` starts, or its outcome from an earlier run (handed back as is).

    Without a journal every item starts afresh. With one, finished items are handed back
    as they were (unless asked to retry them) and submitted jobs are waited on.
    """
    if journal is None:
        return FRESH
    entry = await journal.begin(index, fingerprint(request), request.kind, label(request))
    state = entry.state
    retrying = (state is ItemState.FAILED and retry_failed) or (
        state is ItemState.OUTCOME_UNKNOWN and resubmit_unknown
    )
    if state in _FINISHED and not retrying:
        return BulkOutcome(
            index=index,
            request=request,
            state=state,
            job_id=entry.job_id,
            paths=tuple(Path(f) for f in entry.files),
            resumed=True,
            reason=entry.reason,
        )
    if state is ItemState.SUBMITTED and entry.job_id:
        return Start(entry.job_id)
    if (
        state is ItemState.FAILED
        and entry.job_id
        and isinstance(request, GPT4oRequest | GPTRequest)
    ):
        # A job that may have succeeded (its image was not saved): look again before
        # paying for a new one.
        return Start(entry.job_id, retrying=True)
    if state is not ItemState.PENDING:
        await journal.transition(index, ItemState.PENDING)
    return FRESH


def sweep_parts(folder: Path, run_id: str) -> None:
    """Remove the temporary files an earlier (killed) run of journal ``run_id`` left.

    Only ``.part-<run id>-*``: a ``client.save()`` streaming into the same folder, or a
    run of another journal, names its files otherwise. Best effort: a leftover that
    cannot be removed is only clutter.
    """
    for part in folder.glob(f"{part_prefix(run_id)}*"):
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


def saved_before(
    folder: Path, stem: str, job_id: str, *, sidecar: bool
) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Images an earlier run of this journal saved under the item's ``stem``: (kept, unfinished).

    The stem (input index + prompt slug and hash) is the item's own and the journal's lock
    says no other run is saving here, so an image under it came from this item. Without
    sidecars, every such image is kept. With them, an image whose sidecar names the job is
    kept; an image with no sidecar is *unfinished* (the process died between placing it and
    writing its sidecar, or an earlier run saved without sidecars): the caller saves the
    job again and removes it only once that worked, so no image is doubled nor lost.
    """
    images = sorted(p for p in folder.glob(f"{stem}-*") if p.suffix != ".json" and p.is_file())
    if not sidecar:
        return tuple(images), ()
    kept, unfinished = [], []
    for image in images:
        side = image.with_name(image.name + ".json")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except FileNotFoundError:
            unfinished.append(image)
            continue
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("job_id") == job_id:
            kept.append(image)
    return tuple(kept), tuple(unfinished)
