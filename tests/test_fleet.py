"""The values several workers share: keys, records, outcomes, verdicts (no Redis, no loop)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

import ttapi_async as tt
from ttapi_async._fleet import (
    FleetKeys,
    JobRecord,
    callback_verdict,
    decode_outcome,
    encode_outcome,
    token_digest,
)
from ttapi_async._protocol import parse_callback


TOKEN = "A" * 32


def test_the_token_is_stored_as_its_sha256() -> None:
    assert token_digest(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert TOKEN not in token_digest(TOKEN)


def test_keys_share_a_hash_tag_per_hook_and_per_job() -> None:
    keys = FleetKeys("app1")
    hook, early, confirm = keys.hook("d1")
    assert (hook, early, confirm) == ("app1:hook:{d1}", "app1:early:{d1}", "app1:confirm:{d1}")
    assert keys.job("j1") == "app1:job:{j1}"
    assert keys.result("j1") == "app1:result:{j1}"
    assert keys.channel == "app1:done"
    # Two prefixes never share a key: two apps on one Redis cannot collide.
    other = FleetKeys("app2")
    assert not {keys.job("j"), keys.result("j"), *keys.hook("d")} & {
        other.job("j"),
        other.result("j"),
        *other.hook("d"),
    }


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 65, "a{b}", "new\nline"])
def test_a_bad_prefix_is_refused_by_name(prefix: str) -> None:
    with pytest.raises(tt.ValidationError, match="prefix"):
        FleetKeys(prefix)


def test_a_job_record_round_trips_without_the_token() -> None:
    record = JobRecord("j1", "4o-image", hooked=True, submitted_at=1700000000.5, hook="d" * 64)
    data = record.encode()
    assert JobRecord.decode(data) == record
    assert TOKEN.encode() not in data


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b'{"job_id": "j"}', b"not json"])
def test_a_malformed_record_is_a_format_error(data: bytes) -> None:
    with pytest.raises(tt.ResponseFormatError):
        JobRecord.decode(data)


def test_an_outcome_round_trips_and_drops_the_hook_url() -> None:
    callback = (
        b'{"status":"SUCCESS","message":"success","jobId":"j1","data":{"jobId":"j1",'
        b'"prompt":"p","referImages":["https://r/1.png"],"imageUrl":"https://img/j1.png",'
        b'"quota":"2","finishTime":"2026-12-06 05:00:00",'
        b'"hookUrl":"https://me.example/hook/' + TOKEN.encode() + b'"}}'
    )
    snap = parse_callback(callback)
    assert snap.hook_url is not None
    data = encode_outcome(snap, "webhook")
    assert TOKEN.encode() not in data
    back, source = decode_outcome(data)
    assert source == "webhook"
    assert back.hook_url is None
    assert (back.job_id, back.status, back.image_url, back.quota, back.prompt) == (
        "j1",
        tt.JobStatus.SUCCESS,
        "https://img/j1.png",
        2.0,
        "p",
    )
    assert back.refer_images == ("https://r/1.png",)
    assert back.finish_time == dt.datetime(2026, 12, 6, 5, 0, tzinfo=dt.UTC)


def test_a_failed_outcome_keeps_its_reason() -> None:
    snap = parse_callback(b'{"status":"FAILED","message":"policy","data":{"jobId":"j2"}}')
    back, source = decode_outcome(encode_outcome(snap, "poll"))
    assert (back.status, back.message, source) == (tt.JobStatus.FAILED, "policy", "poll")


def test_an_outcome_without_a_source_says_poll() -> None:
    _, source = decode_outcome(b'{"status":"SUCCESS","data":{"jobId":"j3"}}')
    assert source == "poll"


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"source": "webhook"}', b"[[[" * 5000])
def test_a_foreign_message_on_the_channel_is_a_format_error(data: bytes) -> None:
    with pytest.raises(tt.ResponseFormatError):
        decode_outcome(data)


@pytest.mark.parametrize(
    ("reply", "status", "job", "confirm"),
    [
        ([404], 404, "", False),
        ([202], 202, "", False),
        ([400, b"other"], 400, "other", False),
        ([200, b"j1", 1], 200, "j1", True),
        ([200, b"j1", 0], 200, "j1", False),
    ],
)
def test_the_callback_script_reply_is_read(
    reply: list[object], status: int, job: str, confirm: bool
) -> None:
    verdict = callback_verdict(reply)
    assert (verdict.status, verdict.job_id, verdict.confirm) == (status, job, confirm)


@pytest.mark.parametrize("reply", [None, [], "200", 7])
def test_an_unexpected_script_reply_is_a_format_error(reply: object) -> None:
    with pytest.raises(tt.ResponseFormatError):
        callback_verdict(reply)
