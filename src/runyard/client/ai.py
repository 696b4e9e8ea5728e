"""``client.ai``: chat and embeddings. The sync classes drive the async ones through a portal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from runyard.client._streaming import AsyncChatStream, ChatStream
from runyard.client.media import AsyncImages, AsyncMediaMixin, AsyncRealtime, Images, MediaMixin, Realtime
from runyard.client.types import ChatChunk, ChatResult, EmbedResult

if TYPE_CHECKING:
    from runyard.client._base import AsyncAPIClient
    from runyard.client._sync import Portal

__all__ = ["AI", "AsyncAI", "AsyncEmbeddings", "Embeddings"]

Messages = str | list[dict[str, Any]]

CHAT_PATH = "/v1/ai/chat"
EMBED_PATH = "/v1/ai/embed"


TIMEOUT_GRACE_S = 2.0  # the server answers 504 at the deadline; the client waits this much longer


def _body(**fields: Any) -> dict[str, Any]:
    """Only what the caller set: ``None`` means "server default"."""
    return {k: v for k, v in fields.items() if v is not None}


def _with_deadline(client: AsyncAPIClient, timeout_seconds: Any) -> AsyncAPIClient:
    """``timeout_seconds`` bounds the whole call: the server enforces it (504 ``timeout``), the
    client stops waiting shortly after, and the call is not retried past it."""
    if isinstance(timeout_seconds, int | float) and not isinstance(timeout_seconds, bool) and timeout_seconds > 0:
        return client.with_options(timeout=float(timeout_seconds) + TIMEOUT_GRACE_S, max_retries=0)
    return client


class AsyncEmbeddings:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(
        self,
        input: str | list[str],
        *,
        model: str | None = None,
        vendor: str | None = None,
        dimensions: int | None = None,
        idempotency_key: str | None = None,
    ) -> EmbedResult:
        """Embed one string or a batch (``POST /v1/ai/embed``); with no ``model``, the configured
        (or catalog) embedding model is used, of ``vendor`` if named."""
        body = _body(input=input, model=model, vendor=vendor, dimensions=dimensions)
        data = await self._client.request("POST", EMBED_PATH, json=body, idempotency_key=idempotency_key)
        return EmbedResult.model_validate(data)


class AsyncAI(AsyncMediaMixin):
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client
        self.embed = AsyncEmbeddings(client)
        self.image = AsyncImages(client)
        self.realtime = AsyncRealtime(client)

    @overload
    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: Literal[False] = ...,
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> ChatResult: ...

    @overload
    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: Literal[True],
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> AsyncChatStream: ...

    @overload
    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: bool,
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> ChatResult | AsyncChatStream: ...

    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        vendor: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream: bool = False,
        episode_id: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> ChatResult | AsyncChatStream:
        """Chat completion (``POST /v1/ai/chat``). A string ``messages`` is one user turn.

        With ``stream=True`` returns an :class:`AsyncChatStream` of :class:`ChatChunk` (once read to
        the end it also reads like a result: ``content``, ``usage``, ``_metadata``; see ``final()``).
        Extra keyword arguments are passed through in the request body: among them the routing
        knobs `task`, `prefer`, `max_cost_multiplier` and `cache_strategy` (used when `model` is None).
        """
        body = _body(
            messages=messages,
            model=model,
            vendor=vendor,
            temperature=temperature,
            max_tokens=max_tokens,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            episode_id=episode_id,
            **extra,
        )
        client = _with_deadline(self._client, extra.get("timeout_seconds"))
        if stream:
            body["stream"] = True
            chat_stream = await client.stream(
                "POST",
                CHAT_PATH,
                json=body,
                parse=ChatChunk.model_validate,
                idempotency_key=idempotency_key,
                stream_class=AsyncChatStream,
            )
            assert isinstance(chat_stream, AsyncChatStream)
            return chat_stream
        data = await client.request("POST", CHAT_PATH, json=body, idempotency_key=idempotency_key)
        if extra.get("batch_mode"):
            # Queued as a `runyard/chat` task: the caller polls it (`.wait()`); its output is the answer.
            from runyard.client.tasks import AsyncTask

            return AsyncTask(self._client.tasks, data)  # type: ignore[attr-defined,return-value]
        return ChatResult.model_validate(data)


class Embeddings:
    def __init__(self, inner: AsyncEmbeddings, portal: Portal) -> None:
        self._async = inner
        self._portal = portal

    def create(
        self,
        input: str | list[str],
        *,
        model: str | None = None,
        vendor: str | None = None,
        dimensions: int | None = None,
        idempotency_key: str | None = None,
    ) -> EmbedResult:
        """Embed one string or a batch; see :meth:`AsyncEmbeddings.create`."""
        return self._portal.call(
            self._async.create(
                input, model=model, vendor=vendor, dimensions=dimensions, idempotency_key=idempotency_key
            )
        )


class AI(MediaMixin):
    def __init__(self, inner: AsyncAI, portal: Portal) -> None:
        self._async = inner
        self._portal = portal
        self.embed = Embeddings(inner.embed, portal)
        self.image = Images(inner.image, portal)
        self.realtime = Realtime(inner.realtime, portal)

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: Literal[False] = ...,
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> ChatResult: ...

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: Literal[True],
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> ChatStream: ...

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = ...,
        vendor: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        tools: list[dict[str, Any]] | None = ...,
        tool_choice: str | dict[str, Any] | None = ...,
        response_format: dict[str, Any] | None = ...,
        stream: bool,
        episode_id: str | None = ...,
        idempotency_key: str | None = ...,
        **extra: Any,
    ) -> ChatResult | ChatStream: ...

    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        vendor: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream: bool = False,
        episode_id: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> ChatResult | ChatStream:
        """Chat completion; see :meth:`AsyncAI.chat`. ``stream=True`` returns a :class:`ChatStream`."""
        result = self._portal.call(
            self._async.chat(
                messages,
                model=model,
                vendor=vendor,
                temperature=temperature,
                max_tokens=max_tokens,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
                stream=stream,
                episode_id=episode_id,
                idempotency_key=idempotency_key,
                **extra,
            )
        )
        if isinstance(result, AsyncChatStream):
            return ChatStream(result, self._portal)
        if not isinstance(result, ChatResult):  # batch_mode: a task to poll
            from runyard.client.tasks import Task

            return Task(result, self._portal)  # type: ignore[return-value]
        return result
