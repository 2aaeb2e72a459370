"""The ``ttapi-async`` command line: thin glue over the library, no logic of its own.

Strictly private. With no ``TTAPI_API_KEY`` (and no ``--api-key``), every command runs
against the embedded emulator and says so, so the tool can be tried without an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ._client import Client
from ._errors import JobFailedError, OutcomeUnknownError, TTAPIError, ValidationError
from ._files import safe_stem
from ._models import ImagesResponse, JobResult


T = TypeVar("T")

#: Exit codes: 0 success; 2 bad usage or a parameter rule; 3 an API or network error;
#: 4 a billable request whose outcome is unknown; 5 a 4o-image job that failed; 130 interrupted.
EXIT_API_ERROR = 3
EXIT_OUTCOME_UNKNOWN = 4
EXIT_JOB_FAILED = 5
EXIT_INTERRUPTED = 130


@contextlib.asynccontextmanager
async def _client(
    api_key: str | None, base_url: str | None, timeout: float
) -> AsyncIterator[Client]:
    """A client for TTAPI, or for a fresh embedded emulator when there is no key."""
    if api_key:
        async with Client(api_key, base_url=base_url, timeout=timeout) as client:
            yield client
        return
    try:
        from .testing import Emulator  # noqa: PLC0415 - only without a key
    except ImportError as exc:
        raise click.ClickException(
            f"no TTAPI_API_KEY is set, and the embedded emulator cannot start: {exc}"
        ) from exc
    async with Emulator(job_duration=(0.5, 1.5)) as emu:
        click.echo(
            f"No TTAPI_API_KEY set: using the embedded TTAPI emulator at {emu.url} "
            "(synthetic images, nothing is billed).",
            err=True,
        )
        async with Client(emu.api_key, base_url=emu.url, timeout=timeout) as client:
            yield client


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning SDK errors into messages and exit codes."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc
    except OutcomeUnknownError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_OUTCOME_UNKNOWN)
    except JobFailedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_JOB_FAILED)
    except TTAPIError as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_API_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _produce(
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    prompt: str,
    call: Callable[[Client], Awaitable[ImagesResponse | JobResult]],
) -> None:
    """Run one generating call (on TTAPI or the emulator), save its images, print paths."""

    async def run() -> None:
        async with _client(api_key, base_url, timeout) as client:
            result = await call(client)
            for path in await client.save(result, out, stem=safe_stem(prompt)):
                click.echo(str(path))
            if isinstance(result, JobResult):
                click.echo(f"job {result.job_id}: {result.elapsed:.1f} s", err=True)
            elif result.usage is not None:
                click.echo(f"usage: {result.usage.total_tokens} tokens", err=True)

    _run(run)


_common = [
    click.option(
        "--api-key",
        envvar="TTAPI_API_KEY",
        default=None,
        show_envvar=True,
        help="TT-API-KEY; without one the embedded emulator is used.",
    ),
    click.option(
        "--base-url",
        envvar="TTAPI_BASE_URL",
        default=None,
        show_envvar=True,
        help="API base URL (default https://api.ttapi.io).",
    ),
    click.option(
        "--timeout",
        type=float,
        default=600.0,
        show_default=True,
        help="Seconds allowed for the whole call.",
    ),
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("images"),
        show_default=True,
        help="Folder the images are saved into.",
    ),
]


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the options every command shares."""
    for option in reversed(_common):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ttapi-async")
def main() -> None:
    """Generate images with TTAPI's OpenAI image models from the command line."""


@main.command()
@click.argument("prompt")
@click.option("--model", default="gpt-image-1", show_default=True)
@click.option("--n", type=int, default=None, help="Number of images (1-10; dall-e-3: 1).")
@click.option("--size", default=None, help="e.g. 1024x1024, 1536x1024, auto.")
@click.option(
    "--quality", default=None, help="gpt-image-1: low/medium/high; dall-e-3: standard/hd."
)
@click.option("--style", default=None, help="dall-e-3 only: vivid or natural.")
@click.option("--background", default=None, help="gpt-image-1: transparent, opaque or auto.")
@click.option("--output-format", default=None, help="gpt-image-1: png, jpeg or webp.")
@click.option("--output-compression", type=int, default=None, help="0-100, webp/jpeg only.")
@click.option("--moderation", default=None, help="gpt-image-1: low or auto.")
@common
def generate(
    prompt: str, api_key: str | None, base_url: str | None, timeout: float, out: Path, **params: Any
) -> None:
    """Generate images from PROMPT (POST /v1/images/generations) and save them to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.images.generate(prompt=prompt, **params),
    )


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", required=True)
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--model", default="gpt-image-1", show_default=True)
@click.option("--n", type=int, default=None)
@click.option("--size", default=None)
@click.option("--quality", default=None)
@click.option("--background", default=None)
@click.option("--output-format", default=None)
@common
def edit(
    images: tuple[str, ...],
    prompt: str,
    mask: str | None,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
    **params: Any,
) -> None:
    """Edit IMAGES with --prompt (POST /v1/images/edits) and save the results to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.images.edit(image=list(images), prompt=prompt, mask=mask, **params),
    )


@main.command()
@click.argument("prompt")
@click.option(
    "--size",
    default="1024x1024",
    show_default=True,
    type=click.Choice(["1024x1024", "1024x1792", "1792x1024"]),
)
@click.option("--quality", default=None, type=click.Choice(["standard", "hd"]))
@common
def dalle3(
    prompt: str,
    size: str,
    quality: str | None,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
) -> None:
    """Generate one DALL-E 3 image on the legacy route and save it to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.dalle3.generate(prompt=prompt, size=size, quality=quality),
    )


@main.command(name="4o")
@click.argument("prompt")
@click.option("--refer", "refer", multiple=True, help="URL of a reference image (repeatable).")
@common
def gpt4o(
    prompt: str,
    refer: tuple[str, ...],
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    out: Path,
) -> None:
    """Run one 4o-image job for PROMPT, wait for it and save the image to --out."""
    _produce(
        api_key,
        base_url,
        timeout,
        out,
        prompt,
        lambda client: client.gpt4o.generate(
            prompt=prompt, refer_images=list(refer) or None, timeout=timeout
        ),
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--api-key", default=None, help="Key the emulator accepts (default: random).")
def emulator(host: str, port: int, api_key: str | None) -> None:
    """Run the TTAPI emulator standalone (same as python -m ttapi_async.testing)."""
    from .testing.__main__ import main as emulator_main  # noqa: PLC0415

    args = ["--host", host, "--port", str(port)] + (["--api-key", api_key] if api_key else [])
    emulator_main(args)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=Path(sys.argv[0]).name)
