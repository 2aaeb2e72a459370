"""Small shared types: the ``NOT_GIVEN`` sentinel and input aliases. Strictly private."""

from __future__ import annotations

import enum
import os
from typing import IO, Final, Literal, TypeAlias


__all__ = ["NOT_GIVEN", "ImageInput", "NotGiven", "Timeout"]


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
