"""The SDK's rules and the emulator's own rules, compared over a grid of parameters.

The emulator checks requests with its own table (``ttapi_async/testing/_rules.py``),
written from the wire references; the SDK checks them with ``ttapi_async/_rules.py``
before sending. Every case of the grids below is judged by both: does the SDK raise
``ValidationError``, and does the emulator refuse it? They must agree, except where
:data:`ALLOWED` lists a difference with its reason, and every listed difference must still
occur: a rule changed on either side shows up here, loudly, in both directions.

The grids are judged on the two rule functions (tens of thousands of cases, in well under
a second), then a deterministic sample of each is sent over HTTP to a real emulator, so
the routes are shown to answer by the table (the verdict read from the 400's shape).
"""

from __future__ import annotations

import ast
import io
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from PIL import Image

from ttapi_async import _rules as sdk
from ttapi_async._errors import ValidationError
from ttapi_async._images import ImageInfo, sniff
from ttapi_async.testing import Emulator
from ttapi_async.testing import _rules as emu


pytestmark = pytest.mark.anyio

GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"
DALLE3 = "/openai/v1/images/generations"
SUBMIT = "/openai/4o-image/generations"
MB = 1024 * 1024
#: In every accepted grid prompt: the emulator then answers a moderation refusal instead
#: of drawing an image, which tells "passed the rules" from "broke one" over HTTP cheaply.
MARK = "[moderation] "
ABSENT = object()  # a parameter not sent at all (None is "not given" too, as JSON null)

MODELS: list[Any] = [
    ABSENT,
    "gpt-image-1",
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1.5",
    "gpt-image-2",
    "gpt-image-9",  # a model neither side knows
]
#: The grids compare the SDK with TTAPI, whose model list is open: the emulator takes the
#: unknown name above as an extra model. Its default, a 400 for a name it does not know
#: (a typo caught before it is billed), is tested in test_emulator_routes.py.
EXTRA_MODELS = frozenset({"gpt-image-9"})


def emu_check_generate(p: Any) -> str:
    return emu.check_generate(p, EXTRA_MODELS)


def emu_check_edit(p: Any, images: Any, mask: Any) -> str:
    return emu.check_edit(p, images, mask, EXTRA_MODELS)


def prompt_of(length: int) -> str:
    return MARK + "x" * (length - len(MARK))


# --------------------------------------------------------------------------- verdicts


def sdk_refuses(check: Callable[..., object], *args: Any) -> bool:
    try:
        check(*args)
    except ValidationError:
        return True
    return False


def refusal(check: Callable[..., object], *args: Any) -> emu.Refused | None:
    try:
        check(*args)
    except emu.Refused as err:
        return err
    return None


def emu_refuses(check: Callable[..., object], *args: Any) -> bool:
    return refusal(check, *args) is not None


def params(case: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case.items() if v is not ABSENT}


@attrs.frozen
class Allowed:
    """A known difference: the emulator is tolerant (or knows more) where the SDK is strict."""

    name: str
    reason: str
    routes: frozenset[str]
    #: True: the SDK refuses what the emulator accepts; False: the other way round.
    sdk_refuses: bool
    applies: Callable[[Mapping[str, Any]], bool]


def _sizes_of(case: Mapping[str, Any]) -> list[int]:
    return [img.size for img in case.get("images", ())]


def _refs(case: Mapping[str, Any]) -> list[Any]:
    refs = case.get("referImages")
    return refs if isinstance(refs, list) else []


#: Every difference the two tables may show, each with its evidence.
ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "blank prompt",
        "a prompt of spaces: OpenAI only documents 'required'; the emulator is tolerant, the "
        "SDK refuses it as a certain mistake",
        frozenset({GEN, EDIT, DALLE3, SUBMIT}),
        sdk_refuses=True,
        applies=lambda c: isinstance(c.get("prompt"), str) and c["prompt"].isspace(),
    ),
    Allowed(
        "legacy style",
        "style on the legacy DALL-E 3 route: not among its documented fields (ttapi-wire.md "
        "section 5, the seed); the emulator lets it through, the SDK checks it as on /v1",
        frozenset({DALLE3}),
        sdk_refuses=True,
        applies=lambda c: c.get("style") not in {ABSENT, "vivid", "natural"},
    ),
    Allowed(
        "referImages count",
        "more than 16 referImages: no cap is documented (the SDK's own cap is INFERRED); "
        "the emulator has none",
        frozenset({SUBMIT}),
        sdk_refuses=True,
        applies=lambda c: len(_refs(c)) > 16,
    ),
    Allowed(
        "referImages scheme",
        "referImages that are not http(s) URLs: the docs say 'image URLs' and show https "
        "ones, no scheme rule (INFERRED); the emulator takes any non-empty string",
        frozenset({SUBMIT}),
        sdk_refuses=True,
        applies=lambda c: any(
            isinstance(u, str) and u and not u.startswith(("http://", "https://")) for u in _refs(c)
        ),
    ),
    Allowed(
        "blank jobId",
        "a jobId of spaces: the emulator looks it up and answers 404 job not found (still a "
        "refusal, but not a 400); the SDK refuses it before sending",
        frozenset({"fetch"}),
        sdk_refuses=True,
        applies=lambda c: isinstance(c.get("jobId"), str) and c["jobId"].isspace(),
    ),
)


@attrs.frozen
class Differences:
    unexplained: list[str]
    used: set[str]
    disagreements: int


def compare(
    route: str,
    cases: Iterator[dict[str, Any]],
    sdk_verdict: Callable[[dict[str, Any]], bool],
    emu_verdict: Callable[[dict[str, Any]], bool],
) -> Differences:
    unexplained: list[str] = []
    used: set[str] = set()
    disagreements = 0
    for case in cases:
        s, e = sdk_verdict(case), emu_verdict(case)
        if s == e:
            continue
        disagreements += 1
        reasons = [
            a.name for a in ALLOWED if route in a.routes and a.sdk_refuses == s and a.applies(case)
        ]
        if reasons:
            used.update(reasons)
        else:
            side = "SDK refuses, emulator accepts" if s else "emulator refuses, SDK accepts"
            unexplained.append(f"{side}: {show(case)}")
    return Differences(unexplained, used, disagreements)


def show(case: Mapping[str, Any]) -> str:
    out = {}
    for k, v in case.items():
        if v is ABSENT:
            continue
        out[k] = f"<str of length {len(v)}>" if isinstance(v, str) and len(v) > 40 else v
    return repr(out)


def assert_agree(diff: Differences, expected: set[str]) -> None:
    assert not diff.unexplained, (
        f"{len(diff.unexplained)} unexplained differences, e.g.:\n"
        + "\n".join(diff.unexplained[:20])
    )
    assert diff.used == expected, f"listed differences that no longer occur: {expected - diff.used}"


# --------------------------------------------------------------------------- grids


def grid(**axes: Sequence[Any]) -> Iterator[dict[str, Any]]:
    names = list(axes)
    for values in itertools.product(*(axes[n] for n in names)):
        yield dict(zip(names, values, strict=True))


SIZES: list[Any] = [
    ABSENT, "auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024",
    "1024x1792", "640x480", "2048x1152", "3840x1280", "3840x1248", "4096x2304", "1000x1000",
    "1024", 1024,
]  # fmt: skip
QUALITIES: list[Any] = [ABSENT, "auto", "low", "medium", "high", "standard", "hd", "ultra"]
COUNTS: list[Any] = [ABSENT, 0, 1, 2, 10, 11, True, "2", 1.5]


def generate_grids() -> Iterator[dict[str, Any]]:
    """models x sizes x qualities x n; models x response formats x styles x qualities x n;
    models x the GPT parameters; models x prompts x users."""
    yield from grid(
        model=MODELS, prompt=[MARK + "a sea otter"], size=SIZES, quality=QUALITIES, n=COUNTS
    )
    yield from grid(
        model=MODELS,
        prompt=[MARK + "a sea otter"],
        response_format=[ABSENT, "url", "b64_json", "png"],
        style=[ABSENT, "vivid", "natural", "pastel"],
        quality=QUALITIES,
        n=COUNTS,
    )
    yield from grid(
        model=MODELS,
        prompt=[MARK + "a fox"],
        output_format=[ABSENT, "png", "jpeg", "webp", "gif"],
        background=[ABSENT, "transparent", "opaque", "auto", "clear"],
        output_compression=[ABSENT, 0, 50, 100, 101, -1, True, "50"],
        moderation=[ABSENT, "low", "auto", "high"],
    )
    yield from grid(
        model=[*MODELS, "", 5, None],
        prompt=[
            ABSENT,
            None,
            "",
            "   ",
            5,
            MARK + "p",
            prompt_of(1000),
            prompt_of(1001),
            prompt_of(4000),
            prompt_of(4001),
            prompt_of(32000),
            prompt_of(32001),
        ],
        user=[ABSENT, "user-1", 5],
    )


def test_generate_verdicts_agree() -> None:
    """POST /v1/images/generations: the SDK and the emulator refuse the same requests."""
    diff = compare(
        GEN,
        generate_grids(),
        lambda c: sdk_refuses(sdk.check_generate, params(c)),
        lambda c: emu_refuses(emu_check_generate, params(c)),
    )
    assert_agree(diff, {"blank prompt"})


def test_parameters_the_sdk_leaves_to_the_server() -> None:
    """input_fidelity on generations: only the emulator checks it (the SDK sends it through
    ``extra_body``, unchecked by design), and only for the GPT image models it knows."""
    cases = grid(
        model=MODELS, prompt=[MARK + "a fox"], input_fidelity=[ABSENT, "high", "low", "medium"]
    )
    refused = []
    for case in cases:
        assert not sdk_refuses(sdk.check_generate, params(case))
        if emu_refuses(emu_check_generate, params(case)):
            refused.append(case)
    assert refused
    assert all(c["model"] in {"gpt-image-1", "gpt-image-1.5", "gpt-image-2"} for c in refused)
    assert all(c["input_fidelity"] == "medium" for c in refused)


def test_streamed_partial_images_agree_on_the_gpt_models() -> None:
    """With stream=True both sides take partial_images 0-3 and refuse the rest (2026
    section 5); the SDK also refuses partial_images without stream=True ('available only
    when stream is true') and a stream on dall-e, which the emulator lets through
    (their 400s are INFERRED, 2026 section 9)."""
    for model in ("gpt-image-1", "gpt-image-1.5", "gpt-image-2"):
        for partial in (0, 3, 4, -1, "1"):
            case = {"model": model, "prompt": "p", "stream": True, "partial_images": partial}
            assert sdk_refuses(sdk.check_generate, case) == emu_refuses(emu_check_generate, case)
    assert sdk_refuses(
        sdk.check_generate, {"model": "gpt-image-1", "prompt": "p", "partial_images": 1}
    )
    assert sdk_refuses(sdk.check_generate, {"model": "dall-e-2", "prompt": "p", "stream": True})
    assert not emu_refuses(emu_check_generate, {"prompt": "p", "partial_images": 9})


@attrs.frozen
class Img:
    """One edit input, as both sides' readers would see it."""

    mime: str | None
    width: int
    height: int
    size: int = 4096
    alpha: bool = False

    def sdk(self) -> ImageInfo:
        if self.mime is None:
            return ImageInfo("application/octet-stream", -1, -1, self.size, has_alpha=False)
        return ImageInfo(self.mime, self.width, self.height, self.size, has_alpha=self.alpha)

    def emu(self) -> emu.Upload:
        return emu.Upload(self.mime, self.width, self.height, self.size, self.alpha)


CLEAR_SQUARE = Img("image/png", 64, 64, alpha=True)
IMAGE_SETS: list[list[Img]] = [
    [],
    [CLEAR_SQUARE],
    [Img("image/png", 64, 64)],
    [Img("image/png", 64, 32, alpha=True)],
    [Img("image/webp", 64, 64, alpha=True)],
    [Img("image/jpeg", 64, 64)],
    [Img("image/gif", 64, 64)],
    [Img(None, 0, 0)],
    [Img("image/png", 64, 64, size=4 * MB - 1, alpha=True)],
    [Img("image/png", 64, 64, size=4 * MB, alpha=True)],
    [Img("image/png", 64, 64, size=25 * MB - 1)],
    [Img("image/png", 64, 64, size=25 * MB)],
    [Img("image/png", 64, 64, size=50 * MB - 1)],
    [Img("image/png", 64, 64, size=50 * MB)],
    [CLEAR_SQUARE, Img("image/webp", 32, 48)],
    [CLEAR_SQUARE] * 16,
    [CLEAR_SQUARE] * 17,
]
MASKS: list[Img | None] = [
    None,
    Img("image/png", 64, 64, alpha=True),
    Img("image/png", 32, 32, alpha=True),
    Img("image/jpeg", 64, 64),
    Img(None, 0, 0),
    Img("image/png", 64, 64, size=4 * MB),
]
EDIT_PARAMS: list[dict[str, Any]] = [
    {},
    {"size": "256x256"},
    {"size": "1536x1024"},
    {"size": "1024x1792"},
    {"quality": "standard"},
    {"quality": "high"},
    {"n": 10},
    {"n": 11},
    {"response_format": "url"},
    {"response_format": "b64_json"},
    {"output_format": "webp", "output_compression": 50},
    {"background": "transparent", "output_format": "jpeg"},
    {"style": "vivid"},  # not an edit parameter on either side: ignored
]


def edit_grid() -> Iterator[dict[str, Any]]:
    for model, images, mask, extra, prompt in itertools.product(
        MODELS, IMAGE_SETS, MASKS, EDIT_PARAMS, [MARK + "add a hat", prompt_of(1001), "  "]
    ):
        yield {"model": model, "prompt": prompt, **extra, "images": images, "mask": mask}


def edit_params(case: Mapping[str, Any]) -> dict[str, Any]:
    return params({k: v for k, v in case.items() if k not in {"images", "mask"}})


def sdk_edit(case: Mapping[str, Any]) -> bool:
    mask = case["mask"]
    images = [i.sdk() for i in case["images"]]
    return sdk_refuses(sdk.check_edit, edit_params(case), images, mask and mask.sdk())


def emu_edit(case: Mapping[str, Any]) -> bool:
    mask = case["mask"]
    images = [i.emu() for i in case["images"]]
    return emu_refuses(emu_check_edit, edit_params(case), images, mask and mask.emu())


def test_edit_verdicts_agree() -> None:
    """POST /v1/images/edits: models x inputs x masks x parameters, judged alike."""
    diff = compare(EDIT, edit_grid(), sdk_edit, emu_edit)
    assert_agree(diff, {"blank prompt"})


def dalle3_grid() -> Iterator[dict[str, Any]]:
    yield from grid(
        model=[ABSENT, "dall-e-3", "dall-e-2", 3],
        prompt=[ABSENT, MARK + "a cat", prompt_of(4000), prompt_of(4001), " "],
        size=[ABSENT, "1024x1024", "1792x1024", "1024x1792", "auto", "512x512"],
        quality=[ABSENT, "standard", "hd", "auto"],
        n=[ABSENT, 1, 2, 0, True],
        style=[ABSENT, "vivid", "natural", "pastel"],
    )


def test_legacy_dalle3_verdicts_agree() -> None:
    """The legacy POST /openai/v1/images/generations (DALL-E 3 in the envelope)."""
    diff = compare(
        DALLE3,
        dalle3_grid(),
        lambda c: sdk_refuses(sdk.check_dalle3, params(c)),
        lambda c: emu_refuses(emu.check_dalle3, params(c)),
    )
    assert_agree(diff, {"blank prompt", "legacy style"})


URL = "https://cdn.example/a.png"


def submit_grid() -> Iterator[dict[str, Any]]:
    yield from grid(
        prompt=[ABSENT, "", "  ", "draw a corgi", 5, "x" * 40000],
        referImages=[
            ABSENT,
            None,
            [],
            [URL],
            URL,
            ["ftp://x/a.png"],
            ["data:image/png;base64,AAAA"],
            [""],
            [5],
            [URL] * 16,
            [URL] * 17,
            {"url": URL},
        ],
        hookUrl=[
            ABSENT,
            None,
            "https://h.example/t",
            "http://127.0.0.1:9/hook",
            "ftp://h/t",
            "http://",
            "https://",
            "",
            5,
            "hook",
        ],
    )


def test_submit_4o_verdicts_agree() -> None:
    """POST /openai/4o-image/generations: prompt x referImages x hookUrl."""
    diff = compare(
        SUBMIT,
        submit_grid(),
        lambda c: sdk_refuses(sdk.check_submit_4o, params(c)),
        lambda c: emu_refuses(emu.check_submit_4o, params(c)),
    )
    assert_agree(diff, {"blank prompt", "referImages count", "referImages scheme"})


def test_fetch_verdicts_agree() -> None:
    """The jobId of a fetch."""
    cases = ({"jobId": v} for v in [None, "", " ", "5ecc5080-b1d7", 5, ["x"]])
    diff = compare(
        "fetch",
        cases,
        lambda c: sdk_refuses(sdk.check_fetch, c["jobId"]),
        lambda c: emu_refuses(emu.check_fetch, c["jobId"]),
    )
    assert_agree(diff, {"blank jobId"})


def test_the_emulator_never_imports_the_sdk_rules() -> None:
    """The emulator may take wire constants from the SDK, never its checks: otherwise a wrong
    SDK rule would pass every test by construction (issue 9)."""
    forbidden = {"ttapi_async._rules", "ttapi_async._images", "ttapi_async._requests"}
    package = Path(emu.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert node.module not in forbidden, (path.name, node.module)
                names = {alias.name for alias in node.names}
                assert not names & {"_rules", "_images", "ValidationError"}, (path.name, names)
            if isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & forbidden, path.name


# --------------------------------------------------------------------------- over HTTP


def every(cases: Iterator[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    """A deterministic sample: every ``step``-th case."""
    return list(itertools.islice(cases, 0, None, step))


def drawable(case: Mapping[str, Any], accepted: bool) -> bool:
    """False for a case the emulator would serve for real (no moderation marker in it)."""
    prompt = case.get("prompt")
    return not accepted or (isinstance(prompt, str) and MARK in prompt)


async def send_all(
    emulator: Emulator,
    cases: Sequence[dict[str, Any]],
    send: Callable[[aiohttp.ClientSession, dict[str, Any]], Any],
) -> list[Any]:
    """Send the cases 16 at a time (one connection pool), in order."""
    results: list[Any] = [None] * len(cases)
    limiter = anyio.Semaphore(16)
    async with aiohttp.ClientSession(headers={"TT-API-KEY": emulator.api_key}) as http:

        async def one(i: int) -> None:
            async with limiter:
                results[i] = await send(http, cases[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(cases)):
                tg.start_soon(one, i)
    return results


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(
        url, data=json.dumps(body), headers={"Content-Type": "application/json"}
    ) as r:
        return r.status, json.loads(await r.read())


async def test_generate_route_answers_by_the_table(emulator: Emulator) -> None:
    """A sample of the generate grid over HTTP: a refusal is the table's 400, word for word,
    and what the table accepts passes on to moderation (the marker), never to a 400 rule."""
    emulator.extra_models = EXTRA_MODELS
    cases = [
        c
        for c in every(generate_grids(), 331)
        if drawable(c, not emu_refuses(emu_check_generate, params(c)))
    ]
    replies = await send_all(
        emulator, cases, lambda http, c: post(http, emulator.url + GEN, params(c))
    )
    refused = 0
    for case, (status, body) in zip(cases, replies, strict=True):
        assert status == 400, (case, body)
        err = refusal(emu_check_generate, params(case))
        if err is not None:
            refused += 1
            expected = {"message": err.message, "type": "invalid_request_error"}
            assert body["error"] == {**expected, "param": err.param, "code": err.code}
        else:
            assert body["error"]["code"] in {"moderation_blocked", "content_policy_violation"}
            assert not sdk_refuses(sdk.check_generate, params(case)) or case["model"] in {
                "gpt-image-1.5",
                "gpt-image-2",
            }
    assert 0 < refused < len(cases)
    assert emulator.counters.billed.total() == 0


async def test_legacy_and_4o_routes_answer_by_the_table(emulator: Emulator) -> None:
    """Samples of the DALL-E 3 and 4o grids over HTTP: the table's refusal as a 400 envelope."""
    dalle3 = [
        c
        for c in every(dalle3_grid(), 37)
        if drawable(c, not emu_refuses(emu.check_dalle3, params(c)))
    ]
    replies = await send_all(
        emulator, dalle3, lambda http, c: post(http, emulator.url + DALLE3, params(c))
    )
    for case, (status, body) in zip(dalle3, replies, strict=True):
        assert status == 400, (case, body)
        err = refusal(emu.check_dalle3, params(case))
        if err is not None:
            assert body == {
                "status": "FAILED",
                "message": f"Parameter error: {err.message}",
                "data": None,
            }
        else:
            assert "safety system" in body["message"]
    submits = every(submit_grid(), 3)
    replies = await send_all(
        emulator, submits, lambda http, c: post(http, emulator.url + SUBMIT, params(c))
    )
    created = 0
    for case, (status, body) in zip(submits, replies, strict=True):
        err = refusal(emu.check_submit_4o, params(case))
        if err is not None:
            message = f"Parameter error: {err.message}"
            assert (status, body) == (400, {"status": "FAILED", "message": message, "data": None})
        else:
            assert status == 200, (case, body)
            created += 1
    assert created == len(emulator.jobs) > 0


def image_bytes(fmt: str, size: tuple[int, int], *, alpha: bool = False) -> bytes:
    img = Image.new("RGBA" if alpha else "RGB", size, (0, 0, 0, 0) if alpha else (9, 9, 9))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def palette_png_with_trns() -> bytes:
    img = Image.new("P", (16, 16), 0)
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    return buf.getvalue()


REAL_INPUTS: dict[str, bytes] = {
    "png-clear": image_bytes("PNG", (64, 64), alpha=True),
    "png-opaque": image_bytes("PNG", (64, 64)),
    "png-wide": image_bytes("PNG", (64, 32), alpha=True),
    "png-palette-trns": palette_png_with_trns(),
    "webp-clear": image_bytes("WEBP", (64, 64), alpha=True),
    "webp-opaque": image_bytes("WEBP", (48, 32)),
    "jpeg": image_bytes("JPEG", (64, 64)),
    "gif": image_bytes("GIF", (64, 64)),
    "junk": b"not an image at all",
    "truncated-gif": b"GIF89a" + bytes(20),
}


@pytest.mark.parametrize("name", sorted(REAL_INPUTS))
def test_upload_readers_agree(name: str) -> None:
    """On real bytes, the emulator's reader (Pillow) and the SDK's sniffer see the same
    type, dimensions and transparency in every file an edit may take (PNG, WebP, JPEG), so
    the edit grid above can use descriptors; other bytes are a type no model takes to both
    (the details may differ: the SDK reads a truncated GIF's header as 0x0, Pillow not)."""
    data = REAL_INPUTS[name]
    mine, theirs = emu.read_upload(data), sniff(data)
    editable = {"image/png", "image/webp", "image/jpeg"}
    if mine.mime in editable or theirs.mime in editable:
        assert (mine.mime, mine.width, mine.height) == (theirs.mime, theirs.width, theirs.height)
        assert mine.alpha == theirs.has_alpha
    else:
        assert name in {"gif", "junk", "truncated-gif"}
    assert mine.size == theirs.size == len(data)


def real_edit_cases() -> Iterator[dict[str, Any]]:
    inputs: list[list[str]] = [[], *([n] for n in REAL_INPUTS), ["png-clear", "webp-opaque"]]
    extras: list[dict[str, Any]] = [
        {},
        {"size": "256x256"},
        {"n": 11},
        {"response_format": "url"},
        {"quality": "high"},
    ]
    for model, names, mask, extra, prompt in itertools.product(
        MODELS,
        inputs,
        [None, "png-clear", "png-wide", "jpeg"],
        extras,
        [MARK + "add a hat", prompt_of(1001)],
    ):
        yield {"model": model, "prompt": prompt, **extra, "names": names, "mask": mask}


async def test_edit_route_agrees_with_the_sdk_on_real_files(emulator: Emulator) -> None:
    """A sample of real multipart edits: the SDK's verdict (sniffing the bytes) and the
    emulator's answer over HTTP agree, but for the listed differences."""
    emulator.extra_models = EXTRA_MODELS
    cases = every(real_edit_cases(), 11)

    async def send(http: aiohttp.ClientSession, case: dict[str, Any]) -> tuple[int, Any]:
        form = aiohttp.FormData(default_to_multipart=True)
        for key, value in params(
            {k: v for k, v in case.items() if k not in {"names", "mask"}}
        ).items():
            form.add_field(key, str(value))
        field = "image" if len(case["names"]) == 1 else "image[]"
        for name in case["names"]:
            form.add_field(field, REAL_INPUTS[name], filename=name, content_type="image/png")
        if case["mask"] is not None:
            form.add_field(
                "mask", REAL_INPUTS[case["mask"]], filename="m", content_type="image/png"
            )
        async with http.post(emulator.url + EDIT, data=form) as resp:
            return resp.status, json.loads(await resp.read())

    replies = await send_all(emulator, cases, send)
    unexplained = []
    for case, (status, body) in zip(cases, replies, strict=True):
        assert status == 400, (case, body)
        emu_says = body["error"]["param"] is not None
        p = params({k: v for k, v in case.items() if k not in {"names", "mask"}})
        images = [sniff(REAL_INPUTS[n]) for n in case["names"]]
        mask = sniff(REAL_INPUTS[case["mask"]]) if case["mask"] is not None else None
        sdk_says = sdk_refuses(sdk.check_edit, p, images, mask)
        allowed = any(
            EDIT in a.routes and a.sdk_refuses == sdk_says and a.applies(case) for a in ALLOWED
        )
        if sdk_says != emu_says and not allowed:
            unexplained.append((show(case), body))
    assert not unexplained, unexplained[:10]
    assert emulator.counters.billed.total() == 0
