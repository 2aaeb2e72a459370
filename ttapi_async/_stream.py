"""Reading a streamed image reply (``stream=True``): SSE lines in, image events out.

Strictly private and sans-I/O: :class:`EventReader` is fed the body's lines as the
transport reads them (aiohttp's stream reader splits them) and hands back each complete
event; :func:`image_event` turns an event's JSON into an
:class:`~ttapi_async.ImageStreamEvent`. The rules follow ``ttapi-wire-2026.md`` sections 5
and 10:

* framing: ``event:`` and ``data:`` lines, a blank line ends an event; comment lines
  (``:``, keep-alives) and other fields are ignored; several ``data:`` lines join with a
  newline; a last event without its blank line still counts (:meth:`EventReader.close`);
* dispatch on the JSON ``type``, not on the ``event:`` line;
* ``data: [DONE]`` ends the stream;
* an ``error`` key in the data, or an ``event: error``, is a typed error carrying the
  server's message.
"""

from __future__ import annotations

from typing import Any, Final

from . import _json
from ._errors import APIStatusError, ResponseFormatError
from ._models import ImageStreamEvent, Usage
from ._serde import StructureError, structure_usage, text_of


__all__ = ["DONE", "EventReader", "image_event"]

#: What :meth:`EventReader.feed` returns for ``data: [DONE]``.
DONE: Final = object()


class EventReader:
    """Assembles SSE events from lines; each complete event's ``(event, data)``."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: bytes) -> tuple[str, str] | object | None:
        """Take one line (with or without its line ending).

        Returns ``(event name, data)`` when the line completes an event, :data:`DONE`
        for ``[DONE]``, else None.
        """
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return self._dispatch()
        if text.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None  # id, retry and unknown fields: nothing an image stream uses

    def close(self) -> tuple[str, str] | object | None:
        """The stream ended: the event it was in the middle of, if any."""
        return self._dispatch()

    def _dispatch(self) -> tuple[str, str] | object | None:
        if not self._data:
            self._event = ""
            return None
        data = "\n".join(self._data)
        event, self._event, self._data = self._event, "", []
        if data.strip() == "[DONE]":
            return DONE
        return event, data


def image_event(event: str, data: str, *, status: int = 200) -> ImageStreamEvent:
    """The image event in one SSE event's data.

    Raises:
        APIStatusError: the event is an error (``event: error`` or an ``error`` key); its
            message is the server's.
        ResponseFormatError: the data is not a JSON object with a ``type``.
    """
    try:
        obj: Any = _json.loads(data)
    except (ValueError, RecursionError):
        obj = None
    if event == "error" or (isinstance(obj, dict) and obj.get("error")):
        raise _stream_error(obj, data, status)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ResponseFormatError("a stream event without a type", status=status)
    usage = obj.get("usage")
    index = obj.get("partial_image_index")
    created = obj.get("created_at")
    return ImageStreamEvent(
        type=obj["type"],
        b64_json=text_of(obj.get("b64_json")),
        partial_image_index=index
        if isinstance(index, int) and not isinstance(index, bool)
        else None,
        usage=_usage(usage, status),
        size=text_of(obj.get("size")),
        quality=text_of(obj.get("quality")),
        background=text_of(obj.get("background")),
        output_format=text_of(obj.get("output_format")),
        created_at=created if isinstance(created, int) and not isinstance(created, bool) else None,
    )


def _usage(usage: Any, status: int) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    try:
        return structure_usage(usage)
    except StructureError as exc:
        raise ResponseFormatError("a stream event's usage is malformed", status=status) from exc


def _stream_error(obj: Any, data: str, status: int) -> APIStatusError:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        message = text_of(err.get("message")) or "the stream reported an error"
        code, type_ = text_of(err.get("code")), text_of(err.get("type"))
    else:
        message = text_of(err) or data[:200] or "the stream reported an error"
        code = type_ = None
    return APIStatusError(
        f"the image stream failed: {message}", status=status, code=code, type=type_
    )
