"""A minimal aiohttp server answering /v1/images/generations with a fixed gpt-image-1 body.

The benchmark's cross-check: it does no validation and no bookkeeping, so it shows what the
clients do when the server costs as little as aiohttp allows.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import socket

from aiohttp import web
from PIL import Image


def body(reply: str = "b64") -> bytes:
    """The reply: a gpt-image-1 image in base64, or a small dall-e-2 reply with a URL."""
    if reply == "url":
        return json.dumps(
            {"created": 1745818538, "data": [{"url": "https://example.invalid/img/fox.png"}]}
        ).encode()
    buf = io.BytesIO()
    Image.new("RGB", (1024, 1024), (200, 90, 40)).save(buf, "PNG")
    return json.dumps(
        {
            "created": 1745818538,
            "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}],
            "usage": {
                "input_tokens": 9,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 9},
                "output_tokens": 4160,
                "total_tokens": 4169,
            },
            "background": "opaque",
            "output_format": "png",
            "quality": "low",
            "size": "1024x1024",
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", choices=["b64", "url"], default="b64")
    args = parser.parse_args()
    payload = body(args.reply)

    async def generate(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/images/generations", generate)
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    print(f"minimal server on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
