"""The emulator's own parameter rules: what api.ttapi.io accepts, as a table and its checks.

Strictly private. Written from the wire references, never from the SDK: nothing here
imports :mod:`ttapi_async._rules`, so a wrong SDK rule shows up as a disagreement
(``tests/test_emulator_rules.py`` compares the two verdicts over a grid) instead of
passing every test by construction.

Sources, as tagged there:

* ``ttapi-wire.md`` section 8: OpenAI's gpt-image-1-era rules for ``/v1/images/*``, which
  TTAPI passes through (CONFIRMED [O1, O2]); section 9 for the error codes; section 5 and
  the seed document (TTAPI's Chinese page) for the legacy DALL-E 3 route; sections 6 and
  7.1 for 4o-image submit and fetch.
* ``ttapi-wire-2026.md`` section 2: gpt-image-1.5 and gpt-image-2 (free ``WxH`` sizes),
  ``partial_images``, ``input_fidelity`` and the current 50 MB cap on edit inputs.

Where a reference is only INFERRED, or the sources conflict, the emulator is tolerant: it
accepts and lets the real server (or the stricter SDK) decide. Each such place says so.
A model name the table does not know is refused with OpenAI's 400 (``param: "model"``),
so a typo such as ``gpt-image-9`` fails here before it is billed for real. TTAPI has no
closed list (2026 section 10): names given to the emulator as ``extra_models`` pass with
the universal checks only (a prompt, a positive ``n``), as a newer model would.

The checks are pure: they take the parsed parameters (and what :func:`read_upload` saw
in uploaded bytes) and raise :class:`Refused`, which the routes turn into a 400 in their
own shape.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.parse
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
from PIL import Image


__all__ = [
    "EDIT_INPUTS",
    "GPT_ROUTE_MODELS",
    "MODELS",
    "EditInputs",
    "ModelRules",
    "Refused",
    "Upload",
    "check_dalle3",
    "check_edit",
    "check_edit_json",
    "check_fetch",
    "check_generate",
    "check_model",
    "check_submit_4o",
    "form_params",
    "read_upload",
    "served_model",
]

_MB: Final = 1024 * 1024


class Refused(Exception):  # noqa: N818 - a verdict inside the emulator, never seen outside
    """A request breaks a rule: the 400 to answer, in words and OpenAI's ``param``/``code``."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_value") -> None:
        """Name the parameter, say what is wrong, and give OpenAI's ``error.code``."""
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


# --------------------------------------------------------------------------- the table


@attrs.frozen
class ModelRules:
    """What one model accepts on ``/v1/images/*`` (wire §8; 2026 §2)."""

    #: Longest prompt, in characters.
    prompt_max: int
    #: The sizes it takes; None is gpt-image-2's free ``WxH`` (see :func:`_free_size`).
    sizes: frozenset[str] | None
    qualities: frozenset[str]
    n_max: int = 10
    #: ``response_format`` (url | b64_json): dall-e only; GPT image models answer 400
    #: ``unknown_parameter`` (CONFIRMED [O5]).
    response_format: bool = False
    #: ``style`` (vivid | natural): dall-e-3 only.
    style: bool = False
    #: The GPT image parameters (background, moderation, output_format,
    #: output_compression; 2026: partial_images, input_fidelity).
    gpt_params: bool = False


@attrs.frozen
class EditInputs:
    """What one model takes as edit inputs on ``POST /v1/images/edits`` (wire §8)."""

    max_images: int
    #: Each image must be strictly smaller than this.
    max_bytes: int
    types: frozenset[str]
    #: dall-e-2: a square PNG, which without a mask must have transparency.
    square_png: bool = False


_GPT_SIZES: Final = frozenset({"1024x1024", "1536x1024", "1024x1536", "auto"})
_GPT_QUALITIES: Final = frozenset({"low", "medium", "high", "auto"})
_GPT = ModelRules(prompt_max=32000, sizes=_GPT_SIZES, qualities=_GPT_QUALITIES, gpt_params=True)

#: Rules of the models the emulator knows, on both /v1 routes.
MODELS: Final[Mapping[str, ModelRules]] = {
    "gpt-image-1": _GPT,
    # 2026 §2: the same sizes and qualities as gpt-image-1 (VERIFIED [O2, T3]).
    "gpt-image-1.5": _GPT,
    # 2026 §2: "arbitrary resolutions ... as WIDTHxHEIGHT" (VERIFIED [O2]).
    "gpt-image-2": attrs.evolve(_GPT, sizes=None),
    "dall-e-2": ModelRules(
        prompt_max=1000,
        sizes=frozenset({"256x256", "512x512", "1024x1024"}),
        qualities=frozenset({"standard", "auto"}),
        response_format=True,
    ),
    "dall-e-3": ModelRules(
        prompt_max=4000,
        sizes=frozenset({"1024x1024", "1792x1024", "1024x1792"}),
        qualities=frozenset({"hd", "standard", "auto"}),
        n_max=1,
        response_format=True,
        style=True,
    ),
}

# 2026 §2: "less than 50MB. You can provide up to 16 images" (VERIFIED [O2]). The
# gpt-image-1-era text said 25 MB; the sources differ by date, so the emulator takes the
# larger, current cap.
_GPT_INPUTS = EditInputs(
    max_images=16,
    max_bytes=50 * _MB,
    types=frozenset({"image/png", "image/webp", "image/jpeg"}),
)

#: Edit inputs per model that can edit (dall-e-3 cannot: wire §4, CONFIRMED [S5, S7]).
EDIT_INPUTS: Final[Mapping[str, EditInputs]] = {
    "gpt-image-1": _GPT_INPUTS,
    "gpt-image-1.5": _GPT_INPUTS,
    "gpt-image-2": _GPT_INPUTS,
    "dall-e-2": EditInputs(
        max_images=1, max_bytes=4 * _MB, types=frozenset({"image/png"}), square_png=True
    ),
}

#: The model when a request names none (wire §8 and the seed: dall-e-2 on both routes) ...
_DEFAULT_MODEL: Final = "dall-e-2"
#: ... unless it uses a parameter only gpt-image-1 takes (O1: "unless a parameter
#: specific to gpt-image-1 is used").
_IMPLIES_GPT: Final = ("background", "moderation", "output_format", "output_compression")

_RESPONSE_FORMATS: Final = frozenset({"url", "b64_json"})
_STYLES: Final = frozenset({"vivid", "natural"})
_BACKGROUNDS: Final = frozenset({"transparent", "opaque", "auto"})
_MODERATIONS: Final = frozenset({"low", "auto"})
_OUTPUT_FORMATS: Final = frozenset({"png", "jpeg", "webp"})
_INPUT_FIDELITIES: Final = frozenset({"high", "low"})
_PARTIAL_IMAGES_MAX: Final = 3
_COMPRESSION_MAX: Final = 100
_MASK_MAX_BYTES: Final = 4 * _MB
# gpt-image-2 free sizes: the rules both of its sources share (2026 §10).
_FREE_SIZE: Final = re.compile(r"([1-9][0-9]{0,4})x([1-9][0-9]{0,4})")
_FREE_SIZE_STEP: Final = 16
_FREE_SIZE_EDGE: Final = 3840
_FREE_SIZE_RATIO: Final = 3

#: The legacy DALL-E 3 route (wire §5, CONFIRMED [S5]; the seed marks ``size`` required).
_DALLE3_SIZES: Final = frozenset({"1024x1024", "1024x1792", "1792x1024"})
_DALLE3_QUALITIES: Final = frozenset({"standard", "hd"})

#: Multipart fields that carry integers (everything in a form is text).
_INT_FIELDS: Final = ("n", "output_compression", "partial_images")
_FORM_INT: Final = re.compile(r"[+-]?[0-9]+")


# --------------------------------------------------------------------------- helpers


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # noqa: PLR2004


def _listed(values: frozenset[str]) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def _one_of(param: str, value: object, allowed: frozenset[str], model: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise Refused(
            param,
            f"Invalid '{param}' for {model}: {_show(value)}. "
            f"Supported values are: {_listed(allowed)}.",
        )


def _integer(param: str, value: object) -> int:
    # bool is an int in Python, but JSON's true is not a number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused(
            param, f"Invalid type for '{param}': expected an integer, but got {_show(value)}."
        )
    return value


def _prompt(p: Mapping[str, Any], max_len: int | None) -> None:
    prompt = p.get("prompt")
    # Present and non-empty. A prompt of spaces is let through: what OpenAI does with
    # one is not documented (tolerant).
    if prompt is None or prompt == "":
        raise Refused("prompt", "Missing required parameter: 'prompt'.")
    if not isinstance(prompt, str):
        raise Refused(
            "prompt", f"Invalid type for 'prompt': expected a string, got {_show(prompt)}."
        )
    if max_len is not None and len(prompt) > max_len:
        raise Refused(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{max_len}, but got a string with length {len(prompt)} instead.",
            "string_above_max_length",
        )


def _n(p: Mapping[str, Any], n_max: int | None) -> None:
    value = p.get("n")
    if value is None:
        return
    n = _integer("n", value)
    if n < 1:
        raise Refused(
            "n",
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} "
            "instead.",
        )
    if n_max is not None and n > n_max:
        raise Refused(
            "n",
            f"Invalid 'n': integer above maximum value. Expected a value <= {n_max}, but got "
            f"{n} instead.",
        )


def _free_size(size: str) -> bool:
    if size == "auto":
        return True
    match = _FREE_SIZE.fullmatch(size)
    if match is None:
        return False
    w, h = int(match[1]), int(match[2])
    return (
        w % _FREE_SIZE_STEP == 0
        and h % _FREE_SIZE_STEP == 0
        and max(w, h) <= _FREE_SIZE_EDGE
        and max(w, h) <= _FREE_SIZE_RATIO * min(w, h)
    )


def _size(p: Mapping[str, Any], rules: ModelRules, model: str) -> None:
    size = p.get("size")
    if size is None:
        return
    if rules.sizes is None:
        if not isinstance(size, str) or not _free_size(size):
            raise Refused(
                "size",
                f"The size is not supported by this model. {model} takes 'auto' or WIDTHxHEIGHT "
                "with both multiples of 16, the longer edge at most 3840 and a ratio up to 3:1.",
                "invalid_size",
            )
    elif not isinstance(size, str) or size not in rules.sizes:
        raise Refused(
            "size",
            f"The size is not supported by this model. {model} supports {_listed(rules.sizes)}.",
            "invalid_size",
        )


def _not_for(param: str, model: str, who: str) -> Refused:
    return Refused(param, f"Invalid '{param}': {model} does not take it ({who} only).")


def _gpt_params(p: Mapping[str, Any], rules: ModelRules, model: str) -> None:
    if not rules.gpt_params:
        for name in _IMPLIES_GPT:
            if p.get(name) is not None:
                raise _not_for(name, model, "GPT image models")
        # partial_images / input_fidelity on dall-e: the 400 is INFERRED (2026 §9), so
        # they are let through (tolerant).
        return
    background = p.get("background")
    if background is not None:
        _one_of("background", background, _BACKGROUNDS, model)
    if (moderation := p.get("moderation")) is not None:
        _one_of("moderation", moderation, _MODERATIONS, model)
    fmt = p.get("output_format")
    if fmt is not None:
        _one_of("output_format", fmt, _OUTPUT_FORMATS, model)
    fmt = fmt or "png"  # OpenAI's default
    # Transparency needs a format that has it (wire §8, CONFIRMED [O1]). gpt-image-2's
    # own refusal of "transparent" changed over 2026 (2026 §2): not enforced (tolerant).
    if background == "transparent" and fmt not in {"png", "webp"}:
        raise Refused(
            "background",
            f"Invalid 'background': transparent needs output_format png or webp, not {fmt}.",
        )
    compression = p.get("output_compression")
    if compression is not None:
        level = _integer("output_compression", compression)
        if not 0 <= level <= _COMPRESSION_MAX:
            raise Refused(
                "output_compression",
                f"Invalid 'output_compression': expected an integer from 0 to 100, got {level}.",
            )
        # "only supported ... with the webp or jpeg output formats" (wire §8, CONFIRMED [O1]).
        if fmt not in {"jpeg", "webp"}:
            raise Refused(
                "output_compression",
                f"Invalid 'output_compression': it applies to output_format jpeg or webp, "
                f"not {fmt}.",
            )
    partial = p.get("partial_images")
    if partial is not None and not 0 <= _integer("partial_images", partial) <= _PARTIAL_IMAGES_MAX:
        raise Refused("partial_images", "Invalid 'partial_images': expected 0 to 3.")
    if (fidelity := p.get("input_fidelity")) is not None:
        _one_of("input_fidelity", fidelity, _INPUT_FIDELITIES, model)


def served_model(p: Mapping[str, Any]) -> str:
    """The model that serves a /v1 request: its ``model``, or the server's default.

    Raises:
        Refused: ``model`` is given but is not a non-empty string.
    """
    model = p.get("model")
    if model is None:
        if any(p.get(name) is not None for name in _IMPLIES_GPT):
            return "gpt-image-1"
        return _DEFAULT_MODEL
    if not isinstance(model, str) or not model:
        raise Refused("model", f"Invalid 'model': a model name is required, got {_show(model)}.")
    return model


#: Models of ``/openai/gpt/generations`` (2026 §6), and the one used when none is named.
GPT_ROUTE_MODELS: Final = frozenset(
    {"gpt-image-2", "gpt-image-2-plus", "gpt-image-1.5", "gpt-image-1", "gpt-4o-image"}
)


def check_model(
    model: str, extra: frozenset[str], known: Mapping[str, object] | frozenset[str]
) -> None:
    """Refuse a model name neither ``known`` nor ``extra`` (the emulator's option) holds.

    The message is OpenAI's for an unknown value, listing what is accepted.

    Raises:
        Refused: with ``param="model"``.
    """
    if model in known or model in extra:
        return
    accepted = ", ".join(repr(m) for m in sorted({*known, *extra}))
    raise Refused(
        "model",
        f"Invalid value: {_show(model)}. Supported values are: {accepted}. (The TTAPI "
        "emulator knows these; a test adds names with Emulator(extra_models=[...]), a "
        "standalone emulator with --extra-model NAME.)",
    )


def _common(p: Mapping[str, Any], model: str, rules: ModelRules | None) -> None:
    """The checks generations and edits share."""
    _prompt(p, rules.prompt_max if rules is not None else None)
    _n(p, rules.n_max if rules is not None else None)
    if (user := p.get("user")) is not None and not isinstance(user, str):
        raise Refused("user", f"Invalid type for 'user': expected a string, got {_show(user)}.")
    if rules is None:
        return  # a model the table does not know: the server decides the rest
    _size(p, rules, model)
    if (quality := p.get("quality")) is not None:
        _one_of("quality", quality, rules.qualities, model)
    rf = p.get("response_format")
    if rf is not None:
        if not rules.response_format:
            raise Refused(
                "response_format", "Unknown parameter: 'response_format'.", "unknown_parameter"
            )
        _one_of("response_format", rf, _RESPONSE_FORMATS, model)
    _gpt_params(p, rules, model)


# --------------------------------------------------------------------------- the routes


def check_generate(p: Mapping[str, Any], extra_models: frozenset[str] = frozenset()) -> str:
    """Check ``POST /v1/images/generations``; return the model that serves it.

    ``extra_models`` are accepted besides the table's (see :func:`check_model`).

    Raises:
        Refused: the first rule the request breaks.
    """
    model = served_model(p)
    check_model(model, extra_models, MODELS)
    rules = MODELS.get(model)
    _common(p, model, rules)
    style = p.get("style")
    if style is not None and rules is not None:
        if not rules.style:
            raise _not_for("style", model, "dall-e-3")
        _one_of("style", style, _STYLES, model)
    return model


@attrs.frozen
class Upload:
    """What the emulator reads in one uploaded file (with Pillow, from the bytes)."""

    #: ``image/png``, ``image/jpeg``, ... or None when Pillow cannot read it.
    mime: str | None
    width: int
    height: int
    #: Bytes.
    size: int
    #: An alpha channel or a transparent colour.
    alpha: bool

    def describe(self) -> str:
        """A short description for messages (never the bytes)."""
        if self.mime is None:
            return f"<unreadable, {self.size} bytes>"
        kind = self.mime.removeprefix("image/")
        return f"<{kind} {self.width}x{self.height}, {self.size} bytes>"


def read_upload(data: bytes) -> Upload:
    """Read an uploaded file's type, dimensions and transparency (headers only)."""
    try:
        with warnings.catch_warnings():
            # A huge declared size is the rules' business, not a warning to raise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                mime = img.get_format_mimetype()
                width, height = img.size
                alpha = img.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
                    "transparency" in img.info
                )
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return Upload(mime=None, width=0, height=0, size=len(data), alpha=False)
    return Upload(mime=mime, width=width, height=height, size=len(data), alpha=alpha)


def _edit_inputs(model: str, inputs: EditInputs, images: Sequence[Upload], has_mask: bool) -> None:
    if len(images) > inputs.max_images:
        raise Refused(
            "image",
            f"Invalid 'image': {model} takes at most {inputs.max_images} image(s), "
            f"got {len(images)}.",
        )
    for i, img in enumerate(images):
        name = "image" if len(images) == 1 else f"image[{i}]"
        if img.mime not in inputs.types:
            kinds = ", ".join(sorted(t.removeprefix("image/") for t in inputs.types))
            raise Refused(
                name, f"Invalid '{name}': {model} takes {kinds} images, got {img.describe()}."
            )
        if img.size >= inputs.max_bytes:
            raise Refused(
                name,
                f"Invalid '{name}': each image must be under {inputs.max_bytes // _MB} MB, "
                f"got {img.describe()}.",
            )
        if inputs.square_png and img.width != img.height:
            raise Refused(
                name, f"Invalid '{name}': {model} needs a square PNG, got {img.describe()}."
            )
        if inputs.square_png and not has_mask and not img.alpha:
            raise Refused(
                name,
                f"Invalid '{name}': without a mask, {model} needs a PNG with transparency (its "
                f"transparent areas are what gets edited), got {img.describe()}.",
            )


def check_edit(
    p: Mapping[str, Any],
    images: Sequence[Upload],
    mask: Upload | None,
    extra_models: frozenset[str] = frozenset(),
) -> str:
    """Check ``POST /v1/images/edits``; return the model that serves it.

    Raises:
        Refused: the first rule the request breaks.
    """
    model = served_model(p)
    check_model(model, extra_models, MODELS)
    inputs = EDIT_INPUTS.get(model)
    if inputs is None and model in MODELS:
        raise Refused(
            "model",
            f"Invalid 'model': {model} cannot edit images; the edit models are "
            f"{_listed(frozenset(EDIT_INPUTS))}.",
        )
    _common(p, model, MODELS.get(model))
    if not images:
        raise Refused("image", "Missing required parameter: 'image'.")
    if inputs is not None:
        _edit_inputs(model, inputs, images, has_mask=mask is not None)
    if mask is not None:
        # "a valid PNG file, less than 4MB, and have the same dimensions as image"; with
        # several images it applies to the first (wire §8, CONFIRMED [O2]).
        if mask.mime != "image/png":
            raise Refused("mask", f"Invalid 'mask': a PNG is required, got {mask.describe()}.")
        if mask.size >= _MASK_MAX_BYTES:
            raise Refused("mask", f"Invalid 'mask': it must be under 4 MB, got {mask.describe()}.")
        first = images[0]
        if (mask.width, mask.height) != (first.width, first.height):
            raise Refused(
                "mask",
                f"Invalid 'mask': it must have the image's dimensions "
                f"{first.width}x{first.height}, got {mask.describe()}.",
            )
    return model


#: A JSON edit names no model: OpenAI's current edit default (2026 §2, VERIFIED [O2]),
#: a GPT image model, as the JSON form is theirs only.
_JSON_EDIT_DEFAULT: Final = "gpt-image-1.5"
_DATA_URL: Final = re.compile(r"data:(image/[A-Za-z0-9.+-]+)?;base64,(.*)", re.DOTALL)


def _reference(value: object, name: str) -> Upload | None:
    """One ``{"image_url"}`` or ``{"file_id"}`` object (2026 §4); a data: URL's bytes read."""
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or not (set(value) <= {"image_url", "file_id"})
    ):
        raise Refused(name, f"Invalid '{name}': provide exactly one of file_id or image_url.")
    ((kind, ref),) = value.items()
    if not isinstance(ref, str) or not ref.strip():
        raise Refused(name, f"Invalid '{name}.{kind}': a non-empty string is required.")
    if kind == "file_id":
        return None  # an OpenAI Files id: nothing here to read (TTAPI has no upload route)
    if ref.startswith("https://"):
        return None  # the emulator fetches nothing beyond loopback: trusted as given
    match = _DATA_URL.fullmatch(ref)
    if match is None:
        raise Refused(name, f"Invalid '{name}.image_url': an https:// or base64 data: URL.")
    try:
        data = base64.b64decode(match[2], validate=True)
    except (ValueError, binascii.Error):
        raise Refused(name, f"Invalid '{name}.image_url': the base64 does not decode.") from None
    return read_upload(data)


def check_edit_json(
    p: Mapping[str, Any], extra_models: frozenset[str] = frozenset()
) -> tuple[str, int]:
    """Check a JSON ``POST /v1/images/edits`` (2026 §4); the model and the image count.

    Raises:
        Refused: the first rule the request breaks.
    """
    model = p.get("model") or _JSON_EDIT_DEFAULT
    if not isinstance(model, str):
        raise Refused("model", f"Invalid type for 'model': expected a string, got {_show(model)}.")
    check_model(model, extra_models, MODELS)
    q = {**p, "model": model}
    rules = MODELS.get(model)
    if rules is not None and not rules.gpt_params:
        # INFERRED [S1]: "JSON edits support GPT image models only; DALL-E edits require
        # multipart (dall-e-2 only)".
        raise Refused("model", f"Invalid 'model': {model} edits need a multipart upload.")
    _common(q, model, rules)
    images = p.get("images")
    if not isinstance(images, list) or not images:
        raise Refused("images", "Missing required parameter: 'images'.")
    uploads = [_reference(v, f"images[{i}]") for i, v in enumerate(images)]
    mask = None if p.get("mask") is None else _reference(p["mask"], "mask")
    inputs = EDIT_INPUTS.get(model)
    if inputs is not None:
        if len(images) > inputs.max_images:
            raise Refused("images", f"Invalid 'images': {model} takes at most {inputs.max_images}.")
        known = [u for u in uploads if u is not None]
        _edit_inputs(model, attrs.evolve(inputs, max_images=len(images)), known, has_mask=True)
    if mask is not None and mask.mime != "image/png":
        raise Refused("mask", f"Invalid 'mask': a PNG is required, got {mask.describe()}.")
    return model, len(images)


def form_params(fields: Mapping[str, str]) -> dict[str, Any]:
    """A multipart form's fields as parameters: the integer fields turned into integers.

    Raises:
        Refused: an integer field that is not an integer.
    """
    p: dict[str, Any] = dict(fields)
    for name in _INT_FIELDS:
        value = p.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or _FORM_INT.fullmatch(value.strip()) is None:
            raise Refused(
                name, f"Invalid type for '{name}': expected an integer, but got {_show(value)}."
            )
        p[name] = int(value)
    # A form's "true"/"false" (O4's edit example sends -F "stream=true").
    if isinstance(stream := p.get("stream"), str) and stream.strip().lower() in {"true", "false"}:
        p["stream"] = stream.strip().lower() == "true"
    return p


def check_dalle3(p: Mapping[str, Any]) -> None:
    """Check the legacy ``POST /openai/v1/images/generations`` (wire §5, the seed).

    Only the fields documented for this route are checked; others (``style``,
    ``response_format``) are not described there and are let through (tolerant).

    Raises:
        Refused: the first rule the request breaks.
    """
    model = p.get("model")
    if model is not None and model != "dall-e-3":
        raise Refused(
            "model", f"Invalid 'model': this route serves dall-e-3 only, got {_show(model)}."
        )
    _prompt(p, MODELS["dall-e-3"].prompt_max)
    size = p.get("size")
    if size is None:
        raise Refused("size", "Missing required parameter: 'size'.")
    _one_of("size", size, _DALLE3_SIZES, "dall-e-3")
    _n(p, 1)
    if (quality := p.get("quality")) is not None:
        _one_of("quality", quality, _DALLE3_QUALITIES, "dall-e-3")


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def check_submit_4o(p: Mapping[str, Any]) -> None:
    """Check ``POST /openai/4o-image/generations`` (wire §6: prompt, referImages, hookUrl).

    Raises:
        Refused: the first rule the request breaks.
    """
    _prompt(p, None)  # no documented cap
    refs = p.get("referImages")
    if refs is not None:
        # The schema says array; S3's curl sample shows a bare string, but C1 (a real
        # client) sends an array, and so the emulator wants one.
        if not isinstance(refs, list):
            raise Refused(
                "referImages", "Invalid 'referImages': an array of image URLs is required."
            )
        # No documented cap on their number and no documented URL scheme (tolerant): any
        # non-empty strings.
        for i, url in enumerate(refs):
            if not isinstance(url, str) or not url:
                raise Refused(
                    f"referImages[{i}]", f"Invalid 'referImages[{i}]': an image URL is required."
                )
    hook = p.get("hookUrl")
    # The emulator really calls the hook, so it must be an http(s) URL. The value is never
    # echoed: a hook URL may carry a secret token.
    if hook is not None and not _is_http_url(hook):
        raise Refused("hookUrl", "Invalid 'hookUrl': an http(s) URL is required.")


def check_fetch(job_id: object) -> str:
    """Check the ``jobId`` of a fetch (wire §7.1) and return it.

    Raises:
        Refused: missing, or not a non-empty string.
    """
    if not isinstance(job_id, str) or not job_id:
        raise Refused("jobId", "Missing required parameter: 'jobId'.")
    return job_id
