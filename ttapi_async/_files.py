"""Placing files on disk: safe names, temporary files, never an overwrite.

Strictly private; users call :meth:`ttapi_async.Client.save`, whose pipeline
(:mod:`._downloads`) writes through here. Files are written to a ``.part-*`` temporary
name in the target folder (:class:`PartFile`, :func:`write_atomic`) and only then given
their final name, so a crash never leaves a half-written file under it:

* an image is hard-linked to the first free name (``<stem>.<ext>``, ``<stem>-2.<ext>``,
  ...; a link fails if the name exists, so two processes never get the same one);
* a sidecar replaces its name atomically (a rename).

Inside a journaled bulk run the temporary names are ``.part-<run id>-*``
(:func:`part_prefix`): the next run of that journal removes exactly those leftovers,
never another save's file. A failure of the local disk is raised as
:class:`~ttapi_async.StorageError` (:func:`storage_errors`), which is also an ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ._errors import StorageError, TTAPIError, ValidationError


__all__ = [
    "MAX_STEM_BYTES",
    "PartFile",
    "check_stem",
    "fsync_dir",
    "make_folder",
    "part_prefix",
    "safe_stem",
    "sidecar_path",
    "storage_errors",
    "write_atomic",
]

_UNSAFE: Final = re.compile(r"[^a-z0-9]+")
_MAX_STEM: Final = 48
_PART_PREFIX: Final = ".part-"
#: Stems are bounded so that ``-N``, the extension and ``.json`` stay under 255 bytes.
MAX_STEM_BYTES: Final = 200
#: Names tried after the first is taken, before giving up.
_MAX_NAME_TRIES: Final = 10_000
#: ``os.link`` errors meaning "this filesystem has no hard links" (FAT, some FUSE/SMB).
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
)


def safe_stem(text: str) -> str:
    """A file-name stem from free text (a prompt): ASCII slug plus a short hash.

    Whatever the prompt, the result has no path separators, no dots, a bounded length,
    and differs for different prompts that slug alike.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_text.lower()).strip("-")[:_MAX_STEM].rstrip("-") or "image"
    # surrogatepass: a lone surrogate (a mis-decoded prompt) still hashes, to bytes no
    # valid string encodes to, so it neither raises nor collides.
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


def write_atomic(path: Path, data: bytes, *, prefix: str = ".part-") -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The temporary file is ``<prefix><random>`` in the same folder (a bulk run passes a
    prefix tagged with its run id, so a later run of its journal can sweep leftovers).
    Blocking: call it in a worker thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        # mkstemp creates 0600; a saved image is an ordinary file.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- names


def part_prefix(run_id: str | None) -> str:
    """The name prefix of temporary files saved for ``run_id`` (None: outside any run).

    ``.part-<run id>-`` inside a journaled bulk run, so the next run of that journal can
    sweep exactly its own leftovers; plain ``.part-`` otherwise, which no sweep matches
    (``mkstemp`` appends 8 random characters, never ``<run id>-``).
    """
    return _PART_PREFIX if run_id is None else f"{_PART_PREFIX}{run_id}-"


def sidecar_path(image: Path) -> Path:
    """Where the JSON sidecar of ``image`` goes: ``<image name>.json`` beside it."""
    return image.with_name(image.name + ".json")


def check_stem(stem: str, limit: int = MAX_STEM_BYTES + 10) -> None:
    """Refuse a stem that is not one plain file name (``limit``: its length in bytes).

    A result's base stem is checked against :data:`MAX_STEM_BYTES`; a file's stem may be
    a little longer (``-<index>``).
    """
    if (
        not stem
        or stem.startswith(".")  # hidden files, and .part-* is this module's namespace
        or any(c in stem for c in "/\\\0")
        or len(stem.encode("utf-8", "surrogatepass")) > limit
        or not _is_file_name(stem)
    ):
        raise ValidationError(
            "stem",
            stem,
            "a plain file-name stem is required: no path separator, NUL or lone surrogate, "
            f"not starting with a dot, at most {limit} bytes",
        )


def _is_file_name(text: str) -> bool:
    """True if the OS can take ``text`` as a name (a lone surrogate cannot)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------- placing


def make_folder(directory: str | os.PathLike[str]) -> Path:
    """Make the target folder; a path the OS cannot take is a ValidationError."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except ValueError as exc:  # a NUL byte, or a lone surrogate the OS cannot encode
        raise ValidationError("directory", str(directory), f"not a usable path ({exc})") from exc
    return folder


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Raise a local ``OSError`` met in the block as :class:`StorageError` (an OSError too)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, TTAPIError):  # RequestTimeout is a TimeoutError, so an OSError
            raise
        raise StorageError.wrap(exc, what) from exc


class PartFile:
    """A ``.part-*`` temporary file in the target folder, removed unless committed.

    Made in the target folder itself, so that placing it later is a same-filesystem
    link, never a copy. ``prefix`` comes from :func:`part_prefix`.
    """

    __slots__ = ("_file", "committed", "path", "prefix")

    def __init__(self, folder: Path, prefix: str = _PART_PREFIX) -> None:
        self.prefix = prefix
        fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
        self.path = Path(name)
        self.committed = False
        try:
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise

    def write(self, data: bytes) -> None:
        """Append bytes (a page-cache write; the fsync comes at commit)."""
        self._file.write(data)

    def discard(self) -> None:
        """Close and remove the temporary file; never raises (it runs while unwinding)."""
        with contextlib.suppress(OSError):
            self._file.close()
        if not self.committed:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def commit(self, folder: Path, stem: str, ext: str, *, sidecar: bool) -> Path:
        """Make the bytes durable and give them the first free final name. Blocking.

        With ``sidecar``, a name whose sidecar already exists is skipped too.
        """
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        # mkstemp creates 0600; a saved image is an ordinary, readable file.
        self.path.chmod(0o644)
        final = _place(self.path, folder, stem, ext, sidecar=sidecar)
        self.committed = True
        return final


def _place(tmp: Path, folder: Path, stem: str, ext: str, *, sidecar: bool) -> Path:
    """Link ``tmp`` to ``<stem>.<ext>``, or ``<stem>-2.<ext>``, ... whichever is free.

    ``os.link`` fails when the name exists, so no file is ever overwritten, even by
    another process saving into the same folder at the same moment.
    """
    for n in range(1, _MAX_NAME_TRIES + 1):
        target = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        if sidecar and sidecar_path(target).exists():
            continue  # an orphaned sidecar: its name stays its own
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if not _reserve(target):
                continue
            # No hard links here. The name is reserved by an empty file (O_EXCL, so still
            # no overwrite of anyone else's file), then replaced by the image. The race:
            # for that instant, and forever if the process dies in it, the final name
            # holds an empty file rather than the image.
            try:
                tmp.replace(target)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            return target
        try:
            tmp.unlink()
        except BaseException:
            target.unlink(missing_ok=True)  # all or nothing: the caller removes tmp
            raise
        return target
    raise FileExistsError(errno.EEXIST, f"no free name for {stem}.{ext} in {folder}")


def _reserve(target: Path) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable; best effort (Windows cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
