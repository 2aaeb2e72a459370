"""Property suite: ``save()`` over hostile results, ``Journal`` over damaged files (issue 8).

``Client.save`` is given results no good server sends: any ``created``, strings with lone
surrogates, control characters, path tricks and great length, empty and odd base64,
and image URLs served by a tiny aiohttp app on 127.0.0.1 answering random bytes, content
types and statuses (or URLs that are not URLs at all). The invariants:

* it raises a ``TTAPIError``, or returns saved files whose bytes are exactly what was
  served (or decoded) and match their sidecar's sha256; nothing else, ever;
* no ``.part-`` file is left behind, and nothing is written outside the target folder.

``Journal.open`` is given random bytes, real journals cut short or with flipped bytes,
and journals of the right schema holding random cell values and types. The invariants:

* opening (then reading and resuming every row) works, with every entry of its declared
  types, or raises ``JournalCorruptError`` or ``StorageError`` (``ValidationError`` only
  for a file that is not SQLite at all, or an SQLite file that is not a journal);
* a file refused is left exactly as it was: never deleted, never rewritten.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import ttapi_async as tt
from ttapi_async._journal import ItemState, Journal, JournalEntry


pytestmark = pytest.mark.anyio

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _image(fmt: str, size: tuple[int, int] = (5, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


IMAGES = [_image("PNG"), _image("JPEG"), _image("GIF"), _image("WEBP"), _image("PNG", (300, 2))]


# ----------------------------------------------------------------------------- save()


@attrs.define
class Images:
    """A tiny image host and a client, for every example of a test.

    Each example sets :attr:`replies` (name -> status, Content-Type, body); the host
    answers ``/img/<name>`` with it.
    """

    base: str
    client: tt.Client
    replies: dict[str, tuple[int, str | None, bytes]] = attrs.field(factory=dict)


@pytest.fixture
async def host() -> AsyncIterator[Images]:
    """One image host and one client for every example of a test."""
    images: Images | None = None

    async def handler(request: web.Request) -> web.StreamResponse:
        assert images is not None
        status, ctype, body = images.replies[request.match_info["name"]]
        resp = web.Response(status=status, body=body)
        resp.headers["Content-Type"] = ctype if ctype is not None else "x/none"
        return resp

    async def strip(_: web.Request, resp: web.StreamResponse) -> None:
        if resp.headers.get("Content-Type") == "x/none":
            resp.headers.popall("Content-Type", None)  # no Content-Type at all

    app = web.Application()
    app.router.add_get("/img/{name}", handler)
    app.on_response_prepare.append(strip)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    retry = tt.RetryPolicy(max_retries=0)
    async with tt.Client("test-key-1234567", base_url="http://127.0.0.1:9", retry=retry) as c:
        images = Images(str(server.make_url("")).rstrip("/"), c)
        yield images
    await server.close()


#: Stands for the image host's address in drawn URLs; the test puts the real one in.
HOST = "http://image-host.invalid"

ANY_TEXT = st.text(st.characters(), max_size=30)  # lone surrogates and controls included
PIECES = st.sampled_from(
    ["../", "..", "/", "\\", "\x00", ".", "~", "C:\\", "/etc/passwd", "\ud800", "\udcff", "🦊"]
)
HOSTILE_TEXT = st.one_of(
    ANY_TEXT,
    st.lists(st.one_of(PIECES, ANY_TEXT), max_size=6).map("".join),
    st.integers(200, 5000).map(lambda n: "x" * n),
)
CREATED = st.one_of(
    st.sampled_from([0, 1_700_000_000, 10**12, 10**20, -(10**20), 2**63]),
    st.integers(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
BODIES = st.one_of(
    st.sampled_from(IMAGES),
    st.sampled_from(IMAGES).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
    st.sampled_from(IMAGES).flatmap(lambda b: st.binary(max_size=64).map(lambda t: b[:16] + t)),
    st.binary(max_size=300),
    st.just(b"<html>not an image</html>"),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(["image/png", "image/jpeg", "text/html", "application/json"]),
    st.sampled_from(["binary/octet-stream", "IMAGE/WEBP; charset=x", "image/", ""]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
STATUSES = st.one_of(
    st.just(200), st.sampled_from([201, 204, 206, 301, 400, 403, 404, 410, 429, 500, 503])
)
BAD_URLS = st.one_of(
    st.sampled_from(
        [
            "",
            "not a url",
            "http://127.0.0.1:1/x.png",
            "ftp://127.0.0.1/x.png",
            "file:///etc/passwd",
            "http://[::1",
            "http://127.0.0.1:99999/x",
            "http:///x",
            "data:image/png;base64,AAAA",
            "http://\ud800/x",
            "http://127.0.0.1:1/\ud800",
        ]
    ),
    HOSTILE_TEXT,
)


@attrs.define
class Plan:
    """A hostile result (its served URLs on :data:`HOST`), what the host serves, and what
    each image holds (None: it cannot be saved)."""

    result: tt.ImagesResponse | tt.JobSnapshot | tt.JobResult
    expected: list[bytes | None]
    replies: dict[str, tuple[int, str | None, bytes]] = attrs.field(factory=dict)

    def source(self, draw: st.DrawFn) -> tuple[str, bytes | None]:
        """An image URL (served, or not a fetchable URL) and what it serves."""
        if draw(st.booleans()) or draw(st.booleans()):
            name = f"i{len(self.replies)}.png"
            body = draw(BODIES)
            self.replies[name] = (draw(STATUSES), draw(CONTENT_TYPES), body)
            return f"{HOST}/img/{name}", body
        return draw(BAD_URLS), None

    def on(self, base: str) -> tt.ImagesResponse | tt.JobSnapshot | tt.JobResult:
        """The result with the image host's real address."""

        def fix(url: str | None) -> str | None:
            return url.replace(HOST, base, 1) if url and url.startswith(HOST) else url

        result = self.result
        if isinstance(result, tt.ImagesResponse):
            data = tuple(attrs.evolve(d, url=fix(d.url)) for d in result.data)
            return attrs.evolve(result, data=data)
        if isinstance(result, tt.JobResult):
            return attrs.evolve(result, image_url=fix(result.image_url) or "")
        return attrs.evolve(result, image_url=fix(result.image_url))


@st.composite
def b64s(draw: st.DrawFn) -> tuple[str, bytes | None]:
    """A ``b64_json`` and the bytes it decodes to (None when it is not base64)."""
    body = draw(BODIES)
    good = base64.b64encode(body).decode()
    choice = draw(st.sampled_from(["good", "good", "broken", "empty", "text"]))
    if choice == "good":
        return good, body
    if choice == "broken":
        return draw(st.sampled_from(["=", " ", "\n", "*", "-", "\ud800", "é"])) + good, None
    if choice == "empty":
        return "", b""
    return draw(HOSTILE_TEXT), None


JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        HOSTILE_TEXT,
        st.binary(max_size=8),
        st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
METADATA = st.none() | st.dictionaries(st.one_of(ANY_TEXT, st.just("prompt")), JSONISH, max_size=4)
TIMES = st.none() | st.datetimes(timezones=st.none() | st.just(dt.UTC))


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A hostile ImagesResponse, JobSnapshot or JobResult, with what its images hold."""
    plan = Plan(tt.ImagesResponse(created=0), [])
    kind = draw(st.sampled_from(["images", "snapshot", "result"]))
    if kind == "images":
        items = []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                b64, body = draw(b64s())
                items.append(tt.ImageData(b64_json=b64, revised_prompt=draw(HOSTILE_TEXT)))
            else:
                url, body = plan.source(draw)
                items.append(tt.ImageData(url=url, revised_prompt=draw(st.none() | HOSTILE_TEXT)))
            plan.expected.append(body)
        plan.result = tt.ImagesResponse(
            created=draw(CREATED),  # type: ignore[arg-type]  # floats too
            data=tuple(items),
            size=draw(st.none() | HOSTILE_TEXT),
            output_format=draw(st.none() | HOSTILE_TEXT),
        )
        return plan
    url, body = plan.source(draw)
    common: dict[str, Any] = {
        "job_id": draw(HOSTILE_TEXT),
        "prompt": draw(st.none() | HOSTILE_TEXT),
        "refer_images": tuple(draw(st.lists(HOSTILE_TEXT, max_size=2))),
        "quota": draw(st.none() | st.floats(allow_nan=True)),
        "finish_time": draw(TIMES),
    }
    if kind == "result":
        elapsed = draw(st.floats(allow_nan=True))
        plan.result = tt.JobResult(image_url=url, elapsed=elapsed, **common)
        plan.expected = [body]
        return plan
    image_url = draw(st.none() | st.just(url))
    plan.result = tt.JobSnapshot(
        status=draw(st.sampled_from(tt.JobStatus)),
        image_url=image_url,
        hook_url=draw(st.none() | HOSTILE_TEXT),
        **common,
    )
    plan.expected = [body if image_url else None]
    return plan


def assert_only_whole_images(folder: Path, *, sidecar: bool) -> None:
    """No temporary file; every image (and its sidecar) in ``folder`` is whole."""
    names = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert not [n for n in names if n.startswith(".part-")], names
    for name in names:
        if name.endswith(".json"):
            assert name[: -len(".json")] in names, name  # never a sidecar alone
            continue
        data = (folder / name).read_bytes()
        if sidecar:
            doc = json.loads((folder / (name + ".json")).read_text())
            assert doc["sha256"] == hashlib.sha256(data).hexdigest()
            assert doc["bytes"] == len(data)
            assert doc["file"] == name


@given(
    plan=plans(),
    metadata=METADATA,
    stem=st.none() | st.none() | HOSTILE_TEXT,
    sidecar=st.booleans(),
    max_bytes=st.sampled_from([10**6, 2000, 300]),
)
@SETTINGS
async def test_save_gives_a_typed_error_or_whole_files_and_stays_in_its_folder(
    host: Images,
    plan: Plan,
    metadata: dict[str, Any] | None,
    stem: str | None,
    sidecar: bool,
    max_bytes: int,
) -> None:
    host.replies = plan.replies
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "target"
        try:
            saved = await host.client.save(
                plan.on(host.base),
                folder,
                stem=stem,
                sidecar=sidecar,
                metadata=metadata,
                max_bytes=max_bytes,
            )
        except tt.TTAPIError:
            saved = None
        # Nothing outside the target folder (which a refused stem may not even create).
        assert [p.name for p in Path(root).iterdir()] in ([], ["target"])
        assert_only_whole_images(folder, sidecar=sidecar)
        if saved is None:
            return
        assert len(saved) == len(plan.expected)
        for one, body in zip(saved, plan.expected, strict=True):
            assert body is not None, "saved an image that cannot be"
            assert one.path.parent == folder
            assert one.path.read_bytes() == body
            assert one.sha256 == hashlib.sha256(body).hexdigest()
            assert one.size == len(body) <= max_bytes
            assert (one.sidecar is not None) == sidecar


# ----------------------------------------------------------------------------- Journal

MAGIC = b"SQLite format 3\x00"


def a_journal(path: Path, rows: int) -> None:
    """A real journal with rows in every state, its WAL folded in."""
    with Journal.open(path) as j:
        for i in range(rows):
            j.add_pending(i, f"fp-{i}", "4o", f"a label for prompt {i} " * (i % 4))
            if i % 5 >= 1:
                j.mark_submitting(i)
            if i % 5 >= 2:
                j.mark_submitted(i, f"job-{i}", hooked=bool(i % 2))
            if i % 5 == 3:
                j.mark_done(i, [f"out/{i}-0.png", f"out/{i}-1.png"])
            if i % 5 == 4:
                j.mark_failed(i, f"reason {i}")


with tempfile.TemporaryDirectory() as _root:
    a_journal(Path(_root) / "j.sqlite", 40)
    JOURNAL = (Path(_root) / "j.sqlite").read_bytes()  # several pages of rows
    a_journal(Path(_root) / "small.sqlite", 5)
    SMALL_JOURNAL = (Path(_root) / "small.sqlite").read_bytes()  # a row in each state


def assert_sound(entry: JournalEntry) -> None:
    """Every field of an entry read from a file is of its declared type."""
    assert isinstance(entry.index, int)
    assert isinstance(entry.fingerprint, str)
    assert isinstance(entry.state, ItemState)
    assert isinstance(entry.kind, str)
    assert isinstance(entry.label, str)
    assert entry.job_id is None or isinstance(entry.job_id, str)
    assert isinstance(entry.hooked, bool)
    assert all(isinstance(f, str) for f in entry.files)
    assert entry.reason is None or isinstance(entry.reason, str)
    assert isinstance(entry.attempts, int)
    assert isinstance(entry.updated, float)


def open_and_resume(path: Path) -> None:
    """Open ``path`` and do what a resumed run does; raise what the SDK raises."""
    with Journal.open(path) as j:
        entries = j.entries()
        for entry in entries.values():
            assert_sound(entry)
        j.counts()
        for index, entry in entries.items():
            again = j.add_pending(index, entry.fingerprint, entry.kind, entry.label)
            assert again == entry
            if entry.state is not ItemState.DONE:
                j.reset(index)
                j.mark_submitting(index)
                j.mark_unknown(index, "resumed")
        j.add_pending(10**9, "fp-new", "4o", "new")


def check_open(path: Path, allow: Callable[[Exception], bool] = lambda _: False) -> None:
    """The journal invariant: works, or a typed refusal that leaves the file as it was."""
    before = path.read_bytes()
    refused: Exception | None = None
    try:
        open_and_resume(path)
    except (tt.JournalCorruptError, tt.StorageError) as exc:
        refused = exc
    except tt.ValidationError as exc:
        refused = exc
        assert allow(exc), exc  # noqa: PT017 - judging the error, not expecting it
    if refused is not None:
        assert path.read_bytes() == before, f"a refused file was changed ({refused})"


def not_sqlite(data: bytes) -> Callable[[Exception], bool]:
    """A file that does not start like SQLite is a wrong file (ValidationError)."""
    return lambda exc: not data.startswith(MAGIC) and "not an SQLite file" in str(exc)


@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.binary(max_size=4000).map(lambda b: MAGIC + b),
        st.binary(min_size=84, max_size=84).map(lambda b: JOURNAL[:16] + b + JOURNAL[100:4096]),
    )
)
@SETTINGS
def test_journal_over_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "j.sqlite"
        path.write_bytes(data)
        check_open(path, not_sqlite(data))
        assert path.exists()


@given(
    cut=st.integers(0, len(JOURNAL)),
    flips=st.lists(st.tuples(st.integers(0, len(JOURNAL) - 1), st.integers(0, 255)), max_size=8),
)
@SETTINGS
def test_journal_cut_short_or_with_flipped_bytes(cut: int, flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(JOURNAL)
    for position, value in flips:
        damaged[position] = value
    data = bytes(damaged[:cut] if cut < len(JOURNAL) and not flips else damaged)
    assume(data != JOURNAL)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "j.sqlite"
        path.write_bytes(data)
        # A flipped header byte may make it no longer SQLite, or SQLite but another
        # schema version or no journal: those are the ValidationError cases.
        check_open(
            path,
            lambda exc: (
                not_sqlite(data)(exc)
                or "not a ttapi-async journal" in str(exc)
                or "schema" in str(exc)
            ),
        )
        assert path.exists()


CELLS = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from([s.value for s in ItemState]),
    st.sampled_from(["[]", '["a.png"]', "[1]", "{}", "[", "null", '["\\ud800"]']),
    st.binary(max_size=8),
    st.binary(min_size=1, max_size=8).map(lambda b: ("text", b)),  # bytes stored as TEXT
)
COLUMNS = (
    "fingerprint", "state", "kind", "label", "job_id", "hooked", "files", "reason", "attempts",
    "updated",
)  # fmt: skip
NOT_NULL = {"fingerprint", "state", "kind", "label", "hooked", "files", "attempts", "updated"}


@given(
    rows=st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1), st.fixed_dictionaries(dict.fromkeys(COLUMNS, CELLS))
        ),
        min_size=1,
        max_size=4,
    ),
    meta=st.none() | st.tuples(st.sampled_from(["app", "schema", "run_id"]), CELLS),
)
@SETTINGS
def test_journal_with_random_cells(
    rows: list[tuple[int, dict[str, Any]]], meta: tuple[str, Any] | None
) -> None:
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "j.sqlite"
        path.write_bytes(SMALL_JOURNAL)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA ignore_check_constraints = ON")
        # This connection only prepares the damaged file: no fsync per statement needed.
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for index, drawn in rows:
            cells = drawn
            if any(cells[c] is None for c in NOT_NULL):
                cells = {
                    c: (v if v is not None or c not in NOT_NULL else 0) for c, v in cells.items()
                }
            ordered = [cells[c] for c in COLUMNS]
            values = [v[1] if isinstance(v, tuple) else v for v in ordered]
            marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, tuple) else "?" for v in ordered)
            conn.execute(
                f"INSERT OR REPLACE INTO items (idx, {', '.join(COLUMNS)}) VALUES (?, {marks})",  # noqa: S608 - test constants
                (index, *values),
            )
        if meta is not None:
            key, value = meta
            if value is None:  # the row gone
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    (value[1] if isinstance(value, tuple) else value, key),
                )
        conn.execute("COMMIT")
        conn.close()
        check_open(
            path,
            lambda exc: (
                meta is not None
                and meta[0] in {"app", "schema"}
                and ("not a ttapi-async journal" in str(exc) or "schema" in str(exc))
            ),
        )
