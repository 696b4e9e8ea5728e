"""TensorZero-compatible API: ``POST /inference`` and ``POST /feedback``.

The official ``tensorzero`` Python client works against it unchanged
(``TensorZeroGateway.build_http(gateway_url="http://host:port")``); the wire protocol it
speaks is written up in ``shared/protocols/tensorzero.md``.

A TensorZero request is translated into our :class:`ChatRequest` (OpenAI message format):
``model_name`` names a model as anywhere else (``provider::model`` or a configured name);
``function_name`` names a configured model for now (functions with templates and variants
are not modelled yet, so templates are refused with 400 ``templates_unsupported``). A
request with ``output_schema`` is answered as a TensorZero *JSON function* (``output``
instead of ``content``). ``variant_name`` in answers is the provider that served the call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequestError, NotFoundError
from ...services.ai import CallContext, ChatStream
from ...types import ChatRequest, ChatResult, Usage
from ..http import (
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    parse_object,
    read_body,
    read_object,
    sse_event,
    sse_response,
    validate,
)
from ..openapi import ANY_OBJECT, Operation
from .native import guarded_stream

# OpenAI-style finish reasons (what providers report) -> TensorZero's.
_FINISH_REASONS = {
    "stop": "stop",
    "stop_sequence": "stop_sequence",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_call",
    "tool_call": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "content_filter": "content_filter",
}

# params.chat_completion keys -> ChatRequest fields.
_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "top_p": "top_p",
    "seed": "seed",
    "stop_sequences": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}

_TOOL_CHOICES = {"auto": "auto", "required": "required", "none": "none", "off": "none"}


def finish_reason(value: str | None) -> str | None:
    if value is None:
        return None
    return _FINISH_REASONS.get(value, "unknown")


def _bad(message: str, code: str = "invalid_request") -> InvalidRequestError:
    return InvalidRequestError(message, code=code)


# --------------------------------------------------------------------------- request translation


def _context(request: Request, body: dict[str, Any]) -> CallContext:
    tags = body.get("tags")
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise _bad("'tags' must be an object of strings", "invalid_tags")
    tags = dict(tags) if tags else {}
    namespace = body.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            raise _bad("'namespace' must be a non-empty string", "invalid_namespace")
        tags["tensorzero::namespace"] = namespace
    episode_id = body.get("episode_id")
    if episode_id is not None:
        episode_id = _uuid_str(episode_id, "episode_id")
    dryrun = body.get("dryrun")
    if dryrun is not None and not isinstance(dryrun, bool):
        raise _bad("'dryrun' must be a boolean", "invalid_dryrun")
    return CallContext(
        episode_id=episode_id, api_key_id=request.state.api_key_id, tags=tags or None, dryrun=bool(dryrun)
    )


def _uuid_str(value: Any, field: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _bad(f"'{field}' must be a UUID, got {value!r}", "invalid_id") from None


def _model(request: Request, body: dict[str, Any]) -> str:
    function_name = body.get("function_name")
    model_name = body.get("model_name")
    if function_name is not None and model_name is not None:
        raise _bad("give only one of 'function_name' or 'model_name'", "invalid_request")
    if model_name is not None:
        if not isinstance(model_name, str) or not model_name:
            raise _bad("'model_name' must be a non-empty string", "missing_model")
        return model_name
    if function_name is None:
        raise _bad("one of 'function_name' or 'model_name' is required", "missing_model")
    if not isinstance(function_name, str) or not function_name:
        raise _bad("'function_name' must be a non-empty string", "missing_model")
    if function_name not in gateway(request).config.models:
        raise NotFoundError(
            f"unknown function {function_name!r}: functions are configured models (declare it under [models])",
            code="function_not_found",
        )
    return function_name


def _text_of_block(block: dict[str, Any]) -> str:
    if "arguments" in block and "text" not in block:
        raise _bad("template arguments in text blocks are not supported; send plain text", "templates_unsupported")
    text = block.get("text", block.get("value"))
    if not isinstance(text, str):
        raise _bad("a 'text' content block needs a string 'text'", "invalid_content_block")
    return text


def _file_part(block: dict[str, Any]) -> dict[str, Any]:
    file_type = block.get("file_type") or ("url" if "url" in block else "base64")
    mime = block.get("mime_type")
    is_image = mime is None or (isinstance(mime, str) and mime.startswith("image/"))
    if file_type == "url":
        url = block.get("url")
        if not isinstance(url, str) or not url:
            raise _bad("a 'file' block of type url needs a 'url'", "invalid_content_block")
        if not is_image:
            raise _bad(f"file URLs of type {mime!r} are not supported; send images or base64 data", "unsupported_file")
        image: dict[str, Any] = {"url": url}
    elif file_type == "base64":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            raise _bad("a 'file' block of type base64 needs 'data'", "invalid_content_block")
        if not isinstance(mime, str) or not mime:
            raise _bad("a base64 'file' block needs a 'mime_type'", "invalid_content_block")
        uri = f"data:{mime};base64,{data}"
        if not is_image:
            file: dict[str, Any] = {"file_data": uri}
            if isinstance(block.get("filename"), str):
                file["filename"] = block["filename"]
            return {"type": "file", "file": file}
        image = {"url": uri}
    else:
        raise _bad(f"unsupported file_type {file_type!r}", "invalid_content_block")
    detail = block.get("detail")
    if isinstance(detail, str):
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _messages(data: Any) -> list[dict[str, Any]]:
    """TensorZero ``input`` as OpenAI chat messages."""
    if not isinstance(data, dict):
        raise _bad("'input' must be an object with 'messages' (and optionally 'system')", "invalid_input")
    out: list[dict[str, Any]] = []
    system = data.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise _bad("system templates are not supported; send 'system' as a string", "templates_unsupported")
        out.append({"role": "system", "content": system})
    messages = data.get("messages") or []
    if not isinstance(messages, list):
        raise _bad("'input.messages' must be a list", "invalid_input")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"input.messages[{i}] must be an object", "invalid_input")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"input.messages[{i}].role must be 'user' or 'assistant', got {role!r}", "invalid_role")
        out.extend(_message(role, message.get("content"), i))
    return out


def _message(role: str, content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if content is None:
        content = []
    if not isinstance(content, list):
        raise _bad(f"input.messages[{index}].content must be a string or a list of blocks", "invalid_input")
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
            continue
        if not isinstance(block, dict):
            raise _bad(f"input.messages[{index}].content[{j}] must be an object", "invalid_content_block")
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text_of_block(block)})
        elif kind == "raw_text":
            value = block.get("value", block.get("text"))
            if not isinstance(value, str):
                raise _bad("a 'raw_text' block needs a string 'value'", "invalid_content_block")
            parts.append({"type": "text", "text": value})
        elif kind == "template":
            raise _bad("template content blocks are not supported; send text", "templates_unsupported")
        elif kind == "tool_call":
            tool_calls.append(_tool_call_in(block))
        elif kind == "tool_result":
            tool_results.append(_tool_result(block))
        elif kind in ("file", "image"):
            parts.append(_file_part(block))
        elif kind == "thought":
            continue  # reasoning of an earlier turn: not sent back to providers
        else:
            raise _bad(f"unsupported content block type {kind!r}", "invalid_content_block")
    # Tool results answer the preceding assistant turn, so they go first (OpenAI order).
    out = list(tool_results)
    if role == "assistant":
        if parts or tool_calls:
            msg: dict[str, Any] = {"role": "assistant", "content": _collapse(parts, assistant=True)}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            out.append(msg)
    elif parts or not tool_results:
        out.append({"role": "user", "content": _collapse(parts, assistant=False)})
    return out


def _collapse(parts: list[dict[str, Any]], *, assistant: bool) -> str | list[dict[str, Any]] | None:
    if not parts:
        return None if assistant else ""
    if all(p["type"] == "text" for p in parts):
        if len(parts) == 1 or assistant:
            return "".join(p["text"] for p in parts)
    return parts


def _tool_call_in(block: dict[str, Any]) -> dict[str, Any]:
    call_id = block.get("id")
    name = block.get("name") or block.get("raw_name")
    arguments = block.get("arguments")
    if arguments is None:
        arguments = block.get("raw_arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not name:
        raise _bad("a 'tool_call' block needs 'id' and 'name'", "invalid_content_block")
    if arguments is None:
        arguments = "{}"
    elif not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    call_id = block.get("id")
    result = block.get("result")
    if not isinstance(call_id, str) or not isinstance(result, str):
        raise _bad("a 'tool_result' block needs string 'id' and 'result'", "invalid_content_block")
    msg: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": result}
    if isinstance(block.get("name"), str):
        msg["name"] = block["name"]
    return msg


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    additional = body.get("additional_tools")
    if additional is None:
        return None
    if not isinstance(additional, list):
        raise _bad("'additional_tools' must be a list", "invalid_tools")
    tools = []
    for i, tool in enumerate(additional):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"additional_tools[{i}] needs a 'name'", "invalid_tools")
        fn: dict[str, Any] = {"name": tool["name"]}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                fn[key] = tool[key]
        tools.append({"type": "function", "function": fn})
    return tools or None


def _tool_choice(value: Any) -> str | dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _TOOL_CHOICES:
        return _TOOL_CHOICES[value]
    if isinstance(value, dict) and isinstance(value.get("specific"), str):
        return {"type": "function", "function": {"name": value["specific"]}}
    raise _bad("'tool_choice' must be auto, required, off or {\"specific\": <tool name>}", "invalid_tool_choice")


def translate(request: Request, body: dict[str, Any]) -> ChatRequest:
    """A TensorZero ``/inference`` body as our :class:`ChatRequest`."""
    chat: dict[str, Any] = {"model": _model(request, body), "messages": _messages(body.get("input"))}
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise _bad("'params' must be an object", "invalid_params")
    completion = params.get("chat_completion") or {}
    if not isinstance(completion, dict):
        raise _bad("'params.chat_completion' must be an object", "invalid_params")
    for key, field in _PARAMS.items():
        if completion.get(key) is not None:
            chat[field] = completion[key]
    tools = _tools(body)
    if tools:
        chat["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    schema = body.get("output_schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise _bad("'output_schema' must be a JSON schema object", "invalid_output_schema")
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    chat["stream"] = bool(body.get("stream"))
    return validate(ChatRequest, chat)


# --------------------------------------------------------------------------- responses


def _usage(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


def _parse_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def render_inference(result: ChatResult, request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "inference_id": result.inference_id,
        "episode_id": result.episode_id,
        "variant_name": result.provider,
    }
    if request.response_format is not None:
        out["output"] = {"raw": result.content, "parsed": _parse_json(result.content)}
    else:
        declared = {t.function.name for t in request.tools or ()}
        content: list[dict[str, Any]] = []
        if result.content:
            content.append({"type": "text", "text": result.content})
        for call in result.tool_calls:
            arguments = _parse_json(call.arguments)
            content.append(
                {
                    "type": "tool_call",
                    "id": call.id,
                    "raw_name": call.name,
                    "raw_arguments": call.arguments,
                    "name": call.name if call.name in declared else None,
                    "arguments": arguments if isinstance(arguments, dict) else None,
                }
            )
        out["content"] = content
    out["usage"] = _usage(result.usage)
    out["finish_reason"] = finish_reason(result.finish_reason)
    return out


async def _inference_events(stream: ChatStream, json_function: bool) -> AsyncIterator[bytes]:
    result = stream.result
    head = {"inference_id": result.inference_id, "episode_id": result.episode_id, "variant_name": result.provider}
    call_ids: dict[int, str] = {}
    usage: Usage | None = None
    finish: str | None = None
    async for item in guarded_stream(stream):
        if isinstance(item, bytes):
            if item.startswith(b"data: [DONE]"):  # the end: one last chunk with usage and finish reason
                last: dict[str, Any] = {**head, "raw": ""} if json_function else {**head, "content": []}
                last["usage"] = _usage(usage or Usage())
                last["finish_reason"] = finish_reason(finish) or "stop"
                yield sse_event(last)
            yield item  # [DONE], or the error event that ends the stream without it
            continue
        if item.usage is not None:
            usage = item.usage
        if item.finish_reason:
            finish = item.finish_reason
        if json_function:
            if item.content:
                yield sse_event({**head, "raw": item.content})
            continue
        blocks: list[dict[str, Any]] = []
        if item.content:
            blocks.append({"type": "text", "id": "0", "text": item.content})
        for tc in item.tool_calls or ():
            call_id = call_ids.setdefault(tc.index, tc.id or f"call_{tc.index}")
            blocks.append(
                {"type": "tool_call", "id": call_id, "raw_name": tc.name or "", "raw_arguments": tc.arguments}
            )
        if blocks:
            yield sse_event({**head, "content": blocks})


# --------------------------------------------------------------------------- endpoints


async def inference(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw)
    ctx = _context(request, body)
    chat_request = translate(request, body)
    # ``dryrun: true`` answers as usual (the key is charged) but stores no inference.
    service = gateway(request).ai
    if chat_request.stream:
        stream = await service.open_stream(chat_request, ctx)
        return sse_response(_inference_events(stream, chat_request.response_format is not None))

    async def produce() -> Response:
        return json_response(render_inference(await service.chat(chat_request, ctx), chat_request))

    return await idempotent(request, idempotency_key(request), raw, produce)


async def feedback(request: Request) -> Response:
    data = await read_object(request)
    metric_name = data.get("metric_name")
    if not isinstance(metric_name, str) or not metric_name:
        raise _bad("'metric_name' must be a non-empty string", "missing_metric")
    if "value" not in data:
        raise _bad("'value' is required", "missing_value")
    ids: dict[str, str | None] = {}
    for field in ("inference_id", "episode_id"):
        value = data.get(field)
        if value is not None and not isinstance(value, str):
            raise _bad(f"'{field}' must be a UUID string", "invalid_id")
        ids[field] = value
    tags = data.get("tags")
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise _bad("'tags' must be an object of strings", "invalid_tags")
    dryrun = data.get("dryrun")
    if dryrun is not None and not isinstance(dryrun, bool):
        raise _bad("'dryrun' must be a boolean", "invalid_dryrun")
    # ``internal`` is accepted and ignored; ``dryrun`` checks everything and stores nothing.
    feedback_id = await gateway(request).feedback.submit(
        metric_name,
        data["value"],
        inference_id=ids["inference_id"],
        episode_id=ids["episode_id"],
        tags=tags or None,
        dryrun=bool(dryrun),
    )
    return json_response({"feedback_id": feedback_id})


routes = [
    Route("/inference", inference, methods=["POST"]),
    Route("/feedback", feedback, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "POST",
        "/inference",
        "TensorZero: inference",
        "tensorzero",
        "tensorzeroInference",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
        stream=True,
    ),
    Operation(
        "POST",
        "/feedback",
        "TensorZero: feedback",
        "tensorzero",
        "tensorzeroFeedback",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
    ),
]
