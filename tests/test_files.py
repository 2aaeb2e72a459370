"""Placing saved images on disk (:mod:`ttapi_async._files`): names of their own, never an
overwrite, safe stems and folders, local failures as ``StorageError``.

Real saves on real folders throughout (the emulator or b64 results for the bytes).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from saving import (
    SAFE_NAME,
    Serve,
    b64_result,
    client,
    image_app,
    listing,
    png,
    sdk,
    sidecar_of,
    url_result,
)

import ttapi_async as tt
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- names


async def test_same_prompt_twice_gives_two_files(emulator: Emulator, tmp_path: Path) -> None:
    """Nothing is overwritten: a taken name gets -2, -3, ...; a stranger's file stays."""
    (tmp_path / "fox-0.png").write_bytes(b"mine")
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1")
        first = await c.save(r, tmp_path, stem="fox")
        second = await c.save(r, tmp_path, stem="fox")
        (tmp_path / "fox-0-4.png.json").write_text("{}")  # an orphaned sidecar keeps its name
        third = await c.save(r, tmp_path, stem="fox")
        by_prompt = [await c.save(r, tmp_path, metadata={"prompt": "a fox"}) for _ in range(2)]
    assert (tmp_path / "fox-0.png").read_bytes() == b"mine"
    assert [s.path.name for s in (*first, *second, *third)] == [
        "fox-0-2.png",
        "fox-0-3.png",
        "fox-0-5.png",
    ]
    assert (tmp_path / "fox-0-4.png.json").read_text() == "{}"
    a, b = by_prompt[0][0], by_prompt[1][0]
    assert a.path != b.path
    assert a.path.name.startswith("a-fox-")
    assert b.path.name == a.path.name.replace(".png", "-2.png")
    assert a.sidecar != b.sidecar
    assert a.sha256 == b.sha256


async def test_concurrent_saves_never_collide(emulator: Emulator, tmp_path: Path) -> None:
    """Twenty saves of one name at once: twenty files, each whole, each with its sidecar."""
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1", size="1024x1024")
        results = await asyncio.gather(*(c.save(r, tmp_path, stem="same") for _ in range(20)))
    saved = [s for batch in results for s in batch]
    assert len({s.path for s in saved}) == 20
    expected = r.data[0].decode()
    assert all(s.path.read_bytes() == expected for s in saved)
    assert all(sidecar_of(s)["file"] == s.path.name for s in saved)
    assert len(listing(tmp_path)) == 40
    assert not list(tmp_path.glob(".part-*"))


async def test_hostile_prompt_gives_a_safe_name(emulator: Emulator, tmp_path: Path) -> None:
    """Path tricks, length, unicode and NUL in a prompt: a short, plain name in the folder."""
    hostile = "../../etc/passwd/" + "Ünïcødé 🦊 \\ .. \0" + "x" * 500
    folder = tmp_path / "out"
    async with sdk(emulator) as c:
        r = await c.dalle3.generate(prompt="x", size="1024x1024")
        url = r.data[0].url
        assert url is not None
        snap = tt.JobSnapshot(
            job_id="j1", status=tt.JobStatus.SUCCESS, prompt=hostile, image_url=url
        )
        from_job = await c.save(snap, folder)
        from_meta = await c.save(r, folder, metadata={"prompt": hostile})
        for stem in ["../x", "a/b", "a\\b", ".hidden", "a\0b", "", "x" * 300]:
            with pytest.raises(tt.ValidationError, match="stem"):
                await c.save(r, folder, stem=stem)
    for saved in (*from_job, *from_meta):
        assert saved.path.parent == folder
        assert SAFE_NAME.match(saved.path.name), saved.path.name
        assert len(saved.path.name) < 80
        assert "passwd" in saved.path.name  # still recognisable
    assert sidecar_of(from_job[0])["prompt"] == hostile  # the sidecar keeps it verbatim
    assert listing(tmp_path) == ["out"]
    assert len(listing(folder)) == 4


async def test_without_hard_links_names_are_still_reserved(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem with no hard links (FAT, some network shares) names stay unique."""

    def no_links(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "x-0.png").write_bytes(b"mine")
    async with sdk(emulator) as c:
        r = await c.images.generate(prompt="a fox", model="gpt-image-1")
        saved = [s for _ in range(2) for s in await c.save(r, tmp_path, stem="x")]
    assert [s.path.name for s in saved] == ["x-0-2.png", "x-0-3.png"]
    assert (tmp_path / "x-0.png").read_bytes() == b"mine"
    assert all(s.path.read_bytes() == r.data[0].decode() for s in saved)
    assert not list(tmp_path.glob(".part-*"))


async def test_a_stem_or_folder_the_os_cannot_take_is_a_validation_error(
    tmp_path: Path,
) -> None:
    async with client() as c:
        with pytest.raises(tt.ValidationError) as info:
            await c.save(b64_result(), tmp_path, stem="a\ud800")
        assert info.value.param == "stem"
        for folder in (tmp_path / "d\ud800", tmp_path / "d\x00"):
            with pytest.raises(tt.ValidationError) as info:
                await c.save(b64_result(), folder)
            assert info.value.param == "directory"
        # A surrogate-escaped byte (a non-UTF-8 name read from the OS) is a real name.
        (saved,) = await c.save(b64_result(), tmp_path, stem="raw\udcff")
    assert os.fsencode(saved.path.name) == b"raw\xff-0.png"
    assert sidecar_of(saved)["file"] == "raw\udcff-0.png"
    assert listing(tmp_path) == sorted([saved.path.name, saved.path.name + ".json"])


# ----------------------------------------------------------------------------- local failures


def assert_storage_error(err: tt.StorageError, code: int, cause: type[OSError]) -> None:
    assert isinstance(err, OSError)
    assert isinstance(err, tt.TTAPIError)
    assert err.errno == code
    assert isinstance(err.__cause__, cause)
    assert "saving an image" in str(err)


async def test_local_failures_are_storage_errors(serve: Serve, tmp_path: Path) -> None:
    """A folder under a file, a folder that is a file: StorageError, which is an OSError."""
    base = await serve(image_app(png()))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    async with client() as c:
        for result in (b64_result(), url_result(base + "/a.png")):
            with pytest.raises(tt.StorageError) as info:
                await c.save(result, blocker / "out")
            assert_storage_error(info.value, errno.ENOTDIR, NotADirectoryError)
            with pytest.raises(OSError, match="saving an image"):  # `except OSError` works
                await c.save(result, blocker)
    assert listing(tmp_path) == ["a-file"]
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
async def test_permission_denied_even_to_root_is_a_storage_error() -> None:
    """sysfs refuses new files to everyone, root included: a real EACCES."""
    async with client() as c:
        with pytest.raises(tt.StorageError) as info:
            await c.save(b64_result(), "/sys/kernel")
    assert_storage_error(info.value, errno.EACCES, PermissionError)


FULL_DISK_CHILD = """
import asyncio, base64, json, os, resource, signal, sys
from pathlib import Path
import ttapi_async as tt

async def main(folder, image):
    result = tt.ImagesResponse(created=1, data=(tt.ImageData(b64_json=image),))
    async with tt.Client("test-key-123", base_url="http://127.0.0.1:9") as c:
        try:
            await c.save(result, folder)
        except BaseException as exc:
            return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                    "os": isinstance(exc, OSError), "tt": isinstance(exc, tt.TTAPIError),
                    "cause": type(exc.__cause__).__name__}
    return {"type": None}

folder, image = sys.argv[1], sys.stdin.read()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
print(json.dumps(asyncio.run(main(folder, image))))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file-size limit")
def test_a_write_that_fails_mid_image_is_a_storage_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The disk refuses a write half-way (a file-size limit: EFBIG, like a full disk or a
    quota): StorageError, and no half file nor .part- file is left.

    ENOSPC itself needs a small filesystem (a mount: root); the file-size limit fails
    the same write() with another errno, in a child so the limit binds no one else.
    """
    image = base64.b64encode(png((300, 300), noise=True)).decode()
    assert len(image) > 2 * 64 * 1024
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)],
        input=image,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(child.stdout)
    assert got == {
        "type": "StorageError",
        "errno": errno.EFBIG,
        "os": True,
        "tt": True,
        "cause": "OSError",
    }
    assert listing(tmp_path) == []
