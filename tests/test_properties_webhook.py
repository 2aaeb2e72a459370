"""Property suite: the webhook receiver against hostile callers, over real HTTP.

The invariants (issue 8), whatever arrives (random methods, paths and garbage tokens,
content types, random and deeply nested JSON, non-UTF-8, oversized bodies, forged and
cross-job callbacks, bodies sent whole, in slow pieces, chunked, cut short or stalled):

* never a 5xx (and a stalled body gets its answer, 408, after ``read_timeout``);
* never a wrong job resolved: a job only ever resolves with its own id, and with a
  confirming client only with TTAPI's (the emulator's) own result; with a trusting one,
  only with a callback that was sent on that job's own hook URL and answered 200;
* the receiver still serves afterwards.

One emulator, one receiver served by :meth:`WebhookReceiver.serve` and two clients sharing
it (one confirming callbacks, one trusting them) live for the whole test; hypothesis
sends one request per example to ``serve()`` (and, in the second test, to the ASGI app).
"""

from __future__ import annotations

import json
import string
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
from helpers import connect_sending, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ttapi_async as tt
from ttapi_async.testing import Emulator


pytestmark = pytest.mark.anyio

# Small, so a stalled body (one example in twelve) costs little, yet ten times what a body
# sent in pieces takes to arrive.
READ_TIMEOUT = 0.1
PIECE_GAP = 0.002  # between the pieces of a slow sender: the receiver reads each alone
MAX_BODY = 4096
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@attrs.define(repr=False)
class World:
    """The servers, the clients, their jobs, and what was delivered to whom."""

    emulator: Emulator
    receiver: tt.WebhookReceiver
    port: int
    confirming: tt.Client
    trusting: tt.Client
    jobs: dict[str, tuple[tt.Client, str]]  # job id -> (its client, its token)
    spare: str  # a token minted for a submit that never returns (callbacks kept early)
    released: str  # a token whose submit failed
    ended: dict[str, str] = attrs.field(factory=dict)  # job id -> "succeeded" / "failed"
    # Images of callbacks answered 200 on a job's own hook URL: all a trusting client
    # may ever resolve that job with.
    delivered: defaultdict[str, set[str]] = attrs.field(factory=lambda: defaultdict(set))
    seq: int = 0

    def pending(self, client: tt.Client) -> list[str]:
        """The client's jobs not ended yet (the ones a forged callback could harm)."""
        return [j for j, (c, _) in self.jobs.items() if c is client and j not in self.ended]

    def client(self, kind: str) -> tt.Client:
        return self.confirming if kind == "confirming" else self.trusting

    async def submit(self, client: tt.Client, duration: float = 3600.0) -> None:
        """Submit a job (through the receiver) that ends after ``duration`` seconds."""
        self.emulator.job_duration = duration
        job = await client.gpt4o.submit(prompt=f"job {len(self.jobs)}")
        hook = self.emulator.jobs[job.job_id].hook_url
        assert hook is not None
        self.jobs[job.job_id] = (client, hook.rsplit("/", 1)[1])


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """One emulator, a served receiver, and two clients sharing it, each with jobs."""
    policy = tt.PollPolicy(backstop_interval=3600.0)  # only callbacks end these jobs
    async with Emulator(job_duration=3600.0, seed=8) as emu, anyio.create_task_group() as tg:
        port = free_port()
        rec = tt.WebhookReceiver(
            f"http://127.0.0.1:{port}/hook", max_body=MAX_BODY, read_timeout=READ_TIMEOUT
        )
        await tg.start(rec.serve, "127.0.0.1", port)
        confirming = tt.Client(emu.api_key, base_url=emu.url, webhook=rec, poll_policy=policy)
        trusting = tt.Client(
            emu.api_key, base_url=emu.url, webhook=rec, poll_policy=policy, confirm_callbacks=False
        )
        async with confirming, trusting:
            spare, _ = await rec.register(trusting.waiter)
            released, _ = await rec.register(trusting.waiter)
            rec.release(released)
            w = World(emu, rec, port, confirming, trusting, {}, spare, released)
            for duration in (3600.0, 3600.0, 3600.0, 0.2, 0.5, 1.0):  # some end during the run
                await w.submit(confirming, duration)
            for _ in range(6):
                await w.submit(trusting)

            def on_event(event: tt.JobEvent) -> None:
                if event.kind in {tt.JobEventKind.SUCCEEDED, tt.JobEventKind.FAILED}:
                    assert event.job_id not in w.ended, "a job ended twice"
                    w.ended[event.job_id] = event.kind.value

            confirming.waiter.add_listener(on_event)
            trusting.waiter.add_listener(on_event)
            yield w
        tg.cancel_scope.cancel()


# ----------------------------------------------------------------------------- requests


@attrs.frozen
class Target:
    """Where a request goes: a job's hook URL, or something else."""

    kind: str  # confirming / trusting / spare / released / garbage / raw
    index: int = 0
    path: str = attrs.field(default="", repr=lambda p: p if len(p) < 100 else f"<{len(p)} chars>")


@attrs.frozen
class Callback:
    """A callback-shaped body: which job it names, its status and its shape."""

    names: str  # own / other / random / none / number
    status: object
    data: str  # dict / missing / list / string
    extra: dict[str, Any]


PATH_CHARS = string.ascii_letters + string.digits + "-_.~%!$&'()*+,;=:@/"
HEADER_CHARS = string.ascii_letters + string.digits + " -_./;=+:,"
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
]

targets = st.one_of(
    st.builds(Target, st.sampled_from(["confirming", "trusting"]), st.integers(0, 5)),
    st.builds(Target, st.sampled_from(["spare", "released"])),
    st.builds(Target, st.just("garbage"), st.just(0), st.text(PATH_CHARS, max_size=80)),
    st.builds(
        Target,
        st.just("raw"),
        st.just(0),
        st.sampled_from(["/", "/hook", "/hook/", "/hook/a/b", "/other/x", "/hook/" + "a" * 9000]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
callbacks = st.builds(
    Callback,
    st.sampled_from(["own"] * 3 + ["other"] * 3 + ["elsewhere", "random", "none", "number"]),
    st.one_of(
        st.sampled_from(["SUCCESS"] * 4 + ["FAILED"] * 2 + ["ON_QUEUE", "", "success", None, 3]),
        st.text(max_size=10),
    ),
    st.sampled_from(["dict", "dict", "dict", "missing", "list", "string"]),
    st.dictionaries(
        st.sampled_from(["message", "quota", "finishTime", "prompt"]), json_values, max_size=3
    ),
)
raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),  # NaN and Infinity included
    st.sampled_from([b"", b"null", b"{}", b"[]", b"\xff\xfe\x00{", b'{"status": "\\ud800"}']),
    st.integers(500, 3000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 2 * MAX_BODY).map(lambda n: b"x" * (MAX_BODY + n)),  # too large
)


@attrs.frozen
class Request:
    """One request: where, how, with what, delivered how."""

    target: Target
    method: str
    content_type: str
    body: Callback | bytes
    delivery: str  # whole / pieces / chunked / short / stall


# Well-formed callbacks on real hook URLs, naming their own job or another: the
# forgeries that could resolve a wrong job, so half of all examples.
forgeries = st.builds(
    Request,
    st.builds(Target, st.sampled_from(["trusting"] * 2 + ["confirming"]), st.integers(0, 5)),
    st.just("POST"),
    st.just("application/json"),
    st.builds(
        Callback,
        st.sampled_from(["own", "other", "other", "elsewhere", "random"]),
        st.sampled_from(["SUCCESS", "SUCCESS", "FAILED", "ON_QUEUE"]),
        st.just("dict"),
        st.just({}),
    ),
    st.sampled_from(["whole", "pieces", "chunked"]),
)
# Everything else, at random.
hostile = st.builds(
    Request,
    targets,
    st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    st.one_of(st.sampled_from(CONTENT_TYPES), st.text(HEADER_CHARS, max_size=40)),
    st.one_of(callbacks, raw_bodies),
    st.sampled_from(["whole", "whole", "pieces", "chunked", "short", "stall"]),
)
requests = st.one_of(forgeries, hostile)


def build(
    world: World, target: Target, spec: Callback | bytes
) -> tuple[str, str | None, bytes, str | None]:
    """(path, the job id whose own hook this is, body bytes, the body's image marker)."""
    job_id: str | None = None
    if target.kind in {"confirming", "trusting"}:
        client = world.client(target.kind)
        ours = world.pending(client) or [j for j, (c, _) in world.jobs.items() if c is client]
        job_id = ours[target.index % len(ours)]
        token = world.jobs[job_id][1]
        path = f"/hook/{token}"
    elif target.kind == "spare":
        path = f"/hook/{world.spare}"
    elif target.kind == "released":
        path = f"/hook/{world.released}"
    elif target.kind == "garbage":
        path = "/hook/" + target.path
    else:
        path = target.path
    if isinstance(spec, bytes):
        return path, job_id, spec, None
    world.seq += 1
    image = f"https://callback.example/{world.seq}.png"  # unique: says which request it was
    # Another job of the same client, still pending where possible: a callback naming
    # it on this job's hook URL is the cross-job forgery that could resolve it wrongly.
    same = world.client(target.kind)
    others = [j for j in world.pending(same) if j != job_id] or [
        j for j in world.jobs if j != job_id
    ]
    named: object = {
        "own": job_id or others[0],
        "other": others[world.seq % len(others)],
        "elsewhere": list(world.jobs)[world.seq % len(world.jobs)],
        "random": f"job-{world.seq}",
        "none": None,
        "number": 7,
    }[spec.names]
    data: object = {"imageUrl": image, "quota": "2", **spec.extra}
    data = {"dict": data, "missing": None, "list": [data], "string": "data"}[spec.data]
    obj: dict[str, object] = {"status": spec.status, "message": "success", "data": data}
    if named is not None:
        obj["jobId"] = named
    if data is None:
        del obj["data"]
    return path, job_id, json.dumps(obj).encode(), image


async def send(
    port: int, method: str, path: str, content_type: str, body: bytes, delivery: str
) -> tuple[int | None, bool]:
    """Send one request over a fresh connection.

    Returns the status answered (None: none) and whether the server closed the
    connection before the request was all written (it answers early, say 413 or 400).
    """
    headers = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    payload = body
    if delivery == "chunked":
        headers.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        parts = [p for p in (body[:half], body[half:]) if p]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    elif delivery == "stall":  # announces more than it sends, then waits for the answer
        headers.append(f"Content-Length: {len(body) + 10}")
    elif delivery == "short":  # announces less: the rest reads as a (bad) next request
        headers.append(f"Content-Length: {len(body) // 2}")
    else:
        headers.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode()
    # The head (and a body sent at once) goes out with the connect, before the receiver's
    # idle-connection timer (read_timeout) can run: see connect_sending.
    reader, writer = await connect_sending(port, head if delivery == "pieces" else head + payload)
    try:
        try:
            if delivery == "pieces":  # a slow sender, well within read_timeout
                for start in range(0, len(payload), max(1, len(payload) // 3)):
                    writer.write(payload[start : start + max(1, len(payload) // 3)])
                    await writer.drain()
                    await anyio.sleep(PIECE_GAP)
            cut = False
        except ConnectionError:
            cut = True  # answered (413, say) and closed before the body was all written
        with anyio.fail_after(5):  # a receiver that never answers fails here
            try:
                line = await reader.readline()
            except ConnectionError:
                line = b""
    finally:
        writer.close()
    return (int(line.split()[1]) if line else None), cut


async def outcome(client: tt.Client, job_id: str) -> tuple[str, str, str | None]:
    """An ended job's outcome: (how, the job id it carries, its image if it succeeded)."""
    try:
        result = await client.waiter.wait(job_id, timeout=5)
    except tt.JobFailedError as exc:
        snapshot = exc.snapshot
    else:
        return "succeeded", result.job_id, result.image_url
    assert snapshot is not None
    return "failed", snapshot.job_id, None


async def check_invariants(world: World) -> None:
    """Nothing resolved wrongly so far, and the receiver answers a plain request."""
    for job_id, how in list(world.ended.items()):
        assert job_id in world.jobs, f"an unknown job {job_id!r} was resolved"
        client, _ = world.jobs[job_id]
        ended, carried, image = await outcome(client, job_id)
        assert (ended, carried) == (how, job_id)
        if client is world.confirming:
            # Confirmed: only TTAPI's own word counts, never a callback's content.
            assert world.emulator.jobs[job_id].status != "ON_QUEUE"
            if image is not None:
                assert image == world.emulator.jobs[job_id].image_url
        else:
            # Trusted: only a callback sent on this job's own hook URL (and answered 200).
            assert world.delivered[job_id], "resolved without a callback on its own hook"
            if image is not None:
                assert image in world.delivered[job_id]
    while len(world.pending(world.trusting)) < 4:  # forged callbacks resolve these: refill
        await world.submit(world.trusting)
    probe = await send(world.port, "POST", "/hook/no-such-token", "", b"{}", "whole")
    assert probe == (404, False)


@SETTINGS
@given(req=requests)
async def test_serve_never_errs_and_never_resolves_a_wrong_job(world: World, req: Request) -> None:
    """One hostile request to serve(): a 4xx or a 2xx, never a 5xx; no wrong job resolved."""
    path, job_id, body, image = build(world, req.target, req.body)
    method, delivery = req.method, req.delivery
    status, cut = await send(world.port, method, path, req.content_type.strip(), body, delivery)
    assert status is not None or cut  # an answer, unless the server hung up on a bad request
    assert status is None or 200 <= status < 500, status
    if delivery == "stall":
        assert status not in {200, 202}  # half a body is never taken
        if method == "POST" and req.target.kind in {"confirming", "trusting", "spare"}:
            assert status == (413 if len(body) + 10 > MAX_BODY else 408)
    if status == 200 and job_id is not None and image is not None:
        world.delivered[job_id].add(image)
    await check_invariants(world)


@SETTINGS
@given(req=requests, pieces=st.integers(1, 4), disconnect=st.booleans())
async def test_asgi_app_never_errs_and_never_resolves_a_wrong_job(
    world: World,
    req: Request,
    pieces: int,
    disconnect: bool,
) -> None:
    """The same for the ASGI app: one response, never a 5xx, no wrong job resolved."""
    path, job_id, body, image = build(world, req.target, req.body)
    method, stall = req.method, req.delivery == "stall"
    size = max(1, -(-len(body) // pieces))
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks) or stall}
        if disconnect:
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()  # the rest of the body never comes
        raise AssertionError  # pragma: no cover

    async def reply(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path}
    with anyio.fail_after(5):
        await world.receiver.asgi_app(scope, receive, reply)  # type: ignore[arg-type]
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    if stall and disconnect and method == "POST" and len(body) <= MAX_BODY:
        assert statuses == []  # the sender left: nothing to answer
    else:
        assert len(statuses) == 1
        assert 200 <= statuses[0] < 500
    if statuses == [200] and job_id is not None and image is not None:
        world.delivered[job_id].add(image)
    await check_invariants(world)
