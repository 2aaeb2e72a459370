"""The one reader of edit inputs: paths, bytes and binary files read into checked images,
and bad sources refused with the parameter named, the same way sync and async."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from servers import client

import ttapi_async as tt
from ttapi_async._images import sniff
from ttapi_async._inputs import load_edit_input, read_edit_input
from ttapi_async._protocol import EditImage


pytestmark = pytest.mark.anyio


async def test_edit_input_errors_name_the_parameter(tmp_path: Any) -> None:
    """Missing files, URLs and text-mode files are refused before sending."""
    async with client("http://127.0.0.1:9") as c:
        with pytest.raises(tt.ValidationError, match="cannot read"):
            await c.images.edit(image=str(tmp_path / "missing.png"), prompt="x")
        with pytest.raises(tt.ValidationError, match="URLs"):
            await c.images.edit(image="https://example.com/a.png", prompt="x")
        with pytest.raises(tt.ValidationError, match="binary"):
            await c.images.edit(image=io.StringIO("text"), prompt="x")  # type: ignore[arg-type]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
# A fresh source per reader: a file object is used up by the first read.
Make = Callable[[Path, ExitStack], object]


def _saved(folder: Path) -> Path:
    path = folder / "in.png"
    path.write_bytes(PNG)
    return path


def _text_file(folder: Path, stack: ExitStack) -> object:
    path = folder / "in.txt"
    path.write_text("not an image", encoding="utf-8")
    return stack.enter_context(path.open(encoding="utf-8"))


SOURCES: list[Any] = [
    pytest.param(lambda d, s: PNG, None, id="bytes"),
    pytest.param(lambda d, s: bytearray(PNG), None, id="bytearray"),
    pytest.param(lambda d, s: str(_saved(d)), None, id="path-str"),
    pytest.param(lambda d, s: _saved(d), None, id="pathlike"),
    pytest.param(lambda d, s: io.BytesIO(PNG), None, id="bytesio"),
    pytest.param(lambda d, s: s.enter_context(_saved(d).open("rb")), None, id="binary-file"),
    pytest.param(_text_file, "the file must be opened in binary mode", id="text-file"),
    pytest.param(lambda d, s: "http://cdn.example/a.png", "URLs are not accepted", id="http-url"),
    pytest.param(lambda d, s: str(d / "missing.png"), "cannot read the file", id="missing"),
    pytest.param(lambda d, s: str(d / "a\x00b.png"), "not a usable file path", id="nul-in-path"),
    pytest.param(lambda d, s: 7, "a path, bytes or a binary file is required", id="int"),
    # A PNG opened in text mode (UTF-8, the default) fails to decode inside read(): the
    # reader must still say "binary mode" (it used to let UnicodeDecodeError escape).
    pytest.param(
        lambda d, s: s.enter_context(_saved(d).open(encoding="utf-8")),
        "the file must be opened in binary mode",
        id="png-in-text-mode",
    ),
]


def _outcome(read: Callable[[], EditImage]) -> EditImage | tuple[str, str]:
    try:
        return read()
    except tt.ValidationError as exc:
        return (exc.param, str(exc))


async def _aoutcome(read: Callable[[], Any]) -> EditImage | tuple[str, str]:
    try:
        image: EditImage = await read()
    except tt.ValidationError as exc:
        return (exc.param, str(exc))
    return image


@pytest.mark.parametrize(("make", "rule"), SOURCES)
async def test_sync_and_async_readers_agree(make: Make, rule: str | None, tmp_path: Path) -> None:
    """read_edit_input and load_edit_input give the same image, or the same refusal."""
    with ExitStack() as stack:
        sync = _outcome(lambda: read_edit_input(make(tmp_path, stack), "image[1]"))
        in_loop = await _aoutcome(lambda: load_edit_input(make(tmp_path, stack), "image[1]"))
    assert sync == in_loop
    if rule is None:
        assert sync == EditImage(data=PNG, info=sniff(PNG))
        assert isinstance(sync, EditImage)
        assert (sync.info.mime, sync.info.width, sync.info.height) == ("image/png", 6, 4)
    else:
        assert isinstance(sync, tuple)
        param, message = sync
        assert param == "image[1]"
        assert message.startswith("image[1]=")
        assert f": {rule}" in message
