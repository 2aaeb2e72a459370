"""A backend run as several worker processes that share TTAPI callbacks through Redis.

TTAPI posts each job's callback to one public hook URL, so it lands on whichever worker
the balancer (here the kernel, sharing uvicorn's socket) picks. With a ``RedisBroker``
any worker accepts it and the worker awaiting the job wakes within milliseconds; any
worker can also answer for any job. Run it from the repository's root::

    TTAPI_API_KEY=... TTAPI_REDIS_URL=redis://127.0.0.1:6379/0 \\
    TTAPI_HOOK_URL=https://api.example.com/ttapi/hook \\
    uvicorn examples.multiworker_backend:app --workers 4 --host 127.0.0.1 --port 8000

Configured by the environment only: ``TTAPI_API_KEY``, ``TTAPI_BASE_URL`` (optional),
``TTAPI_REDIS_URL``, ``TTAPI_HOOK_URL`` (the public URL of the hook route; its path is
where the route is mounted), ``TTAPI_WAIT_TIMEOUT`` (seconds ``/generate`` waits, 600).

Routes:

* ``POST /generate {"prompt": ...}``: submit, wait, then 200 ``{"job_id", "status":
  "SUCCESS", "image_url"}``, 502 ``{"job_id", "status": "FAILED", "error"}``, or 504
  ``{"job_id", "status": "ON_QUEUE"}`` when the wait runs out.
* ``POST /submit {"prompt": ...}``: 202 ``{"job_id"}`` at once.
* ``GET /jobs/{job_id}?wait=SECONDS`` (0 to 120, default 0), on any worker: as
  ``/generate``, or 202 ``{"job_id", "status": "ON_QUEUE"}`` while it runs, or 404 for a
  job the fleet never submitted (or has forgotten).

Each answer carries the worker's pid in ``X-Worker-PID``. On SIGTERM uvicorn stops
taking requests, lets those in flight finish (``--timeout-graceful-shutdown``), then the
client closes. It refuses to start without ``TTAPI_API_KEY`` or ``TTAPI_REDIS_URL``: an
embedded emulator per worker would make four separate fleets.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import ttapi_async as tt


log = logging.getLogger("multiworker_backend")

HOOK_URL = os.environ.get("TTAPI_HOOK_URL", "http://127.0.0.1:8000/ttapi/hook")
WAIT_TIMEOUT = float(os.environ.get("TTAPI_WAIT_TIMEOUT", "600"))
PID = str(os.getpid())


class Prompt(BaseModel):
    """The body of ``POST /generate`` and ``POST /submit``."""

    prompt: str


def _settings() -> tuple[str, str]:
    """The API key and the Redis URL, or a clear refusal to start."""
    missing = [name for name in ("TTAPI_API_KEY", "TTAPI_REDIS_URL") if not os.environ.get(name)]
    if missing:
        msg = (
            f"multiworker_backend: set {' and '.join(missing)}. Several workers share one "
            "fleet through Redis; an embedded emulator per worker would make separate fleets."
        )
        raise RuntimeError(msg)
    return os.environ["TTAPI_API_KEY"], os.environ["TTAPI_REDIS_URL"]


receiver = tt.WebhookReceiver(HOOK_URL)
state: dict[str, tt.Client] = {}


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """One client per worker, open for the worker's lifetime."""
    key, redis_url = _settings()
    client = tt.Client(key, webhook=receiver, broker=tt.RedisBroker(redis_url))
    async with client:
        state["client"] = client
        yield


app = FastAPI(lifespan=lifespan)
app.mount(urlsplit(HOOK_URL).path.rstrip("/") or "/", receiver.asgi_app)


def _answer(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"X-Worker-PID": PID})


async def _outcome(job_id: str, wait: float) -> JSONResponse:
    """The job's answer after waiting up to ``wait`` seconds for it."""
    try:
        result = await state["client"].waiter.wait(job_id, timeout=wait)
    except tt.JobTimeoutError:
        return _answer(202, {"job_id": job_id, "status": "ON_QUEUE"})
    except tt.JobFailedError as exc:
        return _answer(502, {"job_id": job_id, "status": "FAILED", "error": exc.reason})
    except tt.ValidationError:  # not even a job id: never submitted
        return _answer(404, {"job_id": job_id, "error": "no such job in this fleet"})
    except tt.ClientClosedError:  # the worker is shutting down
        return _answer(503, {"job_id": job_id, "error": "shutting down; ask again"})
    return _answer(200, {"job_id": job_id, "status": "SUCCESS", "image_url": result.image_url})


async def _submit(prompt: str) -> tt.Job | JSONResponse:
    try:
        return await state["client"].gpt4o.submit(prompt=prompt)
    except tt.ValidationError as exc:
        return _answer(400, {"error": str(exc)})
    except tt.TTAPIError as exc:  # refused by TTAPI, or unreachable: not this app's fault
        return _answer(502, {"error": str(exc)})


@app.post("/generate")
async def generate(body: Prompt) -> JSONResponse:
    """Submit a job and answer once it ends (or after ``TTAPI_WAIT_TIMEOUT``)."""
    job = await _submit(body.prompt)
    if isinstance(job, JSONResponse):
        return job
    answer = await _outcome(job.job_id, WAIT_TIMEOUT)
    if answer.status_code == 202:  # noqa: PLR2004 - the wait ran out
        return _answer(504, {"job_id": job.job_id, "status": "ON_QUEUE"})
    return answer


@app.post("/submit")
async def submit(body: Prompt) -> JSONResponse:
    """Submit a job and answer its id at once."""
    job = await _submit(body.prompt)
    if isinstance(job, JSONResponse):
        return job
    return _answer(202, {"job_id": job.job_id})


@app.get("/jobs/{job_id}")
async def job_status(
    job_id: str, request: Request, wait: Annotated[float, Query(ge=0, le=120)] = 0
) -> JSONResponse:
    """Any worker answers for any job of the fleet, waiting up to ``wait`` seconds."""
    broker = state["client"].broker
    assert broker is not None  # noqa: S101 - made with one in lifespan
    try:
        found, record = await broker.lookup(job_id)
    except tt.BrokerError:
        found = record = None  # Redis is away: the wait below polls TTAPI instead
        log.warning("Redis unreachable; answering %s by polling", request.url.path)
    else:
        if found is None and record is None:
            return _answer(404, {"job_id": job_id, "error": "no such job in this fleet"})
    return await _outcome(job_id, wait)
