"""Edit inputs: a path, bytes or a binary file, read into checked :class:`EditImage` s.

Strictly private. The one reader of edit images: ``images.edit`` reads them without
blocking the loop (:func:`load_edit_input`), the batch validator of the CLI and the bulk
runner reads them in place (:func:`read_edit_input`); both classify a source and report a
bad one the same way.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread

from ._errors import ValidationError
from ._images import sniff
from ._protocol import EditImage


__all__ = ["load_edit_input", "read_edit_input"]


def _source(src: object, param: str) -> bytes | str | object:
    """Bytes as they are, a path as text, or else the binary file to read from."""
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src)
    if isinstance(src, str | os.PathLike):
        text = os.fspath(src)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if text.startswith(("http://", "https://")):
            raise ValidationError(
                param, text, "URLs are not accepted; pass a path, bytes or a file"
            )
        return text
    if isinstance(src, io.BytesIO):
        return src.getvalue()
    if hasattr(src, "read"):
        return src
    raise ValidationError(param, type(src).__name__, "a path, bytes or a binary file is required")


def _read_error(param: str, path: str, exc: OSError | ValueError) -> ValidationError:
    if isinstance(exc, OSError):
        return ValidationError(param, path, f"cannot read the file: {exc.strerror}")
    # A NUL or a lone surrogate: no file can have that name.
    return ValidationError(param, path, "not a usable file path")


def _read_file(read: Callable[[], object], param: str) -> object:
    """Call a file's ``read``; a text-mode file over image bytes fails to decode."""
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise ValidationError(
            param, "<text file>", "the file must be opened in binary mode"
        ) from exc
    except OSError as exc:
        raise ValidationError(param, "<file>", f"cannot read the file: {exc.strerror}") from exc


def _checked(data: object, param: str, name: str | None = None) -> EditImage:
    if not isinstance(data, bytes):
        raise ValidationError(param, type(data).__name__, "the file must be opened in binary mode")
    # Messages about this image (a mask's size, a format) then name the file it came from.
    return EditImage(data=data, info=sniff(data, name))


def _file_name(file: object) -> str | None:
    """The name an open file was opened by, when it has one (not a BytesIO, not a fd).

    Only the last part of a path: messages stay short enough to show it whole.
    """
    name = getattr(file, "name", None)
    return Path(name).name if isinstance(name, str) else None


def read_edit_input(src: object, param: str) -> EditImage:
    """Read one edit input here and now (for validating a batch before it runs).

    Raises:
        ValidationError: naming ``param``: a URL, an unreadable file, a text-mode file.
    """
    source = _source(src, param)
    if isinstance(source, str):
        try:
            return _checked(Path(source).read_bytes(), param, Path(source).name)
        except (OSError, ValueError) as exc:
            raise _read_error(param, source, exc) from exc
    if isinstance(source, bytes):
        return _checked(source, param)
    data = _read_file(source.read, param)  # type: ignore[attr-defined]
    return _checked(data, param, _file_name(source))


async def load_edit_input(src: object, param: str) -> EditImage:
    """Read one edit input without blocking the event loop (files in a worker thread).

    Raises:
        ValidationError: as :func:`read_edit_input`.
    """
    source = _source(src, param)
    if isinstance(source, str):
        try:
            data = await anyio.Path(source).read_bytes()
        except (OSError, ValueError) as exc:
            raise _read_error(param, source, exc) from exc
        return _checked(data, param, Path(source).name)
    if isinstance(source, bytes):
        return _checked(source, param)
    read = source.read  # type: ignore[attr-defined]
    read_data: object = await anyio.to_thread.run_sync(_read_file, read, param)
    return _checked(read_data, param, _file_name(source))
