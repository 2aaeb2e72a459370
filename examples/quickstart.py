"""Quickstart: one image of each kind, saved into ./images.

Runs against TTAPI when ``TTAPI_API_KEY`` is set; otherwise it starts the embedded emulator,
so it works on any machine::

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import ttapi_async as tt
from ttapi_async.testing import Emulator


OUT = Path(os.environ.get("QUICKSTART_OUT", "images"))


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[tt.Client]:
    """A client for TTAPI, or for a local emulator when there is no key."""
    if os.environ.get("TTAPI_API_KEY"):
        async with tt.Client() as c:
            yield c
        return
    async with Emulator(job_duration=0.5) as emu:
        print(f"No TTAPI_API_KEY: using the emulator at {emu.url}")
        async with tt.Client(emu.api_key, base_url=emu.url) as c:
            yield c


async def main() -> None:
    """Generate, edit, use the legacy DALL-E 3 route and run a 4o-image job."""
    async with client() as c:
        # 1. gpt-image-1: base64 images plus token usage.
        r = await c.images.generate(
            prompt="a red fox in fresh snow, watercolour", model="gpt-image-1", quality="low"
        )
        print("generate:", await c.save(r, OUT, stem="fox"), "tokens:", r.usage)

        # 2. Edit the fox: paths, bytes and open files are all accepted.
        fox = (OUT / "fox-0.png").read_bytes()
        edited = await c.images.edit(image=fox, prompt="add a red scarf", model="gpt-image-1")
        print("edit:", await c.save(edited, OUT, stem="fox-scarf"))

        # 3. DALL-E 3 on TTAPI's legacy route: a URL that expires in about an hour.
        d3 = await c.dalle3.generate(prompt="a lighthouse at dawn", size="1792x1024")
        print("dalle3:", await c.save(d3, OUT, stem="lighthouse"))

        # 4. A 4o-image job: submit, then fetch until it ends.
        job = await c.gpt4o.submit(prompt="draw a cat astronaut, flat illustration")
        snap = await job.fetch()
        while not snap.is_terminal:
            await asyncio.sleep(1.0)
            snap = await job.fetch()
        if snap.succeeded:
            print("4o-image:", await c.save(snap, OUT, stem="cat"))
        else:
            print("4o-image failed:", snap.message)

        # Bad input never leaves the machine: a typed error names the parameter.
        try:
            await c.images.generate(prompt="x", model="dall-e-3", n=4)
        except tt.ValidationError as exc:
            print("refused before sending:", exc)


if __name__ == "__main__":
    asyncio.run(main())
