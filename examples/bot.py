"""A chat-bot-style script: answers ``/draw <prompt>`` commands with generated images.

It serves the webhook receiver on its own port (TTAPI calls back there), runs each command
as a concurrent task, and replies with the saved file. Commands come from stdin, one per
line (or the demo's canned ones).

    python examples/bot.py              # type: /draw a cat in a hat
    python examples/bot.py --demo       # three canned commands, then exit
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from _common import free_port, ttapi_client

import ttapi_async as tt


OUT = Path(os.environ.get("BOT_OUT", "bot-images"))


async def answer(client: tt.Client, command: str) -> None:
    """Handle one command and print the reply a chat would show."""
    if not command.startswith("/draw "):
        print(f"bot: I only know /draw <prompt> (got {command!r})", flush=True)
        return
    prompt = command.removeprefix("/draw ").strip()
    try:
        result = await client.gpt4o.generate(prompt=f"draw {prompt}", timeout=300)
    except tt.JobFailedError as exc:
        print(f"bot: sorry, that failed: {exc.reason}", flush=True)
        return
    except tt.TTAPIError as exc:
        print(f"bot: sorry, {type(exc).__name__}: {exc}", flush=True)
        return
    paths = await client.save(result, OUT)
    print(
        f"bot: here is {prompt!r}: {paths[0]} ({result.elapsed:.1f} s, via {result.source})",
        flush=True,
    )


async def main(commands: list[str] | None) -> None:
    """Serve the receiver, then answer commands concurrently."""
    port = free_port()
    receiver = tt.WebhookReceiver(f"http://127.0.0.1:{port}/hook")
    async with anyio.create_task_group() as tg:
        await tg.start(receiver.serve, "127.0.0.1", port)
        async with ttapi_client(webhook=receiver) as client, anyio.create_task_group() as chats:
            if commands is not None:
                for command in commands:
                    chats.start_soon(answer, client, command)
            else:
                async for line in _stdin_lines():
                    chats.start_soon(answer, client, line)
        tg.cancel_scope.cancel()


async def _stdin_lines() -> AsyncIterator[str]:
    stdin = anyio.wrap_file(sys.stdin)
    async for line in stdin:
        if line.strip():
            yield line.strip()


if __name__ == "__main__":
    demo = ["/draw a cat in a hat", "/draw a lighthouse at dawn", "hello?"]
    anyio.run(main, demo if "--demo" in sys.argv else None)
