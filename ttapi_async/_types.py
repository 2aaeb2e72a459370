"""Small shared types: the ``NOT_GIVEN`` sentinel and input aliases. Strictly private."""

from __future__ import annotations

import enum
import os
from typing import IO, Final, Literal, TypeAlias

import attrs


__all__ = ["NOT_GIVEN", "FileID", "ImageInput", "ImageRef", "ImageURL", "NotGiven", "Timeout"]


class NotGiven(enum.Enum):
    """Marks an argument that was not passed, where ``None`` has a meaning of its own.

    ``timeout=None`` means "no limit"; leaving ``timeout`` out means "the client's
    default". (httpx calls this ``USE_CLIENT_DEFAULT``.)
    """

    NOT_GIVEN = enum.auto()

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

#: ``timeout=`` everywhere: seconds for the whole call, None for no limit, or not given.
Timeout: TypeAlias = float | NotGiven | None

#: An image for ``images.edit``: a path, the bytes, or a binary file opened for reading.
ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


@attrs.frozen
class ImageURL:
    """An edit input given by address: an ``https://`` URL, or a ``data:image/...`` URL.

    ``images.edit`` sends edits given this way as JSON (``images[].image_url``), for the
    GPT image models; a ``data:`` URL's bytes are checked as an upload's would be.
    """

    url: str

    def __repr__(self) -> str:
        # A data: URL can be megabytes: show its start only.
        url: object = self.url  # a caller may have passed anything: checked when sent
        url = url if isinstance(url, str) else repr(url)
        shown = url if len(url) <= 60 else url[:57] + "..."  # noqa: PLR2004
        return f"ImageURL({shown!r})"


@attrs.frozen
class FileID:
    """An edit input given by an OpenAI Files id (``images[].file_id`` in a JSON edit).

    TTAPI documents no upload route, so such an id must come from elsewhere.
    """

    id: str


#: An image given by reference, for a JSON edit.
ImageRef: TypeAlias = ImageURL | FileID
