"""Misuses a type checker must refuse: each line carries the error it must raise.

Type-checked, never run (see ``check_client.py``). Both directions fail the check: mypy's
``warn_unused_ignores`` (strict) reports a ``# type: ignore[code]`` that is no longer needed,
and basedpyright's ``reportUnnecessaryTypeIgnoreComment`` does the same for
``# pyright: ignore[rule]`` (its config turns plain ``# type: ignore`` off, so each checker
answers for its own comment). So if a signature loosens until the misuse type-checks, the
suite fails as surely as when a correct use stops type-checking.
"""

from __future__ import annotations

import ttapi_async as tt
from ttapi_async.testing import Emulator, Fault


async def misuses(client: tt.Client, job: tt.Job, r: tt.ImagesResponse) -> None:
    """Wrong argument types, missing arguments, wrong awaits and wrong attributes."""
    await client.images.generate(prompt=42)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    await client.images.generate("a red fox")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    await client.images.generate(prompt="x", n="2")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    # ``stream`` must be a literal for mypy: the overloads take Literal[False] and
    # Literal[True] only (no ``stream: bool`` one, as openai-python has). basedpyright
    # expands a bool into both literals and accepts the call, so only mypy's comment.
    flag: bool = True
    await client.images.generate(prompt="x", stream=flag)  # type: ignore[call-overload]
    await client.images.edit(image=1, prompt="x")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    await client.dalle3.generate(prompt="a cat")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await client.gpt4o.submit(prompt=["a", "b"])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await client.gpt.submit(prompt="x", quality="low")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await client.gpt4o.fetch(123)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await job.wait(timeout="soon")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await client.waiter.wait(job, route=4)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await client.save(b"png bytes", "images")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    client.bulk(["draw a cat"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    tt.Client(api_key=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    tt.Client("key", "https://api.ttapi.io")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    tt.Client(base_uri="https://api.ttapi.io")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # The package's lazy names are declared for checkers: a misspelt one is an error.
    tt.Clinet  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]  # noqa: B018

    # Awaiting what is not awaitable, and forgetting to await what is.
    await client.gpt4o.job("id")  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
    await r.data[0].decode()  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
    snap: tt.JobSnapshot = client.gpt4o.fetch("id")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    async with client.images.generate(prompt="x", stream=True):  # type: ignore[attr-defined]  # pyright: ignore[reportGeneralTypeIssues]
        pass
    with client:  # type: ignore[attr-defined]  # pyright: ignore[reportGeneralTypeIssues]
        pass

    # Results are frozen and read-only; optional fields must be checked before use.
    r.created = 0  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    tokens: int = r.usage.total_tokens  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
    url: str = r.data[0].url  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    client.images = client.images  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    del snap, tokens, url

    # The emulator's knobs are typed too.
    Fault(kind="explode")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Emulator(job_duration="fast")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
