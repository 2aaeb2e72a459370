"""The end of a bulk item that succeeded: its images saved (if asked), its row ``done``.

Strictly private; the item lifecycles (:mod:`ttapi_async._items`) call
:meth:`Finisher.finish` once a sync call answered or a 4o job ended well.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio

from ._errors import ClientClosedError, ImageUnavailableError, TTAPIError
from ._files import safe_stem
from ._journalstore import ItemState
from ._models import ImagesResponse, JobResult, SavedImage
from ._outcomes import BulkOutcome, Ledger
from ._requests import Request, params
from ._resume import saved_before


__all__ = ["Finisher", "Save"]


class Save(Protocol):
    """Saves a result's images into a folder (``Client.save``), tagging temporary files.

    ``run_id`` (a journal's) names the run's temporary files, so that a resumed run sweeps
    its own leftovers and nobody else's.
    """

    async def __call__(
        self,
        result: ImagesResponse | JobResult,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
        sidecar: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_bytes: int = ...,
        run_id: str | None = None,
    ) -> list[SavedImage]: ...


class Finisher:
    """Saves results into ``folder`` (None: nothing is saved) and records items done.

    Args:
        save: what saves a result's images (the client's).
        ledger: the run's counts and journal.
        folder: ``save_to``.
        sidecar: write each image's JSON sidecar.
        max_bytes: the size cap of one image.
        downloads: bounds the images being saved at once.
        run_id: the journal's run id, tagging temporary files (None: untagged).
    """

    __slots__ = ("_downloads", "_folder", "_ledger", "_max_bytes", "_run_id", "_save", "_sidecar")

    def __init__(
        self,
        save: Save,
        ledger: Ledger,
        *,
        folder: Path | None,
        sidecar: bool,
        max_bytes: int,
        downloads: anyio.CapacityLimiter,
        run_id: str | None,
    ) -> None:
        self._save = save
        self._ledger = ledger
        self._folder = folder
        self._sidecar = sidecar
        self._max_bytes = max_bytes
        self._downloads = downloads
        self._run_id = run_id

    async def finish(
        self,
        index: int,
        request: Request,
        result: ImagesResponse | JobResult,
        start: float,
        job_id: str | None,
        *,
        resumed: bool = False,
        retrying: bool = False,
    ) -> BulkOutcome:
        """Save the result's images (if asked), then record the item done.

        A save that fails ends the item ``failed`` (a 4o job keeps its id: a retry saves
        it without paying again). With ``retrying``, an expired image raises
        :class:`ImageUnavailableError` so the caller can submit a new job instead.
        """
        folder, ledger = self._folder, self._ledger
        files: tuple[SavedImage, ...] = ()
        paths: tuple[Path, ...] = ()
        unfinished: tuple[Path, ...] = ()
        stem = f"{index:05d}-{safe_stem(request.prompt)}"
        if folder is not None and job_id is not None and resumed:
            # Killed after saving but before the journal said so: keep those files
            # rather than saving the same job twice.
            paths, unfinished = await anyio.to_thread.run_sync(
                functools.partial(saved_before, folder, stem, job_id, sidecar=self._sidecar)
            )
        if folder is not None and not paths:
            try:
                async with self._downloads:
                    files = tuple(
                        await self._save(
                            result,
                            folder,
                            stem=stem,
                            sidecar=self._sidecar,
                            metadata=_metadata(index, request, job_id, start),
                            max_bytes=self._max_bytes,
                            run_id=self._run_id,
                        )
                    )
            except ClientClosedError:
                raise
            except (TTAPIError, OSError) as exc:
                if retrying and isinstance(exc, ImageUnavailableError):
                    raise
                # Generated (and billed) but not saved: failed, with the job id kept.
                return await ledger.ended(
                    index, request, ItemState.FAILED, start, exc, job_id=job_id
                )
            except BaseException:
                if job_id is None:
                    # A sync result that was received but not saved: it cannot be fetched
                    # again. (A 4o job stays submitted: a resumed run saves it.)
                    reason = "cancelled before the result was saved"
                    await ledger.write(index, ItemState.FAILED, reason=reason, shield=True)
                raise
        if unfinished and (files or paths):
            # A whole copy exists (kept, or saved again): the one whose sidecar never got
            # written can go.
            for leftover in unfinished:
                leftover.unlink(missing_ok=True)
        paths = paths or tuple(f.path for f in files)
        await ledger.write(index, ItemState.DONE, files=[str(p) for p in paths])
        ledger.done += 1
        return BulkOutcome(
            index=index,
            request=request,
            state=ItemState.DONE,
            result=result,
            job_id=job_id,
            files=files,
            paths=paths,
            elapsed=asyncio.get_running_loop().time() - start,
        )


def _model_of(request: Request) -> str | None:
    """The model that served the request (a job route's default when none was named)."""
    if request.kind == "4o":
        return "gpt-4o-image"
    model = getattr(request, "model", None)
    return model or ("gpt-image-2" if request.kind == "gpt" else None)


def _metadata(index: int, request: Request, job_id: str | None, start: float) -> dict[str, Any]:
    """What a saved image's sidecar records of its item."""
    return {
        "index": index,
        "kind": request.kind,
        "prompt": request.prompt,
        "model": _model_of(request),
        "parameters": params(request),
        "job_id": job_id,
        "seconds_to_result": round(asyncio.get_running_loop().time() - start, 3),
    }
