"""The AI runtime: pick routes (explicit model or task/prefer routing), call providers with
fallback under a cost cap and circuit breakers, cache, price and record every inference
(the rows are built in services/recording.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..backends.recorder import InferenceRecorder
from ..backends.store import new_id
from ..config import MODEL_SEPARATOR, PriceConfig, RunyardConfig
from ..errors import InvalidRequestError, NotFoundError, RunyardError, ServiceUnavailableError
from ..inference import Attempt, ChatDelta, ChatOutcome, ChatRequest, EmbedOutcome, TokenUsage
from ..providers import Provider, build_provider
from ..telemetry import tracing
from ..telemetry.inference import InferenceTelemetry
from ..telemetry.tracing import NOOP, Span
from .breaker import CircuitBreakers
from .cache import AsyncResponseCache, MemoryCache, ResponseCache, cache_key
from .catalog import Catalog, Choice, required_capabilities
from .fallback import first_delta, first_success, with_attempts
from .recording import InferenceFiler
from .streams import ChatStream

MAX_ROUTED_MODELS = 4  # candidates kept from task/prefer routing (primary + fallbacks)
LOCAL_PROVIDER = "local"  # the embedded default's on-device models (providers/local.py)


@dataclass(frozen=True, slots=True)
class Route:
    provider: Provider
    model: str  # the provider's model name
    name: str = ""  # the model name the caller sees (a catalog name, or provider::model)
    price: PriceConfig | None = None
    key: str = field(init=False, compare=False)  # provider::model, the circuit breaker's key

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider.name}{MODEL_SEPARATOR}{self.model}")


@dataclass(slots=True)
class CallContext:
    """Who is calling and how to file the inference."""

    episode_id: str | None = None
    api_key_id: str | None = None
    tags: dict[str, str] | None = None
    dryrun: bool = False  # TensorZero's ``dryrun``: answer (and charge the key) but store nothing
    admission: DeferredAdmission | None = None  # the caller's, left to the cache lookup (services/limits.py)


class DeferredAdmission(Protocol):
    """A request's admission under its limits, still to be taken (:class:`runyard.services.limits.
    PendingAdmission`): before any upstream call, with the shared cache's lookup when there is one."""

    taken: bool

    async def take(self, reads: list[str] | None = None) -> list[bytes | None]: ...


@dataclass(slots=True)
class ChatOptions:
    """Routing and caching choices that are not model parameters (never sent upstream)."""

    task: str = "general"
    prefer: str = "balanced"
    vendor: str | None = None
    max_cost_multiplier: float | None = None
    cache_strategy: str | None = None  # None: the config's default
    batch: bool = False  # ``batch_mode``: through the provider's batch API where it has one
    batch_progress: Callable[[float, str], None] | None = None  # told while a batch waits upstream


@dataclass(slots=True)
class _Plan:
    routes: list[Route]
    reason: str | None = None
    skipped: list[Attempt] = field(default_factory=list)


def _cap(routes: list[Route], reason: str | None, multiplier: float) -> _Plan:
    """The primary route and the fallbacks whose price is within ``multiplier`` of it."""
    primary = routes[0].price
    plan = _Plan([routes[0]], reason)
    for route in routes[1:]:
        if primary is not None and route.price is not None and route.price.blended > multiplier * primary.blended:
            reason_text = f"over the cost cap ({multiplier:g}x the primary)"
            plan.skipped.append(Attempt(route.provider.name, route.model, reason_text, "over_cost_cap"))
            continue
        plan.routes.append(route)
    return plan


UsageObserver = Callable[[CallContext, "ChatOutcome | EmbedOutcome"], None]


class AIService:
    def __init__(
        self,
        config: RunyardConfig,
        recorder: InferenceRecorder | None,
        *,
        usage_observers: list[UsageObserver] | None = None,
        telemetry: InferenceTelemetry | None = None,
        shared_cache: AsyncResponseCache | None = None,
    ) -> None:
        """``shared_cache``: the replicas' response cache (Redis); None keeps an in-process LRU."""
        self.config = config
        self.recorder = recorder
        self.filer = InferenceFiler(recorder)  # the inferences' rows (services/recording.py)
        self.telemetry = telemetry or InferenceTelemetry()  # metrics, spans, upstream warnings
        self.providers: dict[str, Provider] = {name: build_provider(name, pc) for name, pc in config.providers.items()}
        self.catalog = Catalog(config)
        self.breakers = CircuitBreakers(config.routing.breaker_failures, config.routing.breaker_cooldown_s)
        self.cache: ResponseCache = MemoryCache(config.cache.ttl_s, config.cache.max_entries, config.cache.max_bytes)
        self.shared_cache = shared_cache
        self.sync_recording = config.storage.recording == "sync"
        # Called after every successful inference (cheap and synchronous: limits, metrics).
        self.usage_observers: list[UsageObserver] = list(usage_observers or ())
        self._resolved: dict[tuple[str, bool], list[Route]] = {}
        self._plans: dict[tuple[object, float], tuple[Choice | None, _Plan]] = {}

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    # -- routing ------------------------------------------------------------
    def resolve(self, model: str | None, *, embedding: bool = False) -> list[Route]:
        """A model name (configured, or ``provider::model``) as its ordered routes (a fresh list;
        the routes of a name never change, so they are built once)."""
        if not model:
            raise InvalidRequestError("'model' is required", code="missing_model")
        known = self._resolved.get((model, embedding))
        if known is None:
            known = self._resolve(model, embedding)
            if len(self._resolved) < 4096:
                self._resolved[(model, embedding)] = known
        return list(known)

    def _resolve(self, model: str, embedding: bool) -> list[Route]:
        table = self.config.embedding_models if embedding else self.config.models
        configured = table.get(model) or (self.config.models.get(model) if embedding else None)
        if configured is not None:
            return [
                Route(
                    self.providers[r.provider],
                    r.model,
                    model,
                    configured.price or self.catalog.route_price(r.provider, r.model),
                )
                for r in configured.routes
            ]
        provider_name, sep, provider_model = model.partition(MODEL_SEPARATOR)
        if sep and provider_model:
            provider = self.providers.get(provider_name)
            if provider is None:
                raise NotFoundError(f"unknown provider {provider_name!r} in model {model!r}", code="provider_not_found")
            return [Route(provider, provider_model, model, self.catalog.route_price(provider_name, provider_model))]
        raise NotFoundError(
            f"unknown model {model!r}: declare it under [models] or use 'provider::model'", code="model_not_found"
        )

    def _plan(self, request: ChatRequest, options: ChatOptions) -> _Plan:
        """Routes to try in order: the model's own, or the catalog's ranking; capped by cost.

        Plans are remembered per (model or catalog choice, cost multiplier): the catalog hands
        out the same Choice object while its ranking stands, so a routed request costs lookups."""
        multiplier = options.max_cost_multiplier or self.config.routing.max_cost_multiplier
        source: Choice | None = None
        if request.model:
            key: tuple[object, float] = (request.model, multiplier)
        else:
            try:
                source = self.catalog.route(request, task=options.task, prefer=options.prefer, vendor=options.vendor)
            except InvalidRequestError as err:
                local = self._local_fallback(request, options, err)
                if local is None:
                    raise
                return _Plan([local], "no catalog model has its provider key configured: the embedded local model")
            key = (id(source), multiplier)
        known = self._plans.get(key)
        if known is None or known[0] is not source:
            if source is None:
                routes, reason = self.resolve(request.model), None
            else:
                routes = [r for name in source.models[:MAX_ROUTED_MODELS] for r in self.resolve(name)]
                reason = source.reason
            known = (source, _cap(routes, reason, multiplier))
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[key] = known
        return known[1]  # shared: callers copy what they change (attempts, the usable routes)

    def _local_fallback(self, request: ChatRequest, options: ChatOptions, err: InvalidRequestError) -> Route | None:
        """With no key configured (a fresh machine), unrouted chat goes to ``local::chat`` if installed."""
        local = self.providers.get(LOCAL_PROVIDER)
        if err.code != "no_model_available" or local is None or options.vendor not in (None, LOCAL_PROVIDER):
            return None
        if not all(local.supports(c) for c in required_capabilities(request)):
            return None
        return Route(local, "chat", f"{LOCAL_PROVIDER}{MODEL_SEPARATOR}chat")

    def _open_routes(self, plan: _Plan, attempts: list[Attempt]) -> list[Route]:
        """Routes whose circuit lets a request through; all open → 503 without calling anyone."""
        usable = []
        for route in plan.routes:
            if self.breakers.allows(route.key):
                usable.append(route)
            else:
                attempts.append(Attempt(route.provider.name, route.model, "circuit open", "circuit_open"))
        if attempts:
            self.telemetry.skipped(attempts)  # over the cost cap (the plan's), circuit open (these)
        if not usable:
            raise with_attempts(
                ServiceUnavailableError(
                    "every route for this model is failing and paused (circuit open); see /v1/status",
                    code="circuit_open",
                ),
                attempts,
            )
        return usable

    def list_models(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind, table in (("chat", self.config.models), ("embedding", self.config.embedding_models)):
            for name, model in table.items():
                if not self.catalog.available(model):
                    continue
                shown = "image" if kind == "chat" and "chat" not in model.capabilities else kind
                out.append({"id": name, "kind": shown, "routes": [f"{r.provider}::{r.model}" for r in model.routes]})
        for pname, provider in self.providers.items():
            for m in provider.list_models():
                out.append({"id": f"{pname}::{m}", "kind": "provider", "routes": [f"{pname}::{m}"]})
        return out

    def status(self) -> dict[str, Any]:
        cache = self.cache
        return {
            "circuits": self.breakers.status(),
            "cache": {"hits": getattr(cache, "hits", None), "misses": getattr(cache, "misses", None)},
        }

    # -- chat ---------------------------------------------------------------
    async def chat(
        self, request: ChatRequest, ctx: CallContext | None = None, options: ChatOptions | None = None
    ) -> ChatOutcome:
        if not tracing.enabled():
            return await self._chat(request, ctx, options, NOOP)
        with self.telemetry.inference_span("chat", request.model) as span:
            return await self._chat(request, ctx, options, span)

    async def _chat(
        self, request: ChatRequest, ctx: CallContext | None, options: ChatOptions | None, span: Span
    ) -> ChatOutcome:
        ctx = ctx or CallContext()
        options = options or ChatOptions()
        started = time.perf_counter()
        plan = self._plan(request, options)
        attempts = list(plan.skipped)
        key = None
        if (options.cache_strategy or self.config.cache.strategy) == "runyard":
            key = cache_key(plan.routes[0].name, request)
            shared = self.shared_cache
            hit = self.cache.get(key) if shared is None else await shared.get(key, admission=ctx.admission)
            self.telemetry.cache_lookup(hit is not None)
            if hit is not None:
                hit.cache_hit, hit.cost, hit.attempts, hit.route_reason = True, 0.0, [], plan.reason
                hit.batch_id = None
                hit.latency_ms = (time.perf_counter() - started) * 1000
                self._stamp(hit, ctx)
                self._finish_chat(request, hit, ctx, ttft_ms=None, status="ok", error=None, span=span)
                return hit
        if ctx.admission is not None and not ctx.admission.taken:
            await ctx.admission.take()
        routes = self._open_routes(plan, attempts)
        if tracing.enabled():
            self.telemetry.routed(span, plan.reason, [r.key for r in routes], attempts)
        batch = options.batch
        result, route = await first_success(
            routes,
            lambda r: (
                r.provider.batch_chat(request, r.model, options.batch_progress)
                if batch
                else r.provider.chat(request, r.model)
            ),
            attempts,
            self.breakers,
            on_error=lambda r, err: self._record_failure(request, r.name, ctx, attempts, err, started, span),
            telemetry=self.telemetry,
        )
        result.model = route.name
        result.attempts = attempts
        result.route_reason = plan.reason
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.cost = _cost(route.price, result.usage, batch=result.batch_id is not None)
        self._stamp(result, ctx)
        filed = ctx
        if result.batch_id is not None:  # filed with the upstream batch's id among its tags
            filed = replace(ctx, tags={**(ctx.tags or {}), "batch_id": result.batch_id})
        if key is not None:
            if self.shared_cache is None:
                self.cache.put(key, result)
            else:
                await self.shared_cache.put(key, result)
        self._finish_chat(request, result, filed, ttft_ms=None, status="ok", error=None, span=span)
        if self.sync_recording and self.recorder is not None:
            await self.recorder.persist(result.inference_id)  # the row is in before the answer leaves
        return result

    async def open_stream(
        self, request: ChatRequest, ctx: CallContext | None = None, options: ChatOptions | None = None
    ) -> ChatStream:
        """Start a streamed chat: routes are tried until one yields its first delta.

        Failures before the first delta fall back silently (or raise, so the caller can
        answer with a proper HTTP error); failures after it end the stream with the error.
        """
        ctx = ctx or CallContext()
        options = options or ChatOptions()
        started = time.perf_counter()
        if ctx.admission is not None and not ctx.admission.taken:
            await ctx.admission.take()
        span = self.telemetry.inference_span("chat", request.model, detached=True)  # ended by ChatStream
        try:
            with span.current():
                plan = self._plan(request, options)
                attempts = list(plan.skipped)
                routes = self._open_routes(plan, attempts)
                if tracing.enabled():
                    self.telemetry.routed(span, plan.reason, [r.key for r in routes], attempts)
                (first, upstream), route = await first_success(
                    routes,
                    lambda r: first_delta(r.provider.stream_chat(request, r.model), ChatDelta(finish_reason="stop")),
                    attempts,
                    self.breakers,
                    count_success=False,  # ChatStream reports the outcome once the stream has ended
                    on_error=lambda r, err: self._record_failure(request, r.name, ctx, attempts, err, started, span),
                    telemetry=self.telemetry,
                )
        except BaseException:
            span.end()
            raise
        result = ChatOutcome(
            content=None,
            model=route.name,
            provider=route.provider.name,
            provider_model=route.model,
            attempts=attempts,
            route_reason=plan.reason,
        )
        self._stamp(result, ctx)
        stream = ChatStream(self, request, ctx, result, route, first, upstream, started)
        stream.span = span
        return stream

    # -- embeddings ---------------------------------------------------------
    def embedding_routes(self, model: str | None, vendor: str | None = None) -> list[Route]:
        """A named embedding model's routes; with none named, the cheapest available embedding
        model (of ``vendor``, if given), else the embedded local one."""
        if model:
            return self.resolve(model, embedding=True)
        names = self.catalog.embedding_models(vendor)
        if names:
            return self.resolve(names[0], embedding=True)
        local = self.providers.get(LOCAL_PROVIDER)
        if local is not None and vendor in (None, LOCAL_PROVIDER) and local.supports("embed"):
            return [Route(local, "embed", f"{LOCAL_PROVIDER}{MODEL_SEPARATOR}embed")]
        raise InvalidRequestError(
            "no embedding model is available"
            + (f" from vendor {vendor!r}" if vendor else "")
            + ": name one (model=...) or configure a provider key",
            code="no_model_available",
        )

    async def embed(
        self,
        texts: list[str],
        model: str | None,
        *,
        dimensions: int | None = None,
        ctx: CallContext | None = None,
        vendor: str | None = None,
    ) -> EmbedOutcome:
        ctx = ctx or CallContext()
        routes = self.embedding_routes(model, vendor)
        started = time.perf_counter()
        attempts: list[Attempt] = []

        async def call(route: Route) -> EmbedOutcome:
            result = await route.provider.embed(texts, route.model, dimensions)
            if len(result.embeddings) != len(texts):
                raise RunyardError(
                    f"{route.provider.name}: returned {len(result.embeddings)} embeddings for {len(texts)} inputs",
                    code="upstream_invalid_response",
                    status=502,
                )
            return result

        with self.telemetry.inference_span("embeddings", model) if tracing.enabled() else NOOP as span:
            try:
                result, route = await first_success(
                    routes, call, attempts, telemetry=self.telemetry, operation="embeddings"
                )
            except RunyardError as err:
                last = attempts[-1].provider if attempts else None
                self.telemetry.failed(span, "embed", routes[0].name, last, err)
                raise
            result.model = route.name
            result.attempts = attempts
            result.latency_ms = (time.perf_counter() - started) * 1000
            result.inference_id = new_id()
            result.cost = _cost(route.price, result.usage)
            self.telemetry.finished(span, "embed", result, "ok")
            self.filer.embed(texts, result, ctx)
        for observe in self.usage_observers:
            observe(ctx, result)
        return result

    # -- recording ----------------------------------------------------------
    @staticmethod
    def _stamp(result: ChatOutcome, ctx: CallContext) -> None:
        result.inference_id = new_id()
        result.episode_id = ctx.episode_id or new_id()

    def _finish_chat(
        self,
        request: ChatRequest,
        result: ChatOutcome,
        ctx: CallContext,
        *,
        ttft_ms: float | None,
        status: str,
        error: str | None,
        span: Span = NOOP,
    ) -> None:
        self.telemetry.finished(span, "chat", result, "cached" if result.cache_hit else status, ttft_ms)
        if tracing.enabled():
            with tracing.span("runyard.record", {"runyard.inference_id": result.inference_id}):
                self.filer.chat(request, result, ctx, ttft_ms=ttft_ms, status=status, error=error)
        else:
            self.filer.chat(request, result, ctx, ttft_ms=ttft_ms, status=status, error=error)
        if status == "ok":
            for observe in self.usage_observers:
                observe(ctx, result)

    def _record_failure(
        self,
        request: ChatRequest,
        model: str,
        ctx: CallContext,
        attempts: list[Attempt],
        err: RunyardError,
        started: float,
        span: Span = NOOP,
    ) -> None:
        self.telemetry.failed(span, "chat", model, attempts[-1].provider if attempts else None, err)
        self.filer.failure(request, model, ctx, attempts, err, (time.perf_counter() - started) * 1000)


class BoundAI:
    """The AI service on behalf of one caller: tasks run with the context of the key that
    submitted them, so their inferences are charged, limited and filed under it."""

    def __init__(self, service: AIService, ctx: CallContext) -> None:
        self.service = service
        self.ctx = ctx

    async def chat(
        self, request: ChatRequest, ctx: CallContext | None = None, options: ChatOptions | None = None
    ) -> ChatOutcome:
        return await self.service.chat(request, ctx or self.ctx, options)

    async def open_stream(
        self, request: ChatRequest, ctx: CallContext | None = None, options: ChatOptions | None = None
    ) -> ChatStream:
        return await self.service.open_stream(request, ctx or self.ctx, options)

    async def embed(
        self, texts: list[str], model: str | None, *, dimensions: int | None = None, ctx: CallContext | None = None
    ) -> EmbedOutcome:
        return await self.service.embed(texts, model, dimensions=dimensions, ctx=ctx or self.ctx)


def _cost(price: PriceConfig | None, usage: TokenUsage, *, batch: bool = False) -> float | None:
    """USD at the route's price (its batch price for a batch API answer, where the catalog has one)."""
    if batch and price is not None and price.batch is not None:
        price = price.batch
    return None if price is None else price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
