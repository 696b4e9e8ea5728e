#!/usr/bin/env python3
"""What one OpenTelemetry span costs in this process, apart from the gateway: creating and ending
it (opentelemetry-sdk) and encoding it for OTLP (opentelemetry-exporter-otlp-proto-common, the
encoder the OTLP/HTTP exporter runs on its batch thread). Spans shaped like a chat request's three
(server span, GenAI chat span, one attempt), with their attributes.

    .venv/bin/python bench/otel_span_cost.py [--requests 3000]

Read against the gateway's CPU per request (bench/overhead.py): the tracing target in
bench/README.md ("Observability") depends on what these cost.
"""

from __future__ import annotations

import argparse
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    n = ap.parse_args().requests
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "runyard"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("runyard")
    start = time.perf_counter()
    for _ in range(n):
        with tracer.start_as_current_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER) as server:
            server.set_attributes({"http.request.method": "POST", "url.path": "/v1/chat/completions"})
            with tracer.start_as_current_span("chat mock-gpt", kind=trace.SpanKind.CLIENT) as chat:
                chat.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "mock-gpt",
                        "gen_ai.response.model": "mock-gpt",
                        "gen_ai.usage.input_tokens": 10,
                        "gen_ai.usage.output_tokens": 5,
                        "gen_ai.response.finish_reasons": ("stop",),
                    }
                )
                with tracer.start_as_current_span("attempt openai") as attempt:
                    attempt.set_attributes({"gen_ai.provider.name": "openai", "runyard.attempt.outcome": "ok"})
            server.set_attribute("http.response.status_code", 200)
    created = (time.perf_counter() - start) / (3 * n) * 1e6
    start = time.perf_counter()
    for at in range(0, len(keep.spans), 512):  # the batch processor's default batch
        encode_spans(keep.spans[at : at + 512]).SerializeToString()
    encoded = (time.perf_counter() - start) / len(keep.spans) * 1e6
    print(f"per span: create + end {created:.1f} us, OTLP encode {encoded:.1f} us; per request of 3 spans "
          f"{3 * (created + encoded):.0f} us")  # fmt: skip


if __name__ == "__main__":
    main()
