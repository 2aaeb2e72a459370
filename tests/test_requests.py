"""Request values, fingerprints, dry-run validation and batch files (no event loop)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ttapi_async import (
    Dalle3Request,
    EditRequest,
    GenerateRequest,
    GPT4oRequest,
    ValidationError,
)
from ttapi_async._requests import (
    fingerprint,
    label,
    params,
    read_rows,
    request_from_row,
    validate,
)


def test_fingerprint_is_stable_and_tells_inputs_apart() -> None:
    a = GenerateRequest(prompt="a fox", model="gpt-image-1", size="1024x1024")
    assert fingerprint(a) == fingerprint(
        GenerateRequest(prompt="a fox", model="gpt-image-1", size="1024x1024")
    )
    assert fingerprint(a) != fingerprint(GenerateRequest(prompt="a fox", model="gpt-image-1"))
    assert fingerprint(GPT4oRequest(prompt="a fox")) != fingerprint(GenerateRequest(prompt="a fox"))
    assert fingerprint(GPT4oRequest(prompt="x", extra_body={"k": 1})) != fingerprint(
        GPT4oRequest(prompt="x", extra_body={"k": 2})
    )


def test_params_leave_out_unset_values_and_hook_urls() -> None:
    r = GPT4oRequest(
        prompt="p", refer_images="https://x/y.png", extra_body={"hookUrl": "https://h/t", "a": 1}
    )
    assert params(r) == {"prompt": "p", "refer_images": ["https://x/y.png"], "a": 1}
    e = EditRequest(image=b"\x89PNG....", prompt="q", model="gpt-image-1")
    assert params(e)["image"][0].startswith("<8 bytes sha256:")


def test_label_is_one_short_line() -> None:
    assert label(GPT4oRequest(prompt="a\n  b")) == "a b"
    assert len(label(GPT4oRequest(prompt="x" * 500))) == 60


def test_validate_names_the_parameter_without_sending() -> None:
    validate(GenerateRequest(prompt="ok", model="gpt-image-1", size="1024x1536"))
    with pytest.raises(ValidationError, match="size"):
        validate(GenerateRequest(prompt="ok", model="gpt-image-1", size="999x999"))
    with pytest.raises(ValidationError, match="size"):
        validate(Dalle3Request(prompt="ok", size="512x512"))
    with pytest.raises(ValidationError, match=r"refer_images\[0\]"):
        validate(GPT4oRequest(prompt="ok", refer_images=["not a url"]))


def test_validate_reads_edit_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(src)
    validate(EditRequest(image=[src], prompt="hat", model="gpt-image-1"))
    with pytest.raises(ValidationError, match="image"):
        validate(EditRequest(image=[tmp_path / "missing.png"], prompt="hat"))
    buf = io.BytesIO()
    Image.new("RGB", (32, 16)).save(buf, "PNG")
    with pytest.raises(ValidationError, match="square"):
        validate(EditRequest(image=buf.getvalue(), prompt="hat", model="dall-e-2"))


def test_plain_lines_skip_blanks_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# header\na fox\n\n  a cat  \n", encoding="utf-8")
    assert list(read_rows(f)) == [(2, {"prompt": "a fox"}), (4, {"prompt": "a cat"})]


def test_jsonl_rows_and_bad_lines_are_all_reported(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a", "n": 2}\n"just a prompt"\n{broken\n[1]\n', encoding="utf-8")
    rows = list(read_rows(f))
    assert rows[0] == (1, {"prompt": "a", "n": 2})
    assert rows[1] == (2, {"prompt": "just a prompt"})
    assert [n for n, r in rows if isinstance(r, ValidationError)] == [3, 4]


def test_csv_rows_convert_types_and_reject_unknown_columns(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("prompt,n,size\na fox,2,1024x1024\na cat,,\n", encoding="utf-8")
    rows = [r for _, r in read_rows(f)]
    assert rows == [{"prompt": "a fox", "n": "2", "size": "1024x1024"}, {"prompt": "a cat"}]
    assert isinstance(rows[0], dict)
    r = request_from_row("generate", rows[0], {"model": "gpt-image-1"})
    assert r == GenerateRequest(prompt="a fox", n=2, size="1024x1024", model="gpt-image-1")
    with pytest.raises(ValidationError, match="colour"):
        request_from_row("generate", {"prompt": "x", "colour": "red"})
    with pytest.raises(ValidationError, match="n="):
        request_from_row("generate", {"prompt": "x", "n": "two"})
    with pytest.raises(ValidationError, match="size"):
        request_from_row("dalle3", {"prompt": "x"})
    with pytest.raises(ValidationError, match="prompt"):
        request_from_row("4o", {"prompt": "  "})
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="prompt column"):
        list(read_rows(bad))


def test_list_fields_split_on_pipes() -> None:
    r = request_from_row("4o", {"prompt": "x", "refer_images": "https://a/1.png | https://a/2.png"})
    assert r == GPT4oRequest(prompt="x", refer_images=("https://a/1.png", "https://a/2.png"))
