"""Per-model parameter rules: each broken rule names the parameter, the value and the rule."""

from __future__ import annotations

import io
from typing import Any

import attrs
import pytest
from PIL import Image

import ttapi_async as tt
from ttapi_async._images import ImageInfo, sniff
from ttapi_async._rules import (
    check_dalle3,
    check_edit,
    check_fetch,
    check_generate,
    check_submit_4o,
)


def image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 20, 30, 0) if mode == "RGBA" else (10, 20, 30)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"prompt": ""}, "prompt", "non-empty"),
        ({"prompt": "x" * 1001}, "prompt", "dall-e-2 accepts at most 1000"),
        ({"prompt": "x" * 4001, "model": "dall-e-3"}, "prompt", "4000"),
        ({"prompt": "x" * 32001, "model": "gpt-image-1"}, "prompt", "32000"),
        ({"prompt": "x", "n": 0}, "n", "1 to 10"),
        ({"prompt": "x", "n": 11}, "n", "1 to 10"),
        ({"prompt": "x", "n": True}, "n", "integer"),
        ({"prompt": "x", "model": "dall-e-3", "n": 2}, "n", "n=1"),
        ({"prompt": "x", "model": "gpt-image-1", "size": "256x256"}, "size", "gpt-image-1 accepts"),
        ({"prompt": "x", "model": "dall-e-2", "size": "1792x1024"}, "size", "dall-e-2 accepts"),
        ({"prompt": "x", "model": "dall-e-3", "size": "auto"}, "size", "dall-e-3 accepts"),
        ({"prompt": "x", "model": "gpt-image-1", "quality": "hd"}, "quality", "high"),
        ({"prompt": "x", "model": "dall-e-3", "quality": "low"}, "quality", "hd"),
        ({"prompt": "x", "model": "dall-e-2", "quality": "hd"}, "quality", "standard"),
        (
            {"prompt": "x", "model": "gpt-image-1", "response_format": "url"},
            "response_format",
            "b64_json",
        ),
        ({"prompt": "x", "model": "dall-e-2", "response_format": "png"}, "response_format", "url"),
        ({"prompt": "x", "model": "gpt-image-1", "style": "vivid"}, "style", "only dall-e-3"),
        ({"prompt": "x", "model": "dall-e-3", "style": "moody"}, "style", "natural"),
        (
            {"prompt": "x", "model": "dall-e-3", "background": "opaque"},
            "background",
            "only the GPT image models",
        ),
        # No model but a GPT-image-only parameter: gpt-image-1 is served, and its rules apply.
        ({"prompt": "x", "background": "clear"}, "background", "gpt-image-1 accepts"),
        ({"prompt": "x", "moderation": "low", "size": "256x256"}, "size", "gpt-image-1 accepts"),
        (
            {"prompt": "x", "output_format": "png", "response_format": "url"},
            "response_format",
            "gpt-image-1 always returns b64_json",
        ),
        (
            {"prompt": "x", "model": "dall-e-2", "moderation": "low"},
            "moderation",
            "only the GPT image models",
        ),
        (
            {"prompt": "x", "model": "dall-e-3", "output_format": "png"},
            "output_format",
            "only the GPT image models",
        ),
        ({"prompt": "x", "model": "gpt-image-1", "output_format": "gif"}, "output_format", "jpeg"),
        (
            {"prompt": "x", "model": "gpt-image-1", "background": "clear"},
            "background",
            "transparent",
        ),
        ({"prompt": "x", "model": "gpt-image-1", "moderation": "off"}, "moderation", "low"),
        (
            {
                "prompt": "x",
                "model": "gpt-image-1",
                "background": "transparent",
                "output_format": "jpeg",
            },
            "background",
            "png or webp",
        ),
        (
            {"prompt": "x", "model": "gpt-image-1", "output_compression": 50},
            "output_compression",
            "webp or jpeg",
        ),
        (
            {
                "prompt": "x",
                "model": "gpt-image-1",
                "output_format": "webp",
                "output_compression": 101,
            },
            "output_compression",
            "0 to 100",
        ),
        (
            {"prompt": "x", "model": "dall-e-2", "output_compression": 5},
            "output_compression",
            "only the GPT image models",
        ),
        ({"prompt": "x", "user": 5}, "user", "string"),
        ({"prompt": "x", "model": ""}, "model", "model name"),
    ],
)
def test_generate_rules(params: dict[str, Any], param: str, fragment: str) -> None:
    """Each generation rule of ttapi-wire.md section 8 is enforced with a precise message."""
    with pytest.raises(tt.ValidationError) as info:
        check_generate(params)
    assert info.value.param == param
    assert fragment in info.value.rule
    assert param in str(info.value)


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "x", "model": "gpt-image-1", "size": "1536x1024", "quality": "low", "n": 10},
        {
            "prompt": "x",
            "model": "gpt-image-1",
            "background": "transparent",
            "output_format": "webp",
            "output_compression": 0,
        },
        {"prompt": "x", "model": "gpt-image-1", "background": "transparent"},
        {
            "prompt": "x",
            "model": "gpt-image-1",
            "moderation": "low",
            "output_format": "jpeg",
            "output_compression": 80,
        },
        {
            "prompt": "x",
            "model": "dall-e-3",
            "size": "1792x1024",
            "quality": "hd",
            "style": "natural",
            "n": 1,
        },
        {
            "prompt": "x",
            "model": "dall-e-2",
            "size": "256x256",
            "response_format": "b64_json",
            "n": 10,
            "quality": "standard",
        },
        {"prompt": "x" * 1000},
        # Section 8: with no model the default is dall-e-2 *unless* a GPT-image-only
        # parameter is used; then these are gpt-image-1 requests, not dall-e-2 mistakes.
        {"prompt": "x", "background": "opaque"},
        {"prompt": "x", "moderation": "low", "size": "1536x1024", "quality": "high"},
        {"prompt": "x" * 5000, "output_format": "webp", "output_compression": 40},
        {"prompt": "x", "model": "gpt-image-9", "size": "4096x4096", "style": "anything", "n": 50},
    ],
)
def test_generate_valid_parameters_pass(params: dict[str, Any]) -> None:
    """Valid combinations, and unknown models, are not refused."""
    check_generate(params)


def test_long_prompt_is_not_echoed() -> None:
    """A too-long prompt is described by its length, not printed."""
    with pytest.raises(tt.ValidationError) as info:
        check_generate({"prompt": "secret " * 600, "model": "dall-e-3"})
    assert "secret secret" not in str(info.value)
    assert "length 4200" in str(info.value)


def info_of(fmt: str, size: tuple[int, int], mode: str = "RGB") -> ImageInfo:
    return sniff(image_bytes(fmt, size, mode))


def test_edit_rules_gpt_image() -> None:
    """GPT image model edits: up to 16 png/webp/jpeg images under 50 MB (2026 section 2)."""
    ok = [info_of("PNG", (64, 64)), info_of("WEBP", (64, 32)), info_of("JPEG", (10, 10))]
    check_edit({"prompt": "x", "model": "gpt-image-1"}, ok, None)
    with pytest.raises(tt.ValidationError, match="at most 16"):
        check_edit({"prompt": "x", "model": "gpt-image-1"}, ok * 6, None)
    gif = info_of("GIF", (8, 8))
    with pytest.raises(tt.ValidationError) as info:
        check_edit({"prompt": "x", "model": "gpt-image-1"}, [ok[0], gif], None)
    assert info.value.param == "image[1]"
    big = ImageInfo(mime="image/png", width=8, height=8, size=49 * 1024 * 1024, has_alpha=False)
    for model in ("gpt-image-1", "gpt-image-1.5", "gpt-image-2"):
        check_edit({"prompt": "x", "model": model}, [big], None)
        huge = attrs.evolve(big, size=50 * 1024 * 1024)
        with pytest.raises(tt.ValidationError, match="under 50 MB"):
            check_edit({"prompt": "x", "model": model}, [huge], None)


def test_edit_rules_dalle2() -> None:
    """dall-e-2 edits: one square PNG under 4 MB, with transparency when there is no mask."""
    rgba = info_of("PNG", (64, 64), "RGBA")
    check_edit({"prompt": "x"}, [rgba], None)
    with pytest.raises(tt.ValidationError, match="at most 1"):
        check_edit({"prompt": "x", "model": "dall-e-2"}, [rgba, rgba], None)
    with pytest.raises(tt.ValidationError, match="square"):
        check_edit({"prompt": "x"}, [info_of("PNG", (64, 32), "RGBA")], None)
    with pytest.raises(tt.ValidationError, match="accepts png"):
        check_edit({"prompt": "x"}, [info_of("JPEG", (64, 64))], None)
    with pytest.raises(tt.ValidationError, match="transparency"):
        check_edit({"prompt": "x"}, [info_of("PNG", (64, 64))], None)
    check_edit({"prompt": "x"}, [info_of("PNG", (64, 64))], info_of("PNG", (64, 64), "RGBA"))
    big = ImageInfo(mime="image/png", width=8, height=8, size=4 * 1024 * 1024, has_alpha=True)
    with pytest.raises(tt.ValidationError, match="under 4 MB"):
        check_edit({"prompt": "x"}, [big], None)
    with pytest.raises(tt.ValidationError, match="1000"):
        check_edit({"prompt": "x" * 1001}, [rgba], None)


def test_edit_rules_mask() -> None:
    """The mask is a PNG under 4 MB with the first image's dimensions."""
    img = info_of("PNG", (64, 64))
    with pytest.raises(tt.ValidationError, match="64x64"):
        check_edit({"prompt": "x", "model": "gpt-image-1"}, [img], info_of("PNG", (32, 32), "RGBA"))
    with pytest.raises(tt.ValidationError, match="must be a readable PNG"):
        check_edit({"prompt": "x", "model": "gpt-image-1"}, [img], info_of("WEBP", (64, 64)))


def test_edit_rules_model_and_empty() -> None:
    """dall-e-3 cannot edit; at least one image is needed; gpt-image-only params stay so."""
    img = info_of("PNG", (64, 64), "RGBA")
    with pytest.raises(tt.ValidationError, match="not dall-e-3"):
        check_edit({"prompt": "x", "model": "dall-e-3"}, [img], None)
    with pytest.raises(tt.ValidationError, match="at least one"):
        check_edit({"prompt": "x", "model": "gpt-image-1"}, [], None)
    with pytest.raises(tt.ValidationError, match="only the GPT image models"):
        check_edit({"prompt": "x", "model": "dall-e-2", "background": "opaque"}, [img], None)


def test_edit_without_model_but_gpt_image_param_is_gpt_image() -> None:
    """No model plus a GPT-image-only parameter is a gpt-image-1 edit (section 8), not dall-e-2.

    gpt-image-1 takes several non-square, opaque images; dall-e-2 would refuse each.
    """
    imgs = [info_of("WEBP", (64, 32)), info_of("JPEG", (10, 10))]
    check_edit({"prompt": "x", "background": "opaque"}, imgs, None)
    check_edit({"prompt": "x", "output_format": "jpeg", "output_compression": 50}, imgs, None)
    with pytest.raises(tt.ValidationError, match="gpt-image-1 accepts"):
        check_edit({"prompt": "x", "background": "opaque", "size": "256x256"}, imgs, None)
    with pytest.raises(tt.ValidationError, match="square"):  # without one, still dall-e-2
        check_edit({"prompt": "x"}, [info_of("PNG", (64, 32), "RGBA")], None)


def test_dalle3_legacy_rules() -> None:
    """The legacy route: dall-e-3 only, size required, n fixed at 1, quality standard/hd."""
    check_dalle3({"prompt": "x", "size": "1024x1792", "quality": "hd", "n": 1, "model": "dall-e-3"})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "x"}, "size"),
        ({"prompt": "x", "size": "512x512"}, "size"),
        ({"prompt": "x", "size": "1024x1024", "n": 2}, "n"),
        ({"prompt": "x", "size": "1024x1024", "quality": "auto"}, "quality"),
        ({"prompt": "x", "size": "1024x1024", "model": "dall-e-2"}, "model"),
        ({"prompt": "x" * 4001, "size": "1024x1024"}, "prompt"),
    ]
    for params, param in cases:
        with pytest.raises(tt.ValidationError) as info:
            check_dalle3(params)
        assert info.value.param == param


def test_4o_rules_hide_the_hook_url() -> None:
    """4o submit: prompt required, reference URLs http(s), and a bad hook URL is never echoed."""
    check_submit_4o(
        {"prompt": "draw", "referImages": ["https://a/b.png"], "hookUrl": "https://h/x"}
    )
    with pytest.raises(tt.ValidationError) as info:
        check_submit_4o({"prompt": "draw", "referImages": ["file:///etc/passwd"]})
    assert info.value.param == "refer_images[0]"
    with pytest.raises(tt.ValidationError) as info:
        check_submit_4o({"prompt": "draw", "hookUrl": "ftp://token-123"})
    assert "token-123" not in str(info.value)
    with pytest.raises(tt.ValidationError, match="prompt"):
        check_submit_4o({"prompt": "   "})
    with pytest.raises(tt.ValidationError, match="job_id"):
        check_fetch("")


def test_sniff_reads_type_size_and_alpha() -> None:
    """MIME type, dimensions and transparency come from the bytes."""
    assert sniff(image_bytes("PNG", (30, 20), "RGBA")) == ImageInfo(
        "image/png", 30, 20, sniff(image_bytes("PNG", (30, 20), "RGBA")).size, True
    )
    rgb = sniff(image_bytes("PNG", (30, 20)))
    assert (rgb.mime, rgb.has_alpha) == ("image/png", False)
    pal = io.BytesIO()
    Image.new("P", (4, 4)).save(pal, "PNG", transparency=0)
    assert sniff(pal.getvalue()).has_alpha
    jpg = sniff(image_bytes("JPEG", (17, 9)))
    assert (jpg.mime, jpg.width, jpg.height) == ("image/jpeg", 17, 9)
    webp = sniff(image_bytes("WEBP", (12, 8), "RGBA"))
    assert (webp.mime, webp.width, webp.height) == ("image/webp", 12, 8)
    junk = sniff(b"not an image at all")
    assert (junk.mime, junk.width) == ("application/octet-stream", -1)


@pytest.mark.parametrize(
    "size", ["auto", "1024x1024", "1536x864", "3840x1280", "1280x3840", "16x16"]
)
def test_gpt_image_2_takes_free_sizes(size: str) -> None:
    check_generate({"prompt": "x", "model": "gpt-image-2", "size": size})


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ("1000x1000", "multiples of 16"),
        ("4096x2304", "at most 3840"),
        ("3840x1248", "3:1"),
        ("1024", "WIDTHxHEIGHT"),
        ("0x1024", "WIDTHxHEIGHT"),
        ("9" * 5000 + "x16", "WIDTHxHEIGHT"),  # past int()'s digit limit: still a rule
        ("\uff11\uff10\uff12\uff14x1024", "WIDTHxHEIGHT"),  # full-width digits: not ASCII
    ],
)
def test_gpt_image_2_refuses_a_bad_size_by_its_rule(size: str, rule: str) -> None:
    with pytest.raises(tt.ValidationError, match=rule) as info:
        check_generate({"prompt": "x", "model": "gpt-image-2", "size": size})
    assert info.value.param == "size"


def test_gpt_image_1_5_has_gpt_image_1_sizes() -> None:
    check_generate({"prompt": "x", "model": "gpt-image-1.5", "size": "1536x1024"})
    with pytest.raises(tt.ValidationError, match="size"):
        check_generate({"prompt": "x", "model": "gpt-image-1.5", "size": "1536x864"})


def test_input_fidelity_is_for_the_gpt_image_models() -> None:
    img = info_of("PNG", (64, 64), "RGBA")
    for model in ("gpt-image-1", "gpt-image-1.5", "gpt-image-2"):
        check_edit({"prompt": "x", "model": model, "input_fidelity": "high"}, [img], None)
    with pytest.raises(tt.ValidationError, match="high, low") as info:
        check_edit({"prompt": "x", "model": "gpt-image-1", "input_fidelity": "max"}, [img], None)
    assert info.value.param == "input_fidelity"
    with pytest.raises(tt.ValidationError, match="GPT image models"):
        check_edit({"prompt": "x", "model": "dall-e-2", "input_fidelity": "low"}, [img], None)
