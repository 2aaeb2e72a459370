"""The JSON sidecar next to each saved image (:mod:`ttapi_async._sidecar`): what it says,
that it is valid JSON whatever the result held, and that it never holds a secret.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from pathlib import Path

import anyio
import pytest
from helpers import free_port
from saving import SAFE_NAME, Serve, b64_result, client, image_app, listing, png, sdk, sidecar_of

import ttapi_async as tt
from ttapi_async import _sidecar
from ttapi_async._errors import Redactor
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- secrets


async def test_hooked_job_sidecar_has_no_hook_url_or_token(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A 4o job submitted with a hook URL: neither the URL nor its token reaches a sidecar."""
    emulator.job_duration = 0.1
    async with anyio.create_task_group() as tg:
        port = free_port()
        rec = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
        await tg.start(rec.serve, "127.0.0.1", port)
        async with sdk(emulator, webhook=rec) as c:
            job = await c.gpt4o.submit(prompt="a hooked cat")
            result = await job.wait(timeout=10)
            snap = await job.fetch()
            hook = emulator.jobs[job.job_id].hook_url
            assert hook is not None
            assert snap.hook_url == hook  # TTAPI echoes it back on every fetch
            token = hook.rsplit("/", 1)[-1]
            leaky = {
                "hookUrl": hook,
                "request": {"prompt": "a hooked cat", "hook_url": hook, "HOOK-TOKEN": token},
                "snapshot": snap,  # an attrs object with a hook_url field
                "note": f"callbacks go to {hook}",
                "raw": f'{{"hookUrl": "{hook}"}}',
                "events": [{"Hook_Url": hook}, token],
            }
            saved_snap = await c.save(snap, tmp_path, metadata=leaky)
            saved_result = await c.save(result, tmp_path, metadata={"hook_token": token})
        tg.cancel_scope.cancel()
    assert rec.accepted == 1
    for saved in (*saved_snap, *saved_result):
        text = saved.sidecar.read_text()  # type: ignore[union-attr]
        assert hook not in text
        assert token not in text
        assert emulator.api_key not in text
        doc = json.loads(text)
        assert not {"hookUrl", "hook_url", "hook_token"} & set(doc)
        assert doc["job_id"] == job.job_id
        assert doc["kind"] == "4o-image"
        assert doc["prompt"] == "a hooked cat"
        assert doc["finished"]
    assert sidecar_of(saved_result[0])["delivered_by"] in {"webhook", "poll"}
    assert saved_snap[0].path != saved_result[0].path  # same prompt, two files
    assert emulator.counters.key_seen_on_files == 0


def test_clean_metadata_drops_and_converts() -> None:
    """Secret keys go at any depth and in any spelling; values become JSON."""

    class Colour(enum.Enum):
        RED = "red"

    cleaned = _sidecar.clean_metadata(
        {
            "HookURL": "x",
            "webhook_url": "x",
            "nested": {"hook-token": "x", "keep": 1, "list": [{"hookUrl": "x"}, b"\x00\x01"]},
            "OPENAI_API_KEY": "x",
            "Authorization": "x",
            "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            "took": dt.timedelta(seconds=1.5),
            "colour": Colour.RED,
            "status": tt.JobStatus.SUCCESS,
            "bad": math.nan,
            "path": Path("/a/b"),
            "secret in text": "key=sk-0123456789 and hookUrl=http://h/t0k3n",
        },
        Redactor(["sk-0123456789", "short"]),
    )
    assert cleaned == {
        "nested": {"keep": 1, "list": [{}, "<2 bytes>"]},
        "when": "2025-01-01T00:00:00+00:00",
        "took": 1.5,
        "colour": "red",
        "status": "SUCCESS",
        "bad": None,
        "path": "/a/b",
        "secret in text": "key=<hidden> and hookUrl=<hidden>",
    }


# ----------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        (10**20, 10**20),
        (-(10**20), -(10**20)),
        (-(10**400), -(10**400)),
        (10**12, 10**12),  # year 33658: past datetime's range
        (2**63, 2**63),
        (math.nan, None),  # JSON has no NaN nor infinity
        (math.inf, None),
        (-1, "1969-12-31T23:59:59+00:00"),  # a date after all
    ],
    ids=["1e20", "-1e20", "-1e400", "year-33658", "2**63", "nan", "inf", "-1"],
)
async def test_a_created_no_date_can_show_is_kept_as_sent(
    tmp_path: Path, created: float, shown: object
) -> None:
    """``created`` out of the platform's range: the image is saved, the number kept."""
    async with client() as c:
        (saved,) = await c.save(b64_result(created=created), tmp_path)
    assert saved.path.read_bytes() == png()
    assert sidecar_of(saved)["created"] == shown
    assert listing(tmp_path) == sorted([saved.path.name, saved.path.name + ".json"])


async def test_lone_surrogates_in_every_field_are_saved(serve: Serve, tmp_path: Path) -> None:
    """A mis-decoded prompt, job id or metadata value: the image is saved, the sidecar is
    valid JSON giving the same strings back, and the name is a plain safe one."""
    base = await serve(image_app(png()))
    snap = tt.JobSnapshot(
        job_id="job-\udcff",
        status=tt.JobStatus.SUCCESS,
        prompt="a fox \ud800 in snow",
        image_url=base + "/a.png",
        finish_time=dt.datetime.max.replace(tzinfo=dt.UTC),
    )
    async with client() as c:
        (from_job,) = await c.save(snap, tmp_path, metadata={"note \ud800": "x\udc80"})
        (from_id,) = await c.save(attrs_evolve_prompt(snap, None), tmp_path)
        (revised,) = await c.save(b64_result(revised_prompt="\ud800\ud801"), tmp_path)
        (from_meta,) = await c.save(b64_result(), tmp_path, metadata={"prompt": "\udfff"})
    for saved in (from_job, from_id, revised, from_meta):
        assert SAFE_NAME.match(saved.path.name), saved.path.name
        assert saved.path.read_bytes() == png()
    doc = sidecar_of(from_job)
    assert (doc["prompt"], doc["job_id"]) == ("a fox \ud800 in snow", "job-\udcff")
    assert doc["note \ud800"] == "x\udc80"
    assert doc["finished"] == "9999-12-31T23:59:59.999999+00:00"
    assert sidecar_of(revised)["revised_prompt"] == "\ud800\ud801"
    assert sidecar_of(from_meta)["prompt"] == "\udfff"
    assert sidecar_of(from_id)["job_id"] == "job-\udcff"
    # Two prompts that differ only in a surrogate do not share a stem.
    assert from_job.path.name.split("-0.")[0] != from_id.path.name.split("-0.")[0]
    assert not list(tmp_path.glob(".part-*"))


def attrs_evolve_prompt(snap: tt.JobSnapshot, prompt: str | None) -> tt.JobSnapshot:
    import attrs  # noqa: PLC0415

    return attrs.evolve(snap, prompt=prompt)
