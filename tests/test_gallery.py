"""examples/gallery, end to end: its one command against the emulator, in headless Chromium.

The app runs as users run it (``python -m examples.gallery``, from the repository's
root, without a key), with the suite's fast waits turned on in the child first (as the
``cli`` fixture does), on a free port. The page is driven by Playwright in Debian's
chromium (``executable_path``: no browser download). What the page shows is read from the
page: the statuses as they were added to it (a MutationObserver records each one's
arrival), the image as the browser decoded it, and its bytes as the browser loaded them.
"""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from helpers import require_binary
from PIL import Image

from ttapi_async.testing import job_of_image


try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:
    if os.environ.get("TTAPI_REQUIRE_SERVICES") == "1":
        raise  # in CI a missing service must never hide a test (tests/helpers.py)
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)


pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
# Without the background-networking flags chromium reaches out at start and, with no
# network, its connections are refused; no sandbox: it runs as whatever user CI is.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a poll to see the job ON_QUEUE (fast waits poll every few hundredths
# of a second), short enough for a quick test.
JOB_SECONDS = "0.8"
# The gallery's command, after turning on fast waits in the child (it inherits nothing).
COMMAND = (
    "from ttapi_async.testing import set_fast_waits; set_fast_waits(True); "
    "import runpy; runpy.run_module('examples.gallery', run_name='__main__', alter_sys=True)"
)
# Records when each status and image arrives in the page, and the card's state then
# (installed before the page's own script runs).
TIMELINE = """
window.timeline = [];
const note = (node, kind) => {
  const card = node.closest("[data-job-id]");
  const job = card && card.dataset.jobId;
  window.timeline.push({job, kind, state: card && card.dataset.state, t: performance.now()});
};
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType === 1 && node.matches("li[data-kind]")) note(node, node.dataset.kind);
    }
  }
}).observe(document, {childList: true, subtree: true});
document.addEventListener("load", (event) => {
  if (event.target.tagName === "IMG") note(event.target, "image");
}, true);
"""
# The bytes of an image as the browser loaded them (from its cache), as base64.
IMAGE_BYTES = """
async (img) => {
  const response = await fetch(img.currentSrc, {cache: "force-cache"});
  const bytes = new Uint8Array(await response.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}
"""
DONE = ["submitted", "queued", "running", "succeeded", "saved"]


class GalleryProcess:
    """The app's process (started, maybe not yet serving) and what it printed."""

    def __init__(self, process: anyio.abc.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.out = bytearray()
        self._url: str | None = None

    async def url(self) -> str:
        """The page's address, once the app printed it (it is serving then)."""
        assert self.process.stdout is not None
        with anyio.fail_after(20):
            while (found := re.search(rb"Gallery: open (\S+)", self.out)) is None:
                try:
                    self.out += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    pytest.fail(f"the gallery exited: {self.out.decode()}{self.stderr.read_text()}")
        return found.group(1).decode()

    async def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code once it ended."""
        self.process.send_signal(signal.SIGINT)
        # Within the server's 5 s shutdown timeout: open page streams must not hold it up.
        with anyio.fail_after(4):
            code = await self.process.wait()
            assert self.process.stdout is not None
            async for chunk in self.process.stdout:
                self.out += chunk
        return code


@pytest.fixture
async def gallery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GalleryProcess]:
    """``python -m examples.gallery --port 0`` without a key: the embedded emulator.

    Only started here: it imports and starts while the browser starts (``url()`` waits).
    """
    monkeypatch.delenv("TTAPI_API_KEY", raising=False)
    args = ["--port", "0", "--job-duration", JOB_SECONDS, "--out", str(tmp_path / "images")]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        process = await anyio.open_process(
            [sys.executable, "-c", COMMAND, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=sink
        )
    async with process:
        try:
            yield GalleryProcess(process, stderr)
        finally:
            if process.returncode is None:  # a test that did not stop it: Ctrl-C, then kill
                with anyio.move_on_after(5):
                    process.send_signal(signal.SIGINT)
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop for the module's tests, so that they share one browser."""
    return "asyncio"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium from the system (skipped, or failed in CI, when missing); each
    test opens its own page (a fresh browsing context)."""
    executable = require_binary("chromium")
    expect.set_options(timeout=10_000)  # a loaded CI machine; a pass takes far less
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page of its own browsing context (closed after the test), recording its timeline."""
    context = await browser.new_context(viewport={"width": 1000, "height": 860})
    try:
        await context.add_init_script(TIMELINE)
        yield await context.new_page()
    finally:
        await context.close()


async def open_gallery(page: Page, gallery: GalleryProcess) -> None:
    """Open the gallery in ``page``, once its event stream is open."""
    await page.goto(await gallery.url())
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")


async def generate(page: Page, prompt: str) -> str:
    """Type ``prompt``, click Generate, wait for its image to render; the job id shown."""
    count = await page.locator("#history > li").count()
    await page.fill("#prompt", prompt)
    await page.click("#submit")
    await expect(page.locator("#history > li")).to_have_count(count + 1)
    card = page.locator("#history > li").first
    await expect(card.locator(".prompt")).to_have_text(prompt)
    job_id = await card.get_attribute("data-job-id")
    assert job_id
    await expect(card.locator(".job-id")).to_have_text(job_id)
    await rendered(page, job_id)
    return job_id


async def rendered(page: Page, job_id: str) -> None:
    """Wait until the job's image is decoded in the page (not merely requested)."""
    await page.wait_for_function(
        """(job) => {
            const img = document.querySelector(`[data-job-id="${job}"] img`);
            return img !== null && img.complete && img.naturalWidth > 0;
        }""",
        arg=job_id,
        timeout=10_000,
    )


async def statuses(page: Page, job_id: str) -> list[str]:
    """The statuses the job's card lists, top to bottom."""
    items = page.locator(f'[data-job-id="{job_id}"] .statuses li')
    kinds: list[str] = await items.evaluate_all("(items) => items.map((i) => i.dataset.kind)")
    return kinds


async def timeline(page: Page, job_id: str) -> list[tuple[str, str, float]]:
    """What arrived in the page for the job, in order of arrival: each status or image,
    the job's state shown as it arrived, and when (ms)."""
    notes: list[dict[str, Any]] = await page.evaluate("window.timeline")
    return [(n["kind"], n["state"], n["t"]) for n in notes if n["job"] == job_id]


async def image_bytes(page: Page, job_id: str) -> tuple[bytes, tuple[int, int]]:
    """The job's image's bytes as the browser loaded them, and its decoded size there."""
    img = page.locator(f'[data-job-id="{job_id}"] img')
    data = base64.b64decode(await img.evaluate(IMAGE_BYTES))
    size = await img.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    return data, (size[0], size[1])


def assert_job_image(data: bytes, size: tuple[int, int], job_id: str) -> None:
    """The bytes are the emulator's image of this job, and a real picture of that size."""
    assert job_of_image(data) == job_id
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()  # decodes every pixel: a truncated or fake file fails here
        assert picture.format == "PNG"
        assert picture.size == size
        assert min(size) >= 256
        # Not a blank placeholder: a background, a disc and the drawn frame and prompt.
        assert len(picture.convert("RGB").getcolors(maxcolors=1 << 20) or []) >= 3


async def test_a_prompt_shows_its_job_live_then_its_image(
    gallery: GalleryProcess, page: Page, tmp_path: Path
) -> None:
    """Statuses arrive one by one in order while the job runs; then the job's own image."""
    await open_gallery(page, gallery)
    assert b"using the embedded TTAPI emulator" in gallery.out  # no key: the emulator
    job_id = await generate(page, "a lighthouse at dawn, watercolour")

    card = page.locator(f'[data-job-id="{job_id}"]')
    assert await statuses(page, job_id) == DONE
    await expect(card.locator(".statuses li")).to_contain_text(
        ["submitted", "queued", "ON_QUEUE", "SUCCESS", "saved"]
    )
    await expect(card).to_have_attribute("data-state", "done")
    # Live, not drawn at the end: each status arrived on its own, in order, while the job
    # was still working, and the image only after it was saved.
    arrivals = await timeline(page, job_id)
    assert [(kind, state) for kind, state, _ in arrivals] == [
        ("submitted", "working"),
        ("queued", "working"),
        ("running", "working"),
        ("succeeded", "working"),
        ("saved", "done"),
        ("image", "done"),
    ]
    times = [t for _, _, t in arrivals]
    assert times == sorted(times)

    data, size = await image_bytes(page, job_id)
    assert_job_image(data, size, job_id)
    # The page's image is the one the backend saved with client.save().
    saved = [p for p in (tmp_path / "images").iterdir() if p.suffix == ".png"]
    assert [p.read_bytes() for p in saved] == [data]


async def test_history_survives_a_reload_newest_first(
    gallery: GalleryProcess, page: Page, tmp_path: Path
) -> None:
    """Two prompts, a reload: both are listed newest first, with their statuses and images;
    a job that fails says so; Ctrl-C with the page open stops the app at once."""
    await open_gallery(page, gallery)
    first = await generate(page, "a red fox in the snow")
    second = await generate(page, "a teapot on the moon")

    await page.reload()
    await expect(page.locator("#live")).to_have_attribute("data-state", "open")
    cards = page.locator("#history > li")
    await expect(cards.locator(".prompt")).to_have_text(
        ["a teapot on the moon", "a red fox in the snow"]
    )
    assert [await c.get_attribute("data-job-id") for c in await cards.all()] == [second, first]
    for job_id in (second, first):
        await rendered(page, job_id)
        data, size = await image_bytes(page, job_id)
        assert_job_image(data, size, job_id)
    assert await statuses(page, first) == DONE
    # The second job's first poll is planned from the first one's duration, so it may find
    # the job done already: "running" is optional there, the order is not.
    kinds = await statuses(page, second)
    assert [k for k in kinds if k != "running"] == [k for k in DONE if k != "running"]
    screenshot = Path(os.environ.get("TTAPI_GALLERY_SCREENSHOT") or tmp_path / "gallery.png")
    await page.screenshot(path=screenshot)
    with Image.open(screenshot) as shot:
        assert shot.size == (1000, 860)

    # The emulator fails a job whose prompt says [fail]: the page says so, without an image.
    await page.fill("#prompt", "[fail] a broken vase")
    await page.click("#submit")
    failed = page.locator("#history > li").first
    await expect(failed.locator(".prompt")).to_have_text("[fail] a broken vase")
    await expect(failed).to_have_attribute("data-state", "failed")
    await expect(failed.locator(".statuses li").last).to_have_attribute("data-kind", "failed")
    await expect(failed.locator(".error")).to_be_visible()
    assert await failed.locator("img").count() == 0

    # An empty prompt is refused by the backend with a message, and nothing is submitted.
    await page.evaluate("document.getElementById('prompt').required = false")
    await page.fill("#prompt", "   ")
    await page.click("#submit")
    await expect(page.locator("#error")).to_have_text("type a prompt first")
    await expect(cards).to_have_count(3)

    # Ctrl-C while the page holds its event stream open: a clean, quick exit.
    assert await gallery.stop() == 0
    assert gallery.out.decode().splitlines()[-2:] == ["Stopping...", "Stopped."]
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
