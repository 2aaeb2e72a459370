"""The synchronous resources a client hands out: ``images`` and ``dalle3``.

Strictly private (the job routes, ``gpt4o`` and ``gpt``, are in :mod:`~ttapi_async._jobs`).
Each method is the same three steps: build a checked
:class:`~ttapi_async._protocol.RequestSpec` (nothing is sent if a rule is broken), send it
through the :class:`~ttapi_async._sender.Sender` the resource was handed, and parse the
reply, all under one deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from ._errors import RequestTimeout, ValidationError
from ._http import RawResponse
from ._imagestream import ImageStream
from ._inputs import load_edit_input
from ._models import ImagesResponse, ResponseInfo
from ._protocol import (
    RequestSpec,
    build_dalle3,
    build_edit,
    build_edit_json,
    build_generate,
    parse_images,
)
from ._types import NOT_GIVEN, FileID, ImageInput, ImageRef, ImageURL, Timeout


if TYPE_CHECKING:
    from ._sender import Sender


__all__ = ["Dalle3", "Images"]


def _images_parser(
    prompt: str | None, model: str | None
) -> Callable[[RawResponse, ResponseInfo], ImagesResponse]:
    """The reply's parser for one call, which keeps the call's prompt and model.

    ``client.save`` names files from the prompt; sidecars record the prompt and model.
    """

    def parse(raw: RawResponse, info: ResponseInfo) -> ImagesResponse:
        return parse_images(raw.status, raw.headers, raw.body, info, prompt=prompt, model=model)

    return parse


class _Resource:
    __slots__ = ("_sender",)

    def __init__(self, sender: Sender) -> None:
        self._sender = sender


class Images(_Resource):
    """``POST /v1/images/generations`` and ``POST /v1/images/edits``.

    OpenAI-compatible and synchronous: gpt-image-1, dall-e-2, dall-e-3.
    """

    __slots__ = ()

    @overload
    async def generate(
        self,
        *,
        prompt: str,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        style: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        stream: Literal[False] = False,
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse: ...

    @overload
    async def generate(
        self,
        *,
        prompt: str,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        style: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        stream: Literal[True],
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImageStream: ...

    async def generate(
        self,
        *,
        prompt: str,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        style: str | None = None,
        background: str | None = None,
        moderation: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        user: str | None = None,
        stream: bool = False,
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse | ImageStream:
        """Create images from a prompt.

        Arguments follow OpenAI's Images API; a None is not sent. The rules of the known
        models (gpt-image-1, gpt-image-1.5, gpt-image-2, dall-e-2, dall-e-3) are checked
        first, and a broken rule raises :class:`ValidationError` naming the parameter.
        gpt-image-2 takes any ``WIDTHxHEIGHT`` with both sides multiples of 16, the longer
        edge at most 3840 and a ratio up to 3:1 (the server decides the rest). With no
        ``model`` the server's default is assumed: dall-e-2, or gpt-image-1 when a
        parameter only the GPT image models take is given (``background``,
        ``moderation``, ``output_format``, ``output_compression``). Other models pass
        through unchecked.
        ``extra_body`` adds raw fields (unchecked). ``timeout`` bounds the whole call.

        Returns:
            The :class:`ImagesResponse` (``data[i].b64_json`` or ``.url``; ``usage`` for
            gpt-image models; ``http`` for status, headers and attempts).
        """
        params = {
            "prompt": prompt,
            "model": model,
            "n": n,
            "size": size,
            "quality": quality,
            "response_format": response_format,
            "style": style,
            "background": background,
            "moderation": moderation,
            "output_format": output_format,
            "output_compression": output_compression,
            "user": user,
            "stream": True if stream else None,
            "partial_images": partial_images,
        }
        spec = build_generate(params, extra_body)
        if stream:
            return await self._stream(
                spec, "image_generation", n, self._sender.deadline(timeout), model
            )
        return await self._sender.call(
            spec, _images_parser(prompt, model), self._sender.deadline(timeout), model=model
        )

    async def _stream(
        self,
        spec: RequestSpec,
        kind: str,
        n: int | None,
        deadline: float | None,
        model: str | None,
    ) -> ImageStream:
        """Open a streamed call; its events come from the :class:`ImageStream`."""
        view, opener = self._sender.streaming()
        scrub = self._sender.scrubber(spec)

        def parse(raw: RawResponse, info: ResponseInfo) -> ImageStream:
            if opener.opened is None:  # a plain JSON reply: the server buffered the stream
                response = parse_images(raw.status, raw.headers, raw.body, info)
                return ImageStream.of_response(
                    response, kind=kind, operation=spec.operation, scrub=scrub
                )
            opened, opener.opened = opener.opened, None
            return ImageStream(opened, operation=spec.operation, expected=n or 1, scrub=scrub)

        try:
            return await view.call(spec, parse, deadline, model=model)
        except BaseException:
            await opener.aclose()
            raise

    @overload
    async def edit(
        self,
        *,
        image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
        prompt: str,
        mask: ImageInput | ImageRef | None = None,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        moderation: str | None = None,
        input_fidelity: str | None = None,
        user: str | None = None,
        stream: Literal[False] = False,
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse: ...

    @overload
    async def edit(
        self,
        *,
        image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
        prompt: str,
        mask: ImageInput | ImageRef | None = None,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        moderation: str | None = None,
        input_fidelity: str | None = None,
        user: str | None = None,
        stream: Literal[True],
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImageStream: ...

    async def edit(
        self,
        *,
        image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
        prompt: str,
        mask: ImageInput | ImageRef | None = None,
        model: str | None = None,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        response_format: str | None = None,
        background: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        moderation: str | None = None,
        input_fidelity: str | None = None,
        user: str | None = None,
        stream: bool = False,
        partial_images: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse | ImageStream:
        """Edit or extend one or more images with a prompt.

        ``image`` is a path, bytes, a binary file, or a list of those (the GPT image
        models: up to 16 png/webp/jpeg images under 50 MB; dall-e-2: one square PNG under
        4 MB). ``input_fidelity`` (``high`` or ``low``) is for the GPT image models; which
        of them take it is disputed, so the server decides that.
        ``mask`` is a PNG with the first image's dimensions whose transparent pixels mark
        what to edit. The MIME type of each upload is read from its bytes. Rules are
        checked before anything is sent; ``timeout`` bounds the whole call, reading the
        files included.
        """
        sender = self._sender
        deadline = sender.deadline(timeout)
        sources = _as_list(image)
        params = {
            "prompt": prompt,
            "model": model,
            "n": n,
            "size": size,
            "quality": quality,
            "response_format": response_format,
            "background": background,
            "output_format": output_format,
            "output_compression": output_compression,
            "moderation": moderation,
            "input_fidelity": input_fidelity,
            "user": user,
            "stream": True if stream else None,
            "partial_images": partial_images,
        }
        given = [*sources, *([] if mask is None else [mask])]
        by_ref = [isinstance(src, ImageURL | FileID) for src in given]
        if any(by_ref):
            if not all(by_ref):
                raise ValidationError(
                    "image",
                    "uploads and URLs mixed",
                    "give every image and the mask as tt.ImageURL / tt.FileID (a JSON edit), "
                    "or none of them (an upload)",
                )
            refs = cast("list[ImageRef]", sources)
            spec = build_edit_json(params, refs, cast("ImageRef | None", mask), extra_body)
            if stream:
                return await self._stream(spec, "image_edit", n, deadline, model)
            return await sender.call(spec, _images_parser(prompt, model), deadline, model=model)
        try:
            async with asyncio.timeout_at(deadline):
                images = [
                    await load_edit_input(src, "image" if len(sources) == 1 else f"image[{i}]")
                    for i, src in enumerate(sources)
                ]
                mask_image = None if mask is None else await load_edit_input(mask, "mask")
        except TimeoutError as exc:
            msg = "images.edit timed out while reading its input files"
            raise RequestTimeout(msg, request_sent=False) from exc
        spec = build_edit(params, images, mask_image, extra_body)
        if stream:
            return await self._stream(spec, "image_edit", n, deadline, model)
        return await sender.call(spec, _images_parser(prompt, model), deadline, model=model)


def _as_list(
    image: ImageInput | ImageRef | Sequence[ImageInput | ImageRef],
) -> list[ImageInput | ImageRef]:
    if isinstance(image, list | tuple):
        return list(image)
    return [image]  # type: ignore[list-item]  # a str/bytes is one image, not a sequence


class Dalle3(_Resource):
    """The legacy DALL-E 3 route ``POST /openai/v1/images/generations``.

    TTAPI wraps the OpenAI reply in its envelope; the SDK unwraps it, so this returns the
    same :class:`ImagesResponse` as ``images.generate``. TTAPI marks the route as no longer
    recommended; ``images.generate(model="dall-e-3")`` is the newer path.
    """

    __slots__ = ()

    async def generate(
        self,
        *,
        prompt: str,
        size: str,
        quality: str | None = None,
        style: str | None = None,
        n: int | None = None,
        model: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> ImagesResponse:
        """Create one DALL-E 3 image.

        ``size`` is required on this route: 1024x1024, 1024x1792 or 1792x1024;
        ``quality`` is standard or hd.
        """
        params = {
            "prompt": prompt,
            "size": size,
            "quality": quality,
            "style": style,
            "n": n,
            "model": model,
        }
        spec = build_dalle3(params, extra_body)
        # The route serves dall-e-3 whatever ``model`` says: the sidecar records that.
        parser = _images_parser(prompt, model or "dall-e-3")
        return await self._sender.call(spec, parser, self._sender.deadline(timeout), model=model)
