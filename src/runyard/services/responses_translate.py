"""The Responses API translated onto chat: request items -> chat messages, chat results ->
response objects and output items (the shapes of the ``openai`` package's ``types/responses``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..inference import ChatOutcome, ChatRequest, ModelToolCall, TokenUsage
from .openai_params import UnsupportedParameterError, invalid

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``. Unknown fields are accepted and ignored (frameworks send new ones)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None

    @property
    def stored(self) -> bool:
        return self.store is not False


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def response_id_for(inference_id: str) -> str:
    return "resp_" + inference_id.replace("-", "")


# --------------------------------------------------------------------------- request


def check_supported(req: ResponsesRequest) -> None:
    if req.background:
        raise UnsupportedParameterError("background responses are not supported", param="background")
    if req.conversation is not None:
        raise UnsupportedParameterError(
            "conversations are not supported; chain responses with previous_response_id", param="conversation"
        )
    if req.prompt is not None:
        raise UnsupportedParameterError("prompt templates are not supported", param="prompt")


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as items with ids (what ``GET .../input_items`` lists)."""
    raw = [{"type": "message", "role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    items = []
    for given in raw:
        item: dict[str, Any] = dict(given)
        if (item.get("type") or "message") == "message":
            item.setdefault("type", "message")
            item.setdefault("id", new_item_id("msg"))
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
        items.append(item)
    return items


def to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat messages (consecutive function calls join one assistant message)."""
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type") or "message"
        where = f"input[{i}]"
        if kind == "message":
            role = item.get("role")
            if role not in MESSAGE_ROLES:
                raise invalid(f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}", f"{where}.role")
            content = _content(item.get("content"), f"{where}.content", flatten=role != "user")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": _text_field(item, "call_id", where),
                "type": "function",
                "function": {"name": _text_field(item, "name", where), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output, f"{where}.output", flatten=True)
            messages.append({"role": "tool", "tool_call_id": _text_field(item, "call_id", where), "content": text})
        elif kind == "reasoning":
            continue  # reasoning summaries are the model's own; chat models take no such input
        else:
            raise UnsupportedParameterError(
                f"input item type {kind!r} is not supported (message, function_call, function_call_output)",
                param=f"{where}.type",
                code="unsupported_input_item",
            )
    return messages


def _text_field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise invalid(f"{where}.{name} is required (a non-empty string)", f"{where}.{name}", "missing_field")
    return value


def _content(content: Any, where: str, *, flatten: bool) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where} must be a string or a list of content parts", where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise invalid(f"{where}[{j}].text must be a string", f"{where}[{j}].text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise UnsupportedParameterError(
                f"content part {kind!r} is not supported (input_text, output_text, input_image with image_url)",
                param=f"{where}[{j}].type",
                code="unsupported_content",
            )
    if flatten or all(p["type"] == "text" for p in parts):
        return "".join(p.get("text", "") for p in parts)
    return parts


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise UnsupportedParameterError(
                f"tool type {tool.get('type')!r} is not supported; only function tools are",
                param=f"tools[{i}].type",
                code="unsupported_tool",
            )
        name = _text_field(tool, "name", f"tools[{i}]")
        fn = {k: tool[k] for k in ("description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": {"name": name, **fn}})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise UnsupportedParameterError(
        "tool_choice must be 'auto', 'none', 'required' or {type: 'function', name}", param="tool_choice"
    )


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise invalid("text.format.schema is required (a JSON schema object)", "text.format.schema")
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise UnsupportedParameterError(f"text.format type {fmt.get('type')!r} is not supported", param="text.format")


def chat_request(req: ResponsesRequest, conversation: list[dict[str, Any]]) -> ChatRequest:
    """The chat request for ``conversation`` (history and this input) under ``req``'s settings."""
    messages = list(conversation)
    if req.instructions:
        messages.insert(0, {"role": "system", "content": req.instructions})
    fields: dict[str, Any] = {
        "model": req.model,
        "messages": messages,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_tokens": req.max_output_tokens,
        "tools": chat_tools(req.tools),
        "tool_choice": chat_tool_choice(req.tool_choice),
        "parallel_tool_calls": req.parallel_tool_calls if req.tools else None,
        "response_format": response_format(req.text),
        "user": req.user,
    }
    effort = (req.reasoning or {}).get("effort")
    if effort:
        fields["reasoning_effort"] = effort
    return ChatRequest.model_validate({k: v for k, v in fields.items() if v is not None})


# --------------------------------------------------------------------------- response


def message_item(text: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    content = []
    if status == "completed":
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def function_call_item(call: ModelToolCall, item_id: str, status: str = "completed") -> dict[str, Any]:
    arguments = call.arguments if status == "completed" else ""
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def output_items(result: ChatOutcome) -> list[dict[str, Any]]:
    items = []
    if result.content or not result.tool_calls:
        items.append(message_item(result.content or "", new_item_id("msg")))
    items.extend(function_call_item(call, new_item_id("fc")) for call in result.tool_calls)
    return items


def assistant_message(result: ChatOutcome) -> dict[str, Any]:
    """The answer as a chat message, appended to the stored conversation."""
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.tool_calls:
        message["tool_calls"] = [call.to_openai() for call in result.tool_calls]
    return message


def usage_object(usage: TokenUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    req: ResponsesRequest,
    response_id: str,
    created_at: float,
    *,
    status: str = "completed",
    output: list[dict[str, Any]] | None = None,
    result: ChatOutcome | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    incomplete = None
    if result is not None and result.finish_reason == "length" and status == "completed":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "completed_at": int(now()) if status in ("completed", "incomplete") else None,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": req.model,
        "output": output or [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": (req.reasoning or {}).get("effort"), "summary": None},
        "store": req.stored,
        "temperature": req.temperature,
        "text": {"format": (req.text or {}).get("format") or {"type": "text"}},
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage_object(result.usage) if result is not None else None,
        "user": req.user,
        "metadata": req.metadata or {},
    }
    if result is not None:
        body["x_runyard"] = {
            "inference_id": result.inference_id,
            "provider": result.provider,
            "model": result.model,
            "cost": result.cost,
        }
    return body


def now() -> float:
    return time.time()
