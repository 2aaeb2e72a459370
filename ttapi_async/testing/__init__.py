"""A local TTAPI for tests, benchmarks, examples and a demo without a key.

:class:`Emulator` is a real aiohttp server on 127.0.0.1 that answers like
``api.ttapi.io``: the OpenAI-compatible ``/v1/images/generations`` and ``/v1/images/edits``,
the legacy DALL-E 3 route, and 4o-image jobs with ``hookUrl`` callbacks. It checks what
it receives with its own rule table, written from the wire references (not the client's,
so the two are compared rather than trusted), returns real PNG/JPEG/WebP bytes of the
asked size, bills a balance, caps work in flight, and injects faults on demand::

    from ttapi_async.testing import Emulator, Fault

    async with Emulator(job_duration=0.1, seed=1) as emu:
        emu.add_fault(Fault(route="/openai/4o-image/generations", status=502, count=1))
        # point any client at emu.url with emu.api_key ...
        assert emu.counters.billed["/openai/4o-image/generations"] <= 1

Faults (:class:`Fault` per request, :class:`CallbackFaults` per hook URL) are described in
``docs/faults.md`` with the matrix ``benchmarks/faults.py`` generates from them.
:attr:`Emulator.charges` is the server's own ledger of every billed call, and
:func:`job_of_image` reads the job id a served 4o image carries.

:func:`fast_waits` (or :func:`set_fast_waits`) makes clients created without their own
``poll_policy=`` or ``retry=`` poll every few hundredths of a second and retry almost at
once, as the emulator's quick jobs allow (like ``stamina.set_testing``).

Prompt markers: ``[moderation]`` makes ``/v1`` refuse the prompt (400 moderation), and
``[fail]`` makes a 4o job end FAILED. Run it standalone with
``python -m ttapi_async.testing --port 8080``. Needs Pillow:
``pip install 'ttapi-async[testing]'``.
"""

from __future__ import annotations

from ._billing import Charge
from ._counters import Counters
from ._emulator import Emulator
from ._fast import FAST_POLL_POLICY, fast_waits, fast_waits_enabled, set_fast_waits
from ._faults import CallbackFaults, Fault
from ._jobs import EmulatedJob, job_of_image


__all__ = [
    "FAST_POLL_POLICY",
    "CallbackFaults",
    "Charge",
    "Counters",
    "EmulatedJob",
    "Emulator",
    "Fault",
    "fast_waits",
    "fast_waits_enabled",
    "job_of_image",
    "set_fast_waits",
]
