"""Reading a streamed image reply: SSE lines in, image events out (no I/O, no loop)."""

from __future__ import annotations

import base64
import json

import pytest

import ttapi_async as tt
from ttapi_async._stream import DONE, EventReader, image_event


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def events(lines: list[bytes]) -> list[object]:
    reader = EventReader()
    out = [e for line in lines if (e := reader.feed(line)) is not None]
    last = reader.close()
    return out if last is None else [*out, last]


def test_events_are_framed_by_blank_lines_and_comments_are_skipped() -> None:
    got = events(
        [
            b": keep-alive\n",
            b"event: image_generation.partial_image\n",
            b'data: {"type":"image_generation.partial_image","partial_image_index":0}\r\n',
            b"\n",
            b"id: 7\n",
            b'data: {"type":\n',
            b'data: "x.completed"}\n',
            b"\n",
            b"data: [DONE]\n",
            b"\n",
        ]
    )
    assert got == [
        (
            "image_generation.partial_image",
            '{"type":"image_generation.partial_image","partial_image_index":0}',
        ),
        ("", '{"type":\n"x.completed"}'),
        DONE,
    ]


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    assert events([b'data: {"type":"a"}']) == [("", '{"type":"a"}')]
    assert events([b"\n", b"\n", b": only comments\n"]) == []


def test_an_image_event_is_read_tolerantly() -> None:
    partial = image_event(
        "image_generation.partial_image",
        json.dumps(
            {
                "type": "image_generation.partial_image",
                "b64_json": PNG,
                "partial_image_index": 1,
                "size": "1536x864",
                "quality": "low",
                "background": "opaque",
                "output_format": "png",
                "created_at": 1765000000,
            }
        ),
    )
    assert (partial.partial_image_index, partial.size, partial.completed) == (1, "1536x864", False)
    assert partial.decode().startswith(b"\x89PNG")
    usage = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    done = image_event(
        "", json.dumps({"type": "image_edit.completed", "b64_json": PNG, "usage": usage})
    )
    assert done.completed
    assert done.usage is not None
    assert done.usage.total_tokens == 12
    assert done.partial_image_index is None
    odd = image_event("", '{"type":"image_generation.something_new","partial_image_index":true}')
    assert (odd.type, odd.partial_image_index, odd.b64_json) == (
        "image_generation.something_new",
        None,
        None,
    )
    with pytest.raises(ValueError, match="b64_json"):
        odd.decode()


@pytest.mark.parametrize(
    ("event", "data", "message"),
    [
        ("error", '{"message":"bad"}', "message"),
        (
            "",
            '{"error":{"message":"Your request was rejected","code":"moderation_blocked"}}',
            "rejected",
        ),
        ("", '{"type":"x","error":"quota gone"}', "quota gone"),
        ("error", "not json", "not json"),
    ],
)
def test_an_error_event_is_a_typed_error_with_the_servers_message(
    event: str, data: str, message: str
) -> None:
    with pytest.raises(tt.APIStatusError, match=message):
        image_event(event, data)


@pytest.mark.parametrize("data", ["not json", "[]", '{"no":"type"}', '{"type":5}'])
def test_an_event_that_is_not_an_image_event_is_a_format_error(data: str) -> None:
    with pytest.raises(tt.ResponseFormatError):
        image_event("", data)
