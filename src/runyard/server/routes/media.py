"""Audio, images and vision: Runyard's ``/v1/ai/tts``, ``/v1/ai/asr``, ``/v1/ai/image``,
``/v1/ai/vision``, and the OpenAI-compatible ``/v1/audio/speech``, ``/v1/audio/transcriptions``
and ``/v1/images/generations``.

Speech answers are the audio bytes themselves (``audio/wav`` by default), with the inference
id and provider in ``X-Runyard-*`` headers; ``"stream": true`` sends them as they are made.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...errors import InvalidRequestError, PayloadTooLargeError
from ...inference import ChatRequest, ImageOutcome, ImageRequest, SpeechOutcome, SpeechRequest, TranscribeRequest
from ...services.media import MediaService
from ...services.streams import SpeechStream
from ..calls import apply_vendor, call_context, render_chat
from ..http import caller_key_id, gateway, json_response, parse_object, read_body, read_object, validate
from ..openapi import ANY_OBJECT, BINARY, Operation
from .files import access_url


def media(request: Request) -> MediaService:
    return gateway(request).media


# -- text to speech ---------------------------------------------------------------------


def _speech_headers(inference_id: str, provider: str, model: str) -> dict[str, str]:
    return {"X-Runyard-Inference-Id": inference_id, "X-Runyard-Provider": provider, "X-Runyard-Model": model}


def _speech_response(result: SpeechOutcome) -> Response:
    headers = _speech_headers(result.inference_id, result.provider, result.model)
    if result.sample_rate:
        headers["X-Runyard-Sample-Rate"] = str(result.sample_rate)
    if result.duration_s:
        headers["X-Runyard-Duration-S"] = f"{result.duration_s:.3f}"
    return Response(result.audio, media_type=result.media_type, headers=headers)


def _stream_response(stream: SpeechStream) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for piece in stream:
            yield piece

    headers = _speech_headers(stream.inference_id, stream.route.provider.name, stream.route.name)
    return StreamingResponse(body(), media_type=stream.media_type, headers=headers)


async def _speak(request: Request, body: dict[str, Any], *, keep: bool = False) -> Response:
    """``keep``: also store the audio as a file (``X-Runyard-Audio-Url``), unless ``"store": false``."""
    store = body.pop("store", True) if keep else False
    ctx = call_context(request, body)
    if "input" not in body and "text" in body:
        body["input"] = body.pop("text")
    if "format" in body and "response_format" not in body:
        body["response_format"] = body.pop("format")
    apply_vendor(body)
    speech = validate(SpeechRequest, body)
    service = media(request)
    stream_format = (speech.model_extra or {}).get("stream_format")
    if speech.stream or stream_format == "audio":
        return _stream_response(await service.open_speech_stream(speech, ctx))
    result = await service.speech(speech, ctx)
    response = _speech_response(result)
    response.headers["X-Runyard-Format"] = speech.audio_format
    if store is not False:
        record = await gateway(request).files.put(
            result.audio, f"speech-{result.inference_id}.{speech.audio_format}", result.media_type,
            api_key_id=caller_key_id(request),
        )  # fmt: skip
        response.headers["X-Runyard-Audio-Url"] = access_url(request, record)
        response.headers["X-Runyard-File-Id"] = record.id
    return response


async def tts(request: Request) -> Response:
    """``POST /v1/ai/tts``: ``{"input" (or "text"), "model"?, "voice"?, "format"?: wav|pcm, "speed"?, "stream"?,
    "store"?}``: the audio bytes; unless ``"store": false`` it is also kept as a file (``X-Runyard-Audio-Url``)."""
    return await _speak(request, parse_object(await read_body(request)), keep=True)


async def audio_speech(request: Request) -> Response:
    """OpenAI ``POST /v1/audio/speech`` (``response_format`` defaults to wav here)."""
    body = parse_object(await read_body(request))
    return await _speak(request, body)


# -- speech to text ---------------------------------------------------------------------


async def _transcribe_request(request: Request) -> tuple[TranscribeRequest, dict[str, Any]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        limit = gateway(request).config.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes", code="body_too_large")
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError("multipart field 'file' (the audio) is required", code="missing_file")
        audio = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        filename = upload.filename or "audio.wav"
        media_type = upload.content_type or "application/octet-stream"
    else:
        fields = parse_object(await read_body(request))
        data = fields.pop("audio", None) or fields.pop("file", None)
        if isinstance(data, dict):  # Infrai's {"url": ...} | {"base64": ..., "mime": ...}
            if isinstance(data.get("url"), str):
                gw = gateway(request)
                record = await gw.files.fetch(
                    data["url"],
                    api_key_id=caller_key_id(request),
                    allow_private=gw.config.webhooks.allow_private_webhooks,
                )
                fields.setdefault("filename", record.filename)
                data = f"data:{record.content_type};base64," + base64.b64encode(await gw.files.read(record)).decode()
            elif isinstance(data.get("base64"), str):
                mime = data.get("mime") if isinstance(data.get("mime"), str) else "application/octet-stream"
                data = f"data:{mime};base64,{data['base64']}"
        if not isinstance(data, str) or not data:
            raise InvalidRequestError(
                "'audio' (base64 or a data: URI) is required, or send multipart with a 'file'", code="missing_file"
            )
        media_type = "application/octet-stream"
        if data.startswith("data:"):
            header, _, data = data.partition(",")
            media_type = header[5:].split(";")[0] or media_type
        try:
            audio = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError("'audio' is not valid base64", code="invalid_audio") from None
        filename = str(fields.pop("filename", None) or "audio.wav")
    if not audio:
        raise InvalidRequestError("the audio is empty", code="invalid_audio")
    temperature = fields.get("temperature")
    req = TranscribeRequest(
        audio=audio,
        filename=filename,
        content_type=media_type,
        model=fields.get("model") or None,
        language=fields.get("language") or None,
        prompt=fields.get("prompt") or None,
        temperature=float(temperature) if temperature not in (None, "") else None,
    )
    return req, fields


async def asr(request: Request) -> Response:
    """``POST /v1/ai/asr``: multipart ``file`` (+ model, language, prompt) or JSON ``{"audio": base64}``."""
    req, fields = await _transcribe_request(request)
    ctx = call_context(request, {k: v for k, v in fields.items() if k in ("episode_id", "tags")})
    result = await media(request).transcribe(req, ctx)
    return json_response(
        {
            "inference_id": result.inference_id,
            "text": result.text,
            "language": result.language or req.language,
            "segments": result.segments,
            "duration_s": result.duration_s,
            "model": result.model,
            "provider": result.provider,
            "usage": result.usage.to_dict(),
        }
    )


async def audio_transcriptions(request: Request) -> Response:
    """OpenAI ``POST /v1/audio/transcriptions`` (JSON answer)."""
    req, _ = await _transcribe_request(request)
    result = await media(request).transcribe(req)
    return json_response({"text": result.text, "x_runyard": {"inference_id": result.inference_id}})


# -- images -----------------------------------------------------------------------------


def _render_images(result: ImageOutcome) -> dict[str, Any]:
    return {
        "inference_id": result.inference_id,
        "images": result.images,
        "model": result.model,
        "provider": result.provider,
        "usage": result.usage.to_dict(),
    }


async def image(request: Request) -> Response:
    """``POST /v1/ai/image``: ``{"prompt", "model"?, "n"?, "size"?, "response_format"?}``."""
    body = parse_object(await read_body(request))
    ctx = call_context(request, body)
    prefer = body.pop("prefer", None)
    if prefer is not None and prefer not in ("balanced", "cheapest", "smartest"):
        raise InvalidRequestError("prefer must be balanced, cheapest or smartest", code="invalid_prefer")
    vendor = apply_vendor(body, routing=True)
    image_request = validate(ImageRequest, body)
    routing = prefer or ("balanced" if vendor else None)
    result = await media(request).generate_image(image_request, ctx, prefer=routing, vendor=vendor)
    return json_response(_render_images(result))


async def images_generations(request: Request) -> Response:
    """OpenAI ``POST /v1/images/generations``."""
    body = parse_object(await read_body(request))
    result = await media(request).generate_image(validate(ImageRequest, body))
    return json_response({"created": int(time.time()), "data": result.images})


# -- vision -----------------------------------------------------------------------------


def _image_part(value: Any, detail: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        url = value.get("url") or value.get("image_url")
        if url is None and isinstance(value.get("base64"), str):  # Infrai's {"base64", "mime"?}
            mime = value.get("mime") if isinstance(value.get("mime"), str) else "image/png"
            url = f"data:{mime};base64,{value['base64']}"
    else:
        url = value
    if not isinstance(url, str) or not url:
        raise InvalidRequestError("each image must be a URL, a data: URI or base64 text", code="invalid_image")
    if not url.startswith(("http://", "https://", "data:")):
        url = "data:image/png;base64," + url  # bare base64
    part: dict[str, Any] = {"url": url}
    if detail:
        part["detail"] = detail
    return {"type": "image_url", "image_url": part}


async def vision(request: Request) -> Response:
    """``POST /v1/ai/vision``: ``{"prompt", "image" | "images", "model"?, "detail"?, ...}`` — a
    chat turn with images, served by a provider whose models see."""
    body = parse_object(await read_body(request))
    ctx = call_context(request, body)
    apply_vendor(body)
    images = body.pop("images", None) or ([body.pop("image")] if body.get("image") is not None else [])
    body.pop("image", None)
    prompt = body.pop("prompt", None)
    detail = body.pop("detail", None)
    if "messages" not in body:
        if not images:
            raise InvalidRequestError("'image' (or 'images') is required", code="missing_image")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequestError("'prompt' is required", code="missing_prompt")
        parts = [{"type": "text", "text": prompt}, *(_image_part(i, detail) for i in images)]
        body["messages"] = [{"role": "user", "content": parts}]
    body.pop("stream", None)
    chat_request = validate(ChatRequest, body)
    result = await media(request).vision(chat_request, ctx)
    return json_response(render_chat(result))


# -- realtime sessions ------------------------------------------------------------------


class RealtimeTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    vendor: str | None = None
    voice: str | None = None
    ttl_seconds: int | None = Field(default=None, ge=10, le=7200)


async def realtime_token(request: Request) -> Response:
    """``POST /v1/ai/realtime/token``: ``{model?, vendor?, voice?, ttl_seconds?}`` → a short-lived
    session credential ``{session_id, token, expires_at, ice_servers, model, provider}``."""
    body = validate(RealtimeTokenRequest, await read_object(request))
    session = await media(request).realtime_token(
        body.model, voice=body.voice, ttl_seconds=body.ttl_seconds, vendor=body.vendor
    )
    return json_response(
        {
            "session_id": session.session_id,
            "token": session.token,
            "expires_at": session.expires_at,
            "ice_servers": session.ice_servers,
            "model": session.model,
            "provider": session.provider,
            "voice": session.voice,
        }
    )


routes = [
    Route("/v1/ai/realtime/token", realtime_token, methods=["POST"]),
    Route("/v1/ai/tts", tts, methods=["POST"]),
    Route("/v1/ai/asr", asr, methods=["POST"]),
    Route("/v1/ai/image", image, methods=["POST"]),
    Route("/v1/ai/vision", vision, methods=["POST"]),
    Route("/v1/audio/speech", audio_speech, methods=["POST"]),
    Route("/v1/audio/transcriptions", audio_transcriptions, methods=["POST"]),
    Route("/v1/images/generations", images_generations, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
_AUDIO_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": BINARY, "model": {"type": "string"}, "language": {"type": "string"}},
}
operations = [
    Operation(
        "POST",
        "/v1/ai/realtime/token",
        "A short-lived realtime session credential",
        "media",
        "aiRealtimeToken",
        body=RealtimeTokenRequest,
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/ai/tts",
        "Text to speech",
        "media",
        "aiTts",
        body=SpeechRequest,
        response=BINARY,
        response_media="audio/*",
    ),
    Operation(
        "POST",
        "/v1/ai/asr",
        "Speech to text",
        "media",
        "aiAsr",
        bodies={"multipart/form-data": _AUDIO_FORM, "application/json": ANY_OBJECT},
        response=ANY_OBJECT,
    ),
    Operation("POST", "/v1/ai/image", "Generate images", "media", "aiImage", body=ImageRequest, response=ANY_OBJECT),
    Operation(
        "POST", "/v1/ai/vision", "A chat turn with images", "media", "aiVision", body=ANY_OBJECT, response=ANY_OBJECT
    ),
    Operation(
        "POST",
        "/v1/audio/speech",
        "OpenAI: speech",
        "openai",
        "createSpeech",
        body=SpeechRequest,
        response=BINARY,
        response_media="audio/*",
    ),
    Operation(
        "POST",
        "/v1/audio/transcriptions",
        "OpenAI: transcriptions",
        "openai",
        "createTranscription",
        bodies={"multipart/form-data": _AUDIO_FORM},
        response=ANY_OBJECT,
    ),
    Operation(
        "POST",
        "/v1/images/generations",
        "OpenAI: image generation",
        "openai",
        "createImage",
        body=ImageRequest,
        response=ANY_OBJECT,
    ),
]
