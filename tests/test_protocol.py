"""The sans-I/O core: request building and reply parsing over bytes, with no event loop."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

import ttapi_async as tt
from ttapi_async import _json
from ttapi_async._images import ImageInfo
from ttapi_async._protocol import (
    EditImage,
    Multipart,
    build_dalle3,
    build_edit,
    build_fetch,
    build_generate,
    build_submit_4o,
    parse_callback,
    parse_error,
    parse_fetch,
    parse_images,
    parse_submit,
    retry_after,
)


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


PNG = ImageInfo(mime="image/png", width=1024, height=1024, size=1000, has_alpha=True)


# ----------------------------------------------------------------------------- building


def test_generate_body_drops_unset_and_keeps_given() -> None:
    """Only given parameters are sent, with OpenAI's names."""
    spec = build_generate({"prompt": "fox", "model": "gpt-image-1", "quality": "low", "n": None})
    assert spec.method == "POST"
    assert spec.path == "/v1/images/generations"
    assert spec.billable
    assert json.loads(spec.body) == {"prompt": "fox", "model": "gpt-image-1", "quality": "low"}  # type: ignore[arg-type]


def test_generate_omitted_model_is_not_sent() -> None:
    """With no model, none is sent and the server's default applies."""
    spec = build_generate({"prompt": "fox", "size": "256x256"})
    assert "model" not in json.loads(spec.body)  # type: ignore[arg-type]


def test_generate_drops_b64_response_format_for_gpt_image() -> None:
    """gpt-image-1 rejects response_format, so asking for b64_json (what it returns) is dropped."""
    spec = build_generate({"prompt": "fox", "model": "gpt-image-1", "response_format": "b64_json"})
    assert "response_format" not in json.loads(spec.body)  # type: ignore[arg-type]


def test_implied_gpt_image_drops_b64_response_format() -> None:
    """No model plus a GPT-image-only parameter is gpt-image-1: b64_json is dropped, not refused."""
    spec = build_generate({"prompt": "fox", "background": "opaque", "response_format": "b64_json"})
    assert json.loads(spec.body) == {"prompt": "fox", "background": "opaque"}  # type: ignore[arg-type]


def test_extra_body_is_merged_last_and_unchecked() -> None:
    """extra_body passes new parameters through, overriding same-named ones."""
    spec = build_generate(
        {"prompt": "fox", "model": "gpt-image-1"}, {"partial_images": 2, "model": "gpt-image-2"}
    )
    assert json.loads(spec.body) == {  # type: ignore[arg-type]
        "prompt": "fox",
        "model": "gpt-image-2",
        "partial_images": 2,
    }


def test_unknown_model_passes_through() -> None:
    """A model the SDK does not know is sent with its parameters unchecked."""
    spec = build_generate({"prompt": "fox", "model": "gpt-image-9", "size": "4096x4096"})
    assert json.loads(spec.body)["size"] == "4096x4096"  # type: ignore[arg-type]


def test_edit_is_multipart_with_sniffed_types() -> None:
    """Edits go as multipart; several images use image[], each with its sniffed MIME type."""
    webp = ImageInfo(mime="image/webp", width=1024, height=1024, size=10, has_alpha=False)
    spec = build_edit(
        {"prompt": "basket", "model": "gpt-image-1", "n": 2},
        [EditImage(b"a", PNG), EditImage(b"b", webp)],
        None,
    )
    assert isinstance(spec.body, Multipart)
    assert not spec.json
    assert dict(spec.body.fields) == {"prompt": "basket", "model": "gpt-image-1", "n": "2"}
    assert [(f[0], f[1], f[3]) for f in spec.body.files] == [
        ("image[]", "image.png", "image/png"),
        ("image[]", "image1.webp", "image/webp"),
    ]


def test_edit_single_image_and_mask_fields() -> None:
    """One image goes as 'image' and the mask as 'mask'."""
    spec = build_edit(
        {"prompt": "x", "model": "gpt-image-1"}, [EditImage(b"a", PNG)], EditImage(b"m", PNG)
    )
    assert isinstance(spec.body, Multipart)
    assert [f[0] for f in spec.body.files] == ["image", "mask"]


def test_dalle3_legacy_body() -> None:
    """The legacy route sends the documented fields."""
    spec = build_dalle3({"prompt": "cat", "size": "1024x1024", "quality": "hd", "model": None})
    assert spec.path == "/openai/v1/images/generations"
    assert json.loads(spec.body) == {"prompt": "cat", "size": "1024x1024", "quality": "hd"}  # type: ignore[arg-type]


def test_submit_4o_uses_wire_names() -> None:
    """4o submit sends prompt, referImages and hookUrl; a bare string is one reference URL."""
    spec = build_submit_4o("draw", "https://cdn/x.png", "https://me/hook")
    assert json.loads(spec.body) == {  # type: ignore[arg-type]
        "prompt": "draw",
        "referImages": ["https://cdn/x.png"],
        "hookUrl": "https://me/hook",
    }
    assert spec.billable


def test_fetch_is_a_free_get() -> None:
    """Fetch is a GET with jobId in the query, and not billable."""
    spec = build_fetch("abc")
    assert (spec.method, spec.path, spec.params, spec.billable) == (
        "GET",
        "/openai/4o-image/fetch",
        {"jobId": "abc"},
        False,
    )


# ----------------------------------------------------------------------------- parsing


def test_parse_images_openai_shape() -> None:
    """The raw OpenAI body becomes an ImagesResponse with usage."""
    r = parse_images(
        200,
        {},
        body(
            {
                "created": 5,
                "data": [{"b64_json": "aGk="}],
                "usage": {
                    "input_tokens": 9,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": 9},
                    "output_tokens": 4160,
                    "total_tokens": 4169,
                    "brand_new": 1,
                },
                "output_format": "png",
                "unknown_field": True,
            }
        ),
    )
    assert r.created == 5
    assert r.data[0].decode() == b"hi"
    assert r.usage is not None
    assert r.usage.total_tokens == 4169
    assert r.usage.input_tokens_details == tt.InputTokensDetails(image_tokens=0, text_tokens=9)
    assert r.output_format == "png"


def test_parse_images_unwraps_envelope() -> None:
    """The legacy DALL-E 3 envelope is unwrapped to the same model."""
    r = parse_images(
        200,
        {},
        body(
            {
                "status": "SUCCESS",
                "message": "success",
                "data": {"created": 1, "data": [{"url": "https://x", "revised_prompt": "a cat"}]},
            }
        ),
    )
    assert r.data[0].url == "https://x"
    assert r.data[0].revised_prompt == "a cat"
    with pytest.raises(ValueError, match="url"):
        r.data[0].decode()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"created": 1, "data": {}}', "ImagesResponse"),
        (b'{"created": 1, "data": "x"}', "ImagesResponse"),
        (b'{"data": []}', "ImagesResponse"),
        (b'{"created": true, "data": []}', "ImagesResponse"),
        (b'{"status": "SUCCESS", "data": null}', "no ImagesResponse"),
        (b'{"created": 1, "data": ["not an object"]}', "malformed"),
    ],
)
def test_parse_images_format_errors(raw: bytes, fragment: str) -> None:
    """A body that is not what the route promises raises ResponseFormatError with an excerpt."""
    with pytest.raises(tt.ResponseFormatError, match=fragment) as info:
        parse_images(200, {}, raw)
    assert info.value.status == 200


def test_parse_images_failed_envelope_on_200_is_raised() -> None:
    """A 200 carrying {"status": "FAILED"} is a refused request."""
    with pytest.raises(tt.BadRequestError, match="Parameter error"):
        parse_images(
            200, {}, body({"status": "FAILED", "message": "Parameter error", "data": None})
        )


@pytest.mark.parametrize(
    ("status", "payload", "cls"),
    [
        (400, {"status": "FAILED", "message": "Parameter error", "data": None}, tt.BadRequestError),
        (
            401,
            {"status": "FAILED", "message": "Wrong TT-API-KEY or email is not activated."},
            tt.AuthenticationError,
        ),
        (
            402,
            {"status": "FAILED", "message": "insufficient quota", "data": None},
            tt.InsufficientBalanceError,
        ),
        (
            403,
            {"status": "FAILED", "message": "Account Block", "data": None},
            tt.PermissionDeniedError,
        ),
        (404, {"status": "FAILED", "message": "no route", "data": None}, tt.NotFoundError),
        (429, {"status": "FAILED", "message": "too many", "data": None}, tt.RateLimitError),
        (499, {"status": "FAILED", "message": "queue full", "data": None}, tt.QueueFullError),
        (500, {"status": "FAILED", "message": "boom", "data": None}, tt.ServerError),
        (502, None, tt.ServerError),
        (504, {"status": "FAILED", "message": "timeout", "data": None}, tt.GatewayTimeoutError),
        (
            409,
            {"error": {"message": "conflict", "type": "x", "param": None, "code": None}},
            tt.BadRequestError,
        ),
        (
            400,
            {
                "error": {
                    "message": "Your request was rejected by the safety system.",
                    "type": "image_generation_user_error",
                    "param": None,
                    "code": "moderation_blocked",
                }
            },
            tt.ContentPolicyError,
        ),
        (
            400,
            {
                "error": {
                    "message": "rejected",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "content_policy_violation",
                }
            },
            tt.ContentPolicyError,
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            tt.InsufficientBalanceError,
        ),
    ],
)
def test_parse_error_maps_status_and_shape(
    status: int, payload: object, cls: type[Exception]
) -> None:
    """Each status and both body shapes map to the class a user catches."""
    raw = b"<html>bad gateway</html>" if payload is None else body(payload)
    err = parse_error(status, {}, raw)
    assert type(err) is cls
    assert err.status == status
    assert err.message


def test_parse_error_openai_fields() -> None:
    """OpenAI's message, type, param and code are kept."""
    err = parse_error(
        400,
        {},
        body(
            {
                "error": {
                    "message": "Unknown parameter: 'response_format'.",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": "unknown_parameter",
                }
            }
        ),
    )
    assert (err.code, err.type, err.param) == (
        "unknown_parameter",
        "invalid_request_error",
        "response_format",
    )
    assert "response_format" in str(err)


def test_rate_limit_carries_retry_after() -> None:
    """A 429's Retry-After is on the error."""
    err = parse_error(429, {"retry-after": "7"}, b"")
    assert isinstance(err, tt.RateLimitError)
    assert err.retry_after == 7.0


def test_retry_after_forms() -> None:
    """retry-after-ms wins; seconds and HTTP dates parse; junk is None."""
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize("key", ["jobId", "job_id"])
def test_parse_submit_accepts_both_keys(key: str) -> None:
    """The job id is read from data.jobId or data.job_id."""
    assert (
        parse_submit(200, {}, body({"status": "SUCCESS", "message": "", "data": {key: "j-1"}}))
        == "j-1"
    )


def test_parse_submit_without_id_is_a_format_error() -> None:
    """A success with no job id cannot be used: format error."""
    with pytest.raises(tt.ResponseFormatError, match="job id"):
        parse_submit(200, {}, body({"status": "SUCCESS", "message": "success", "data": {}}))


FETCH_SUCCESS = {
    "status": "SUCCESS",
    "message": "success",
    "jobId": "5ecc",
    "data": {
        "prompt": "A flat lay photo",
        "referImages": ["https://cdn.ttapi.io/demo/a.jpg"],
        "imageUrl": "https://cdnc.ttapi.io/2025-03-31/cd3f.png",
        "quota": "2",
        "finishTime": "2025-03-31 04:25:33",
        "hookUrl": "https://hooks.example/t/SECRET-TOKEN",
    },
}


def test_parse_fetch_success_is_tolerant() -> None:
    """quota as a string, finishTime without a zone and message 'success' normalise."""
    snap = parse_fetch(200, {}, body(FETCH_SUCCESS), "5ecc")
    assert snap.status is tt.JobStatus.SUCCESS
    assert snap.succeeded
    assert snap.is_terminal
    assert snap.message is None
    assert snap.quota == 2.0
    assert snap.finish_time == dt.datetime(2025, 3, 31, 4, 25, 33, tzinfo=dt.UTC)
    assert snap.refer_images == ("https://cdn.ttapi.io/demo/a.jpg",)
    assert snap.image_url == "https://cdnc.ttapi.io/2025-03-31/cd3f.png"
    assert "SECRET-TOKEN" not in repr(snap)


def test_parse_fetch_running_with_nulls_and_unknown_status() -> None:
    """message null while running; an unknown status is UNKNOWN and not terminal."""
    snap = parse_fetch(
        200,
        {},
        body(
            {
                "status": "ON_QUEUE",
                "message": None,
                "jobId": "j",
                "data": {"imageUrl": None, "quota": None, "finishTime": None},
            }
        ),
        "j",
    )
    assert snap.status is tt.JobStatus.ON_QUEUE
    assert not snap.is_terminal
    new = parse_fetch(200, {}, body({"status": "WARMING_UP", "jobId": "j", "data": {}}), "j")
    assert new.status is tt.JobStatus.UNKNOWN
    assert new.raw_status == "WARMING_UP"
    assert not new.is_terminal


def test_parse_fetch_job_failure_is_a_snapshot() -> None:
    """FAILED with a data object is a failed job, returned with its reason."""
    snap = parse_fetch(
        200,
        {},
        body(
            {
                "status": "FAILED",
                "message": "prompt violation",
                "jobId": "j",
                "data": {"quota": "2"},
            }
        ),
        "j",
    )
    assert snap.failed
    assert snap.message == "prompt violation"


def test_parse_fetch_failed_without_job_is_raised() -> None:
    """FAILED with data null is a failed request; 'not found' becomes JobNotFoundError."""
    with pytest.raises(tt.JobNotFoundError):
        parse_fetch(
            200, {}, body({"status": "FAILED", "message": "job not found", "data": None}), "j"
        )
    with pytest.raises(tt.JobNotFoundError):
        parse_fetch(
            404, {}, body({"status": "FAILED", "message": "job not found", "data": None}), "j"
        )
    with pytest.raises(tt.BadRequestError) as info:
        parse_fetch(
            200, {}, body({"status": "FAILED", "message": "gateway trouble", "data": None}), "j"
        )
    assert not isinstance(info.value, tt.JobNotFoundError)


def test_parse_fetch_uses_requested_id_when_reply_has_none() -> None:
    """Without a jobId in the reply, the id that was asked for is used."""
    snap = parse_fetch(200, {}, body({"status": "ON_QUEUE", "message": None, "data": {}}), "asked")
    assert snap.job_id == "asked"


def test_parse_callback_hides_hook_token_in_errors() -> None:
    """A callback parses like a fetch; a broken one never echoes the hook URL."""
    assert parse_callback(body(FETCH_SUCCESS)).job_id == "5ecc"
    with pytest.raises(tt.ResponseFormatError) as info:
        parse_callback(
            body({"status": "FAILED", "hookUrl": "https://h/t/SECRET-TOKEN", "data": None})
        )
    assert "SECRET-TOKEN" not in str(info.value)
    with pytest.raises(tt.ResponseFormatError, match="not JSON"):
        parse_callback(b"status=SUCCESS")


def test_json_codec_round_trip() -> None:
    """The JSON codec (stdlib or orjson) writes compact UTF-8."""
    assert _json.loads(_json.dumps({"a": "é"})) == {"a": "é"}
    assert b" " not in _json.dumps({"a": [1, 2]})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"status":"FAILED","message":"x","hookUrl":"https://h.example/t/SECRET-TOKEN',
        b"status=FAILED&hookUrl=https%3A%2F%2Fh.example%2Ft%2FSECRET-TOKEN",
        b'{"hookUrl":"https://h.example/t\\"SECRET-TOKEN"}',
    ],
)
def test_hook_urls_hidden_even_in_broken_bodies(raw: bytes) -> None:
    """Truncated JSON, form encoding and escaped quotes never leak a hook token."""
    with pytest.raises(tt.ResponseFormatError) as info:
        parse_fetch(200, {}, raw, "j")
    assert "SECRET-TOKEN" not in str(info.value)
    err = parse_error(500, {}, raw)
    assert "SECRET-TOKEN" not in str(err)
    assert "SECRET-TOKEN" not in err.body


@pytest.mark.parametrize("status", [401, 429, 500])
def test_not_found_words_do_not_override_the_status(status: int) -> None:
    """A 401/429/5xx mentioning 'not found' keeps its own class."""
    err = parse_error(
        status,
        {},
        body({"status": "FAILED", "message": "key does not exist"}),
        operation="gpt4o.fetch",
    )
    assert not isinstance(err, tt.JobNotFoundError)


def test_parsers_survive_hostile_bodies() -> None:
    """Deeply nested or odd JSON raises ResponseFormatError (or a status error), nothing else."""
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"created": 1, "data": [{"b64_json": ["x"]}]}',
        b'{"status": "SUCCESS", "data": {"jobId": 5}}',
        b'{"status": ["ON_QUEUE"], "jobId": "j", "data": {}}',
        (
            b'{"status": "ON_QUEUE", "jobId": "j", '
            b'"data": {"referImages": 5, "quota": {}, "finishTime": 3}}'
        ),
        b"null",
        b'"text"',
        b"\xff\xfe",
    ]
    for raw in hostile:
        for parse in (
            lambda r: parse_images(200, {}, r),
            lambda r: parse_submit(200, {}, r),
            lambda r: parse_fetch(200, {}, r, "j"),
            parse_callback,
        ):
            with contextlib.suppress(tt.TTAPIError):
                parse(raw)
        assert isinstance(parse_error(400, {}, raw), tt.APIStatusError)


def test_unhashable_parameters_are_validation_errors() -> None:
    """A list where a string belongs is a ValidationError, not a TypeError."""
    with pytest.raises(tt.ValidationError, match="size"):
        build_generate({"prompt": "x", "model": "gpt-image-1", "size": ["1024x1024"]})


# ------------------------------------------------------------------ hostile replies (issue 8)


@pytest.fixture(params=["orjson", "stdlib"])
def json_loads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each JSON backend: orjson (the speedups extra), then the stdlib."""
    if request.param == "orjson":
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(_json, "loads", orjson.loads)
    else:
        monkeypatch.setattr(_json, "loads", _json._std_loads)
    return str(request.param)


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """A JSON array nested ``depth`` levels deep (orjson accepts up to 1,024)."""
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize("key", ["jobId", "job_id"])
@pytest.mark.parametrize("where", ["top", "data"])
def test_fetch_answered_about_another_job_is_a_mismatch(key: str, where: str) -> None:
    """A fetch reply naming another job is JobMismatchError, never that job's snapshot."""
    reply: dict[str, Any] = {**FETCH_SUCCESS, "data": dict(FETCH_SUCCESS["data"])}  # type: ignore[arg-type]
    del reply["jobId"]
    (reply if where == "top" else reply["data"])[key] = "job-Y"
    with pytest.raises(tt.JobMismatchError) as info:
        parse_fetch(200, {}, body(reply), "job-X")
    assert (info.value.expected, info.value.received, info.value.status) == ("job-X", "job-Y", 200)
    assert isinstance(info.value, tt.ResponseFormatError)
    # The asked id, or no id at all, is the asked job.
    (reply if where == "top" else reply["data"])[key] = "job-X"
    assert parse_fetch(200, {}, body(reply), "job-X").job_id == "job-X"


def test_fetch_reply_with_contradicting_ids_is_a_mismatch() -> None:
    """The asked id at the top and another inside data is still another job's reply."""
    raw = body({"status": "SUCCESS", "jobId": "job-X", "data": {"jobId": "job-Y"}})
    with pytest.raises(tt.JobMismatchError, match="job-Y"):
        parse_fetch(200, {}, raw, "job-X")
    # A callback asks for nothing: it is taken as the job it names.
    assert parse_callback(body({**FETCH_SUCCESS, "jobId": "job-Y"})).job_id == "job-Y"


@pytest.mark.parametrize("depth", [1000, 1021])  # with 2 levels around it: orjson's 1,023
@pytest.mark.parametrize(
    "template",
    [
        b'{"error": {"message": %s, "type": "x", "code": "y"}}',
        b'{"error": {"message": "slow down", "code": %s, "param": %s}}',
        b'{"status": "FAILED", "message": %s, "data": null}',
    ],
)
def test_deeply_nested_error_bodies_keep_their_status_class(
    json_loads: str, depth: int, template: bytes
) -> None:
    """An error body nested ~1,000 deep is still a RateLimitError, not a RecursionError.

    (The stdlib json may refuse the depth itself: then the body is not JSON, and the
    status still decides the class.)
    """
    raw = template.replace(b"%s", nested(depth))
    try:
        _json.loads(raw)
    except (ValueError, RecursionError):
        decodable = False
    else:
        decodable = True
    err = parse_error(429, {"retry-after": "2"}, raw)
    assert isinstance(err, tt.RateLimitError)
    assert err.retry_after == 2.0
    assert len(str(err)) < 2000
    with pytest.raises(tt.RateLimitError):
        parse_images(429, {"retry-after": "2"}, raw)
    # A 200 carrying an error body is a refused request; one that cannot be read is not JSON.
    with pytest.raises(tt.BadRequestError if decodable else tt.ResponseFormatError):
        parse_images(200, {}, raw)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("message", lambda deep: {"status": "FAILED", "jobId": "j", "message": deep, "data": {}}),
        ("prompt", lambda deep: {"status": "FAILED", "jobId": "j", "data": {"prompt": deep}}),
        (
            "referImages",
            lambda deep: {"status": "FAILED", "jobId": "j", "data": {"referImages": [deep]}},
        ),
        ("usage", lambda deep: {"created": 1, "data": [], "usage": {"input_tokens": deep}}),
        ("url", lambda deep: {"created": 1, "data": [{"url": deep}]}),
    ],
)
def test_deeply_nested_fields_are_typed_errors_or_kept(
    json_loads: str, name: str, make: Callable[[str], object]
) -> None:
    """A field nested ~1,000 deep never raises RecursionError from any parser."""
    raw = body(make("@@")).replace(b'"@@"', nested(1000))
    outcomes: list[object] = []
    for parse in (
        lambda r: parse_images(200, {}, r),
        lambda r: parse_fetch(200, {}, r, "j"),
        parse_callback,
    ):
        try:
            outcomes.append(parse(raw))
        except tt.TTAPIError as exc:
            outcomes.append(exc)
            str(exc)
    if name == "message" and json_loads == "orjson":
        # A failed job keeps a (bounded) reason: its end is not lost to a format error.
        snap = outcomes[1]
        assert isinstance(snap, tt.JobSnapshot)
        assert snap.failed
        assert snap.message is not None
        assert len(snap.message) < 1000


def test_non_finite_and_huge_numbers_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib json reads Infinity, NaN and 400-digit ints: typed errors or tolerated."""
    monkeypatch.setattr(_json, "loads", _json._std_loads)
    big = "9" * 400
    for usage in (
        '{"input_tokens": Infinity}',
        '{"output_tokens": NaN}',
        '{"total_tokens": -Infinity}',
    ):
        with pytest.raises(tt.ResponseFormatError, match="malformed"):
            parse_images(200, {}, b'{"created": 1, "data": [], "usage": %s}' % usage.encode())
    with pytest.raises(tt.ResponseFormatError):
        parse_images(200, {}, b'{"created": 1e400, "data": []}')
    # quota is informative: an unreadable one is None, never a lost job end.
    for quota in (big, "Infinity", "NaN", f'"{big}"', '"1e400"', '"nan"'):
        raw = b'{"status": "SUCCESS", "jobId": "j", "data": {"quota": %s}}' % quota.encode()
        assert parse_fetch(200, {}, raw, "j").quota is None
        assert parse_callback(raw).quota is None
    # A huge int where a string belongs is a typed error (str() refuses 4,300+ digits).
    raw = b'{"status": "SUCCESS", "jobId": "j", "data": {"prompt": %s}}' % ("9" * 5000).encode()
    with pytest.raises(tt.ResponseFormatError):
        parse_fetch(200, {}, raw, "j")


def test_lone_surrogates_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib json decodes "\\ud800"; the parsers keep it or refuse it, never crash."""
    monkeypatch.setattr(_json, "loads", _json._std_loads)
    raw = (
        b'{"status": "FAILED", "jobId": "j", "message": "\\ud800", '
        b'"data": {"finishTime": "\\udfff"}}'
    )
    snap = parse_fetch(200, {}, raw, "j")
    assert snap.message == "\ud800"
    assert snap.finish_time is None
    err = parse_error(400, {}, b'{"error": {"message": "\\ud800", "code": "\\udc00"}}')
    assert err.code == "\udc00"
    str(err)


def test_refer_images_must_be_strings() -> None:
    """referImages items that are not strings are a format error, not their repr as a URL."""
    raw = body({"status": "SUCCESS", "jobId": "j", "data": {"referImages": [["https://a"]]}})
    with pytest.raises(tt.ResponseFormatError):
        parse_fetch(200, {}, raw, "j")
    raw = body({"status": "SUCCESS", "jobId": "j", "data": {"referImages": {"a": 1}}})
    with pytest.raises(tt.ResponseFormatError):
        parse_fetch(200, {}, raw, "j")


def test_images_response_needs_only_created() -> None:
    """OpenAI's schema requires only 'created': no data is an empty result, not an error."""
    r = parse_images(200, {}, b'{"created": 7}')
    assert (r.created, r.data) == (7, ())
    assert parse_images(200, {}, b'{"created": 7, "data": null}').data == ()
    wrapped = body({"status": "SUCCESS", "data": {"created": 7}})
    assert parse_images(200, {}, wrapped).data == ()


def test_usage_output_tokens_details_are_kept() -> None:
    """usage.output_tokens_details (image_tokens, text_tokens) is modelled, missing fields 0."""
    usage = {
        "input_tokens": 9,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 9},
        "output_tokens": 4200,
        "output_tokens_details": {"image_tokens": 4160, "text_tokens": 40},
        "total_tokens": 4209,
    }
    r = parse_images(200, {}, body({"created": 1, "data": [], "usage": usage}))
    assert r.usage is not None
    assert r.usage.output_tokens_details == tt.OutputTokensDetails(
        image_tokens=4160, text_tokens=40
    )
    usage["output_tokens_details"] = {"image_tokens": 5}
    r = parse_images(200, {}, body({"created": 1, "data": [], "usage": usage}))
    assert r.usage is not None
    assert r.usage.output_tokens_details == tt.OutputTokensDetails(image_tokens=5, text_tokens=0)
    del usage["output_tokens_details"]
    r = parse_images(200, {}, body({"created": 1, "data": [], "usage": usage}))
    assert r.usage is not None
    assert r.usage.output_tokens_details is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1e400"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "\u0663"}, None),  # ARABIC-INDIC DIGIT THREE: float() reads it as 3
        ({"retry-after": "1_0"}, None),
        ({"retry-after": "9" * 400}, 86_400.0),
        ({"retry-after": " 2 "}, 2.0),
        ({"retry-after-ms": "NaN", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "Infinity"}, None),
        ({"retry-after-ms": "9" * 400}, 86_400.0),
        ({"retry-after": "Wed, 21 Oct 99999 07:28:10 GMT"}, None),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 86_400.0),
        ({"retry-after": "Mon, 01 Jan 0001 00:00:00 GMT"}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 +9999"}, None),
    ],
)
def test_retry_after_hostile_values(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After is a finite number of seconds from 0 to a day, or None; never NaN or inf."""
    assert retry_after(headers, now=1445412480.0) == expected
    err = parse_error(429, headers, b"")
    assert isinstance(err, tt.RateLimitError)
    assert err.retry_after == expected


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"prompt": "a \ud800 cat", "model": "gpt-image-1"}, "prompt"),
        ({"prompt": "a cat", "model": "gpt-image-1", "user": "\udfff"}, "user"),
    ],
)
def test_unsendable_text_is_a_validation_error_naming_the_field(
    params: dict[str, object], param: str
) -> None:
    """A lone surrogate in caller input is refused before sending (it escaped as TypeError)."""
    with pytest.raises(tt.ValidationError) as info:
        build_generate(params)
    assert info.value.param == param
    assert "surrogate" in info.value.rule


def test_unencodable_extra_body_names_its_key() -> None:
    with pytest.raises(tt.ValidationError) as info:
        build_submit_4o("a cat", None, None, {"thing": object()})
    assert info.value.param == "thing"


def test_check_timeout() -> None:
    from ttapi_async._rules import check_timeout  # noqa: PLC0415

    assert check_timeout(None) is None
    assert check_timeout(float("inf")) is None
    assert check_timeout(5) == 5.0
    assert check_timeout(-1) == -1.0
    for bad in (float("nan"), "10", True):
        with pytest.raises(tt.ValidationError):
            check_timeout(bad)


def test_a_created_past_64_bits_parses_the_same_with_either_json() -> None:
    """orjson reads 10**20 as a float; it must still be a result, as with the stdlib."""
    body = b'{"created": 100000000000000000000, "data": [{"url": "https://x/y.png"}]}'
    assert parse_images(200, {}, body).created == 10**20
