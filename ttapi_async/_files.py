"""Saving results to disk: safe names and atomic writes.

Strictly private; users call :meth:`ttapi_async.Client.save`. TTAPI and DALL-E image URLs
expire after about an hour, so results are worth saving as soon as they arrive. Files are
written to a temporary name in the target folder and renamed, so a crash never leaves a
half-written image under the final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Final


__all__ = ["safe_stem", "write_atomic"]

_UNSAFE: Final = re.compile(r"[^a-z0-9]+")
_MAX_STEM: Final = 48


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
