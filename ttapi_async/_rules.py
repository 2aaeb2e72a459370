"""Parameter rules of the image endpoints, as data, and the pure checks that apply them.

Strictly private. The tables follow ``ttapi-wire.md`` section 8 (OpenAI's gpt-image-1-era
rules, which TTAPI passes through), ``ttapi-wire-2026.md`` section 2 (gpt-image-1.5,
gpt-image-2 and the current 50 MB edit inputs) and the seed document for the legacy
DALL-E 3 and 4o-image routes. The client runs these checks before sending anything; the emulator
runs the same checks on what it receives, so both sides agree on one table.

Only models named here are checked in detail. Any other model passes through with the
universal checks (prompt present, ``n`` a positive integer), so a model TTAPI adds
tomorrow works today.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ._errors import ValidationError
from ._images import ImageInfo


__all__ = [
    "DEFAULT_MODEL",
    "EDIT_MODELS",
    "GENERATE_MODELS",
    "GPT_IMAGE_MODEL",
    "JSON_EDIT_MODEL",
    "ModelRules",
    "check_dalle3",
    "check_edit",
    "check_fetch",
    "check_generate",
    "check_submit_4o",
    "check_submit_gpt",
    "check_timeout",
    "implied_model",
]

#: The model the server uses when a request names none (OpenAI's default)...
DEFAULT_MODEL: Final = "dall-e-2"
#: ...unless the request uses a parameter only GPT image models take (section 8).
GPT_IMAGE_MODEL: Final = "gpt-image-1"
#: A JSON edit (images by URL or file id) that names no model: OpenAI's current edit
#: default (2026 section 2, VERIFIED [O2]); the JSON form is the GPT image models' only.
JSON_EDIT_MODEL: Final = "gpt-image-1.5"

_MB = 1024 * 1024
_GPT_IMAGE_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536", "auto"})
_DALLE2_SIZES = frozenset({"256x256", "512x512", "1024x1024"})
_DALLE3_SIZES = frozenset({"1024x1024", "1792x1024", "1024x1792"})
_RESPONSE_FORMATS = frozenset({"url", "b64_json"})
_BACKGROUNDS = frozenset({"transparent", "opaque", "auto"})
_MODERATIONS = frozenset({"low", "auto"})
_OUTPUT_FORMATS = frozenset({"png", "jpeg", "webp"})
_STYLES = frozenset({"vivid", "natural"})
_GPT_IMAGE_ONLY = ("background", "moderation", "output_format", "output_compression")


@attrs.frozen
class ModelRules:
    """What one model accepts on one route."""

    name: str
    max_prompt: int
    sizes: frozenset[str]
    qualities: frozenset[str]
    max_n: int = 10
    #: dall-e models take ``response_format``; gpt-image models always return b64_json.
    response_format: bool = True
    style: bool = False
    #: background, moderation, output_format, output_compression.
    gpt_image_params: bool = False
    # Edit-only limits.
    max_images: int = 1
    max_image_bytes: int = 4 * _MB
    image_types: frozenset[str] = frozenset({"image/png"})
    square_png: bool = False
    #: gpt-image-2: any ``WxH`` within the rules both its sources share (2026 section 10:
    #: both sides multiples of 16, the longer edge at most 3840, a ratio up to 3:1), or
    #: one of ``sizes``. The pixel bounds belong to gpt-image-2-plus on /openai/gpt/*.
    free_size: bool = False


_GPT_IMAGE_1 = ModelRules(
    name="gpt-image-1",
    max_prompt=32000,
    sizes=_GPT_IMAGE_SIZES,
    qualities=frozenset({"auto", "high", "medium", "low"}),
    response_format=False,
    gpt_image_params=True,
    max_images=16,
    # "less than 50MB" (2026 section 2, VERIFIED [O2]); the gpt-image-1-era text said 25 MB.
    max_image_bytes=50 * _MB,
    image_types=frozenset({"image/png", "image/webp", "image/jpeg"}),
)
# 2026 section 2: the same sizes, qualities and edit inputs as gpt-image-1.
_GPT_IMAGE_1_5 = attrs.evolve(_GPT_IMAGE_1, name="gpt-image-1.5")
_GPT_IMAGE_2 = attrs.evolve(
    _GPT_IMAGE_1, name="gpt-image-2", sizes=frozenset({"auto"}), free_size=True
)
_GPT_MODELS = (_GPT_IMAGE_1, _GPT_IMAGE_1_5, _GPT_IMAGE_2)
_DALLE_2 = ModelRules(
    name="dall-e-2",
    max_prompt=1000,
    sizes=_DALLE2_SIZES,
    qualities=frozenset({"auto", "standard"}),
    square_png=True,
)
_DALLE_3 = ModelRules(
    name="dall-e-3",
    max_prompt=4000,
    sizes=_DALLE3_SIZES,
    qualities=frozenset({"auto", "hd", "standard"}),
    max_n=1,
    style=True,
)

#: Rules of ``POST /v1/images/generations`` per known model.
GENERATE_MODELS: Final[Mapping[str, ModelRules]] = {
    r.name: r for r in (*_GPT_MODELS, _DALLE_2, _DALLE_3)
}
#: Rules of ``POST /v1/images/edits`` per known model (dall-e-3 cannot edit).
EDIT_MODELS: Final[Mapping[str, ModelRules]] = {r.name: r for r in (*_GPT_MODELS, _DALLE_2)}

_SIZE_STEP = 16
_SIZE_DIGITS = 5
_SIZE_EDGE = 3840
_SIZE_RATIO = 3
_INPUT_FIDELITIES = frozenset({"high", "low"})
_PARTIALS = 3  # partial images a stream may carry, at most

_MASK_MAX_BYTES = 4 * _MB
_REFER_IMAGES_MAX = 16  # INFERRED: no documented cap; a generous bound catches mistakes


def _one_of(param: str, value: object, allowed: frozenset[str], model: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(param, value, f"{model} accepts {', '.join(sorted(allowed))}")


def _check_prompt(prompt: object, max_len: int | None, model: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt", prompt, "a non-empty string is required")
    if max_len is not None and len(prompt) > max_len:
        raise ValidationError(
            "prompt", prompt, f"{model} accepts at most {max_len} characters, got {len(prompt)}"
        )


def _check_n(n: object, max_n: int, model: str) -> None:
    # bool is an int in Python; n=True is a mistake, not 1.
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValidationError("n", n, "an integer is required")
    if max_n == 1 and n != 1:
        raise ValidationError("n", n, f"{model} generates exactly one image per request (n=1)")
    if not 1 <= n <= max_n:
        raise ValidationError("n", n, f"{model} accepts 1 to {max_n}")


def implied_model(p: Mapping[str, Any]) -> object:
    """The model a request is served by: its ``model``, or the server's default for it.

    OpenAI (and ``ttapi-wire.md`` section 8): with no model the default is dall-e-2
    *unless a parameter specific to the GPT image models is used*; then it is gpt-image-1.
    A ``model`` that is given is returned as it is, whatever its type.
    """
    model = p.get("model")
    if model is not None:
        return model
    if any(p.get(k) is not None for k in _GPT_IMAGE_ONLY):
        return GPT_IMAGE_MODEL
    return DEFAULT_MODEL


def _check_gpt_image_params(p: Mapping[str, Any], rules: ModelRules, model: str) -> None:
    if not rules.gpt_image_params:
        given = [k for k in _GPT_IMAGE_ONLY if p.get(k) is not None]
        if given:
            name = given[0]
            raise ValidationError(
                name, p[name], f"only the GPT image models accept {name}, not {model}"
            )
        return
    background = p.get("background")
    if background is not None:
        _one_of("background", background, _BACKGROUNDS, model)
    if (v := p.get("moderation")) is not None:
        _one_of("moderation", v, _MODERATIONS, model)
    fmt = p.get("output_format")
    if fmt is not None:
        _one_of("output_format", fmt, _OUTPUT_FORMATS, model)
    effective_fmt = fmt or "png"
    if background == "transparent" and effective_fmt not in {"png", "webp"}:
        raise ValidationError(
            "background", "transparent", f"needs output_format png or webp, not {effective_fmt}"
        )
    comp = p.get("output_compression")
    if comp is not None:
        if not isinstance(comp, int) or isinstance(comp, bool) or not 0 <= comp <= 100:  # noqa: PLR2004
            raise ValidationError("output_compression", comp, "an integer from 0 to 100")
        if effective_fmt not in {"webp", "jpeg"}:
            raise ValidationError(
                "output_compression",
                comp,
                f"applies only to output_format webp or jpeg, not {effective_fmt}",
            )


def _check_free_size(size: object, rules: ModelRules, model: str) -> None:
    """A ``WIDTHxHEIGHT`` size by the rules both of gpt-image-2's sources share."""
    if isinstance(size, str) and size in rules.sizes:
        return
    w, _, h = size.partition("x") if isinstance(size, str) else ("", "", "")
    digits = w.isdigit() and h.isdigit() and w.isascii() and h.isascii()
    # At most 5 digits: past them a size is surely too big, and int() of a huge one fails.
    if not (digits and len(w) <= _SIZE_DIGITS and len(h) <= _SIZE_DIGITS and int(w) and int(h)):
        raise ValidationError("size", size, f"{model} takes 'auto' or WIDTHxHEIGHT, e.g. 1536x864")
    width, height = int(w), int(h)
    if width % _SIZE_STEP or height % _SIZE_STEP:
        raise ValidationError("size", size, f"{model} needs both sides multiples of 16")
    if max(width, height) > _SIZE_EDGE:
        raise ValidationError("size", size, f"{model} takes a longer edge of at most 3840")
    if max(width, height) > _SIZE_RATIO * min(width, height):
        raise ValidationError("size", size, f"{model} takes a ratio of at most 3:1 either way")


def _check_stream(p: Mapping[str, Any], rules: ModelRules | None, model: str) -> None:
    """``stream`` (GPT image models only) and ``partial_images`` (0-3, with stream only)."""
    stream = p.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise ValidationError("stream", stream, "True or False")
        if stream and rules is not None and not rules.gpt_image_params:
            raise ValidationError(
                "stream", stream, f"only the GPT image models stream, not {model}"
            )
    partial = p.get("partial_images")
    if partial is not None:
        if (
            not isinstance(partial, int)
            or isinstance(partial, bool)
            or not 0 <= partial <= _PARTIALS
        ):
            raise ValidationError("partial_images", partial, "an integer from 0 to 3")
        if stream is not True:
            raise ValidationError("partial_images", partial, "takes effect only with stream=True")


def _check_common(p: Mapping[str, Any], rules: ModelRules | None, model: str) -> None:
    """Checks shared by generations and edits."""
    _check_prompt(p.get("prompt"), rules.max_prompt if rules else None, model)
    if (n := p.get("n")) is not None:
        _check_n(n, rules.max_n if rules else 10_000, model)
    if (user := p.get("user")) is not None and not isinstance(user, str):
        raise ValidationError("user", user, "a string is required")
    _check_stream(p, rules, model)
    if rules is None:
        return
    if (size := p.get("size")) is not None:
        if rules.free_size:
            _check_free_size(size, rules, model)
        else:
            _one_of("size", size, rules.sizes, model)
    if (quality := p.get("quality")) is not None:
        _one_of("quality", quality, rules.qualities, model)
    rf = p.get("response_format")
    if rf is not None:
        if not rules.response_format:
            raise ValidationError(
                "response_format",
                rf,
                f"{model} always returns b64_json and rejects response_format",
            )
        _one_of("response_format", rf, _RESPONSE_FORMATS, model)
    _check_gpt_image_params(p, rules, model)


def _rules_for(
    table: Mapping[str, ModelRules], p: Mapping[str, Any], route: str
) -> tuple[ModelRules | None, str]:
    model = implied_model(p)
    if not isinstance(model, str) or not model:
        raise ValidationError("model", model, "a model name string is required")
    rules = table.get(model)
    if rules is None and model in GENERATE_MODELS:
        # A known model on a route it cannot use (dall-e-3 edits).
        raise ValidationError(
            "model", model, f"{route} supports {', '.join(sorted(table))}, not {model}"
        )
    return rules, model


def check_generate(p: Mapping[str, Any]) -> None:
    """Check the parameters of ``POST /v1/images/generations`` (None means "not given").

    Raises:
        ValidationError: naming the first parameter that breaks a rule.
    """
    rules, model = _rules_for(GENERATE_MODELS, p, "images.generate")
    _check_common(p, rules, model)
    style = p.get("style")
    if style is not None and rules is not None:
        if not rules.style:
            raise ValidationError("style", style, f"only dall-e-3 accepts style, not {model}")
        _one_of("style", style, _STYLES, model)


def check_edit(
    p: Mapping[str, Any],
    images: Sequence[ImageInfo | None],
    mask: ImageInfo | None,
    *,
    has_mask: bool | None = None,
    by_reference: bool = False,
) -> None:
    """Check ``POST /v1/images/edits``: the parameters, the images and the mask.

    ``images`` and ``mask`` are what :func:`ttapi_async._images.sniff` found in the bytes;
    None for an image given by reference whose bytes are not here (an ``https://`` URL,
    a file id). ``has_mask`` says a mask is given when its bytes are not (default: a
    ``mask`` is). ``by_reference``: a JSON edit (``images[]``), which only the GPT image
    models take (dall-e-2 edits are multipart uploads).
    """
    rules, model = _rules_for(EDIT_MODELS, p, "images.edit")
    _check_common(p, rules, model)
    masked = mask is not None if has_mask is None else has_mask
    if rules is not None and by_reference and not rules.gpt_image_params:
        raise ValidationError(
            "image",
            "ImageURL/FileID",
            f"{model} edits take uploaded files (bytes, paths), not URLs",
        )
    if (fidelity := p.get("input_fidelity")) is not None and rules is not None:
        # Which GPT image models take it is in dispute (2026 section 2): the server decides
        # that; the values are not in dispute.
        if not rules.gpt_image_params:
            raise ValidationError(
                "input_fidelity", fidelity, f"only the GPT image models accept it, not {model}"
            )
        _one_of("input_fidelity", fidelity, _INPUT_FIDELITIES, model)
    if not images:
        raise ValidationError("image", images, "at least one image is required")
    if rules is not None:
        if len(images) > rules.max_images:
            raise ValidationError(
                "image",
                f"{len(images)} images",
                f"{model} accepts at most {rules.max_images} image(s)",
            )
        for i, img in enumerate(images):
            if img is not None:
                _check_edit_image(
                    "image" if len(images) == 1 else f"image[{i}]", img, rules, model, masked=masked
                )
    if mask is not None:
        if mask.mime != "image/png" or mask.width < 0:
            raise ValidationError("mask", mask.describe(), "the mask must be a readable PNG")
        if mask.size >= _MASK_MAX_BYTES:
            raise ValidationError("mask", mask.describe(), "the mask must be under 4 MB")
        first = images[0]
        if first is not None and (mask.width, mask.height) != (first.width, first.height):
            raise ValidationError(
                "mask",
                mask.describe(),
                "the mask must have the first image's dimensions "
                f"({first.name + ': ' if first.name else ''}{first.width}x{first.height})",
            )


def _check_edit_image(
    name: str, img: ImageInfo, rules: ModelRules, model: str, *, masked: bool
) -> None:
    """One edit input's bytes against its model's rules."""
    if img.mime not in rules.image_types:
        allowed = ", ".join(sorted(t.removeprefix("image/") for t in rules.image_types))
        raise ValidationError(name, img.describe(), f"{model} accepts {allowed} images")
    if img.width < 0 or img.height < 0:
        raise ValidationError(name, img.describe(), "the image's dimensions are unreadable")
    if img.size >= rules.max_image_bytes:
        raise ValidationError(
            name,
            img.describe(),
            f"{model} accepts images under {rules.max_image_bytes // _MB} MB",
        )
    if rules.square_png and img.width != img.height:
        raise ValidationError(name, img.describe(), f"{model} needs a square PNG (width == height)")
    if rules.square_png and not masked and not img.has_alpha:
        raise ValidationError(
            name,
            img.describe(),
            f"{model} without a mask needs a PNG with transparency (its transparent "
            "areas are what gets edited)",
        )


def check_dalle3(p: Mapping[str, Any]) -> None:
    """Check the legacy ``POST /openai/v1/images/generations`` (DALL-E 3 only)."""
    model = p.get("model")
    if model is not None and model != "dall-e-3":
        raise ValidationError("model", model, "the legacy DALL-E 3 route accepts only dall-e-3")
    _check_prompt(p.get("prompt"), _DALLE_3.max_prompt, "dall-e-3")
    size = p.get("size")
    if size is None:
        raise ValidationError(
            "size", size, "required on this route: 1024x1024, 1024x1792 or 1792x1024"
        )
    _one_of("size", size, _DALLE3_SIZES, "dall-e-3")
    if (n := p.get("n")) is not None:
        _check_n(n, 1, "dall-e-3")
    if (quality := p.get("quality")) is not None:
        _one_of("quality", quality, frozenset({"standard", "hd"}), "dall-e-3")
    if (style := p.get("style")) is not None:
        _one_of("style", style, _STYLES, "dall-e-3")


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 8  # noqa: PLR2004


def check_submit_4o(p: Mapping[str, Any]) -> None:
    """Check ``POST /openai/4o-image/generations`` (wire names: prompt, referImages, hookUrl)."""
    _check_prompt(p.get("prompt"), None, "4o-image")
    refs = p.get("referImages")
    if refs is not None:
        if not isinstance(refs, list | tuple):
            raise ValidationError("refer_images", refs, "a list of image URLs is required")
        if len(refs) > _REFER_IMAGES_MAX:
            raise ValidationError(
                "refer_images", f"{len(refs)} URLs", f"at most {_REFER_IMAGES_MAX} images"
            )
        for i, url in enumerate(refs):
            if not _is_http_url(url):
                raise ValidationError(f"refer_images[{i}]", url, "an http(s) URL is required")
    hook = p.get("hookUrl")
    if hook is not None and not _is_http_url(hook):
        # The value is not echoed: a hook URL may carry a secret token.
        raise ValidationError("hook_url", "<hidden>", "an http(s) URL is required")


#: ``/openai/gpt/generations`` (2026 section 6): the server's default model, and the models
#: ``aspect_ratio`` and ``size`` are for.
GPT_ROUTE_DEFAULT: Final = "gpt-image-2"
_ASPECT_RATIO_MODEL = "gpt-image-2"
_SIZE_MODEL = "gpt-image-2-plus"
_ASPECT_RATIOS = frozenset({"1:1", "3:4", "4:3", "16:9", "9:16"})
_PLUS_PIXELS = (655_360, 8_294_400)


def check_submit_gpt(p: Mapping[str, Any]) -> None:
    """Check ``POST /openai/gpt/generations`` (by its wire names).

    The fields: prompt, model, aspect_ratio, size, referImages, hookUrl. ``aspect_ratio``
    is for gpt-image-2 only (the default when ``model`` is omitted) and ``size`` for
    gpt-image-2-plus only, within its bounds: TTAPI silently adjusts a bad size (2026
    section 6), so the SDK refuses one and says why.
    """
    model = p.get("model", GPT_ROUTE_DEFAULT)
    if not isinstance(model, str) or not model:
        raise ValidationError("model", model, "a model name string is required")
    if (ratio := p.get("aspect_ratio")) is not None:
        if model != _ASPECT_RATIO_MODEL:
            raise ValidationError(
                "aspect_ratio", ratio, f"only {_ASPECT_RATIO_MODEL} takes aspect_ratio, not {model}"
            )
        _one_of("aspect_ratio", ratio, _ASPECT_RATIOS, model)
    if (size := p.get("size")) is not None:
        if model != _SIZE_MODEL:
            raise ValidationError(
                "size", size, f"only {_SIZE_MODEL} takes size (gpt-image-2: aspect_ratio)"
            )
        plus = ModelRules(name=model, max_prompt=0, sizes=frozenset(), qualities=frozenset())
        _check_free_size(size, plus, model)
        width, height = (int(v) for v in str(size).split("x"))
        low, high = _PLUS_PIXELS
        if not low <= width * height <= high:
            raise ValidationError(
                "size", size, f"{model} takes {low:,} to {high:,} pixels, got {width * height:,}"
            )
    # The rest (prompt, referImages, hookUrl) as on the 4o route.
    check_submit_4o(p)


def check_fetch(job_id: object) -> None:
    """Check a job id before a fetch."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise ValidationError("job_id", job_id, "a non-empty job id string is required")


def check_timeout(value: object, param: str = "timeout") -> float | None:
    """A call's ``timeout=`` in seconds, or None for no limit (``math.inf`` is no limit too).

    Raises:
        ValidationError: not a number, or NaN (a negative timeout is allowed: it has
            already run out, and the call says so with ``RequestTimeout``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(param, value, "seconds as a number, or None for no limit")
    seconds = float(value)
    if math.isnan(seconds):
        raise ValidationError(param, value, "seconds as a number, not NaN")
    return None if math.isinf(seconds) and seconds > 0 else seconds
