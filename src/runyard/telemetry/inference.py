"""What the AI service reports about inferences: GenAI-convention spans (an inference span,
one client span per upstream attempt, fallbacks with their reason), the inference and
upstream metrics, WARNING lines for upstream failures, and the access log's model/tokens."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import RunyardError
from . import tracing
from .ids import current_request
from .tracing import NOOP, Span

if TYPE_CHECKING:
    from ..inference import Attempt, ChatOutcome, EmbedOutcome
    from .metrics import Metrics

log = logging.getLogger("runyard.upstream")

SKIPPED = {"over_cost_cap": "skipped_cost_cap", "circuit_open": "breaker_open"}


def outcome_of(err: RunyardError) -> str:
    """An upstream failure as an attempt outcome: timeout, rate_limited or error."""
    if err.code == "upstream_timeout" or err.status == 504:
        return "timeout"
    if err.status == 429:
        return "rate_limited"
    return "error"


class InferenceTelemetry:
    """Collaborator of :class:`~runyard.services.ai.AIService` (``metrics`` None: metrics off)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics

    # -- spans --------------------------------------------------------------------
    @staticmethod
    def inference_span(operation: str, model: str | None, *, detached: bool = False) -> Any:
        """``{operation} {model}``: the routing decision and the attempts under it."""
        attrs = {"gen_ai.operation.name": operation, "gen_ai.request.model": model or "(routed)"}
        name = f"{operation} {model or '(routed)'}"
        return tracing.start(name, attrs) if detached else tracing.span(name, attrs)

    @staticmethod
    def routed(span: Span, reason: str | None, candidates: list[str], skipped: list[Attempt]) -> None:
        if not tracing.enabled():
            return
        span.set("runyard.route.reason", reason)
        span.set("runyard.route.candidates", ",".join(candidates))
        for a in skipped:
            span.event("runyard.route.skipped", {"gen_ai.provider.name": a.provider, "reason": a.code})

    @staticmethod
    def attempt_span(operation: str, provider: str, model: str, index: int) -> Span:
        if not tracing.enabled():
            return NOOP
        return tracing.span(
            f"{operation} {provider}::{model}",
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "runyard.attempt": index,
            },
            kind="client",
        )

    # -- attempts -----------------------------------------------------------------
    def attempt_ok(self, provider: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_attempt(provider, "ok")

    def attempt_failed(
        self, span: Span, provider: str, model: str, err: RunyardError, started: float, next_route: str | None
    ) -> None:
        """A failed call: counted, marked on its span, and logged at WARNING (with the fallback)."""
        outcome = outcome_of(err)
        if self.metrics is not None:
            self.metrics.observe_attempt(provider, outcome)
        span.fail(err)
        if next_route is not None:
            span.set("runyard.fallback.to", next_route)
            span.set("runyard.fallback.reason", err.code)
        ms = (time.perf_counter() - started) * 1000
        log.warning(
            "upstream %s model=%s failed: %s (status %s) after %.0f ms; %s",
            provider, model, err.code, err.status, ms,
            f"falling back to {next_route}" if next_route else "no fallback left",
        )  # fmt: skip

    def skipped(self, attempts: list[Attempt]) -> None:
        """Routes not called: over the cost cap, or their circuit open."""
        if self.metrics is None:
            return
        for a in attempts:
            outcome = SKIPPED.get(a.code or "")
            if outcome is not None:
                self.metrics.observe_attempt(a.provider, outcome)

    def cache_lookup(self, hit: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe_cache(hit)

    # -- inferences ---------------------------------------------------------------
    def finished(
        self, span: Span, kind: str, result: ChatOutcome | EmbedOutcome, outcome: str, ttft_ms: float | None = None
    ) -> None:
        """An inference that was answered (``outcome`` ok or cached) or failed mid-stream (error)."""
        usage = result.usage
        if self.metrics is not None:
            self.metrics.observe_inference(
                kind, result.model, result.provider, outcome,
                None if outcome == "cached" else usage, result.cost,
                None if ttft_ms is None else ttft_ms / 1000,
            )  # fmt: skip
        info = current_request.get()
        if info is not None:
            info.model, info.provider = result.model, result.provider
            info.input_tokens += usage.input_tokens
            info.output_tokens += usage.output_tokens
        if tracing.enabled():
            span.set_many(
                {
                    "gen_ai.provider.name": result.provider,
                    "gen_ai.response.model": getattr(result, "provider_model", None) or result.model,
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "runyard.inference_id": result.inference_id,
                    "runyard.cache_hit": outcome == "cached",
                }
            )
            finish = getattr(result, "finish_reason", None)
            if finish:
                span.set_list("gen_ai.response.finish_reasons", [finish])

    def failed(self, span: Span, kind: str, model: str, provider: str | None, err: RunyardError) -> None:
        if self.metrics is not None:
            self.metrics.observe_inference(kind, model, provider, "error")
        span.fail(err)
