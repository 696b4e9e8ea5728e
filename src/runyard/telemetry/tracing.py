"""OpenTelemetry traces (``opentelemetry-sdk``, OTLP/HTTP), off by default and then free:
nothing here imports opentelemetry until :func:`install` is called.

The API the rest of the code uses, the same whether tracing is on or off:

* ``with span("chat gpt-4o", {"gen_ai.operation.name": "chat"}) as s:`` a child of the
  current span; ``s.set(key, value)``, ``s.fail(err)`` (status ERROR, ``error.type``).
* ``inject(carrier)`` writes the current ``traceparent`` (W3C) into a dict (task metadata,
  outgoing headers); ``attached(carrier)`` runs a block under the context such a dict carries
  (a worker process continuing a task's trace); ``traceparent()`` for one header.
* ``current_trace_id()``: the 32-hex-digit trace id, for the inference row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

AttrValue = str | bool | int | float
Attributes = Mapping[str, AttrValue | None]

TRACES_PATH = "/v1/traces"


class Span:
    """A span that records nothing (tracing off, or a sampled-out trace)."""

    __slots__ = ()

    def set(self, key: str, value: AttrValue | None) -> None:
        pass

    def set_many(self, attrs: Attributes) -> None:
        pass

    def set_list(self, key: str, values: list[str]) -> None:
        pass

    def event(self, name: str, attrs: Attributes | None = None) -> None:
        pass

    def fail(self, err: BaseException, error_type: str | None = None) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def __enter__(self) -> Span:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NOOP = Span()


class _OtelSpan(Span):
    __slots__ = ("_cm", "_span")

    def __init__(self, cm: Any) -> None:
        self._cm = cm
        self._span: Any = None

    def __enter__(self) -> _OtelSpan:
        self._span = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    def set(self, key: str, value: AttrValue | None) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def set_many(self, attrs: Attributes) -> None:
        for key, value in attrs.items():
            if value is not None:
                self._span.set_attribute(key, value)

    def set_list(self, key: str, values: list[str]) -> None:
        self._span.set_attribute(key, values)

    def event(self, name: str, attrs: Attributes | None = None) -> None:
        self._span.add_event(name, {k: v for k, v in (attrs or {}).items() if v is not None})

    def fail(self, err: BaseException, error_type: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("error.type", error_type or getattr(err, "code", None) or type(err).__name__)
        message = str(getattr(err, "message", "")) or type(err).__name__  # upstream text: may quote a key
        redact = _active.redact if _active is not None else None
        self._span.set_status(Status(StatusCode.ERROR, redact(message) if redact is not None else message))

    def rename(self, name: str) -> None:
        self._span.update_name(name)


class Tracing:
    """A tracer provider exporting to ``endpoint`` (OTLP/HTTP protobuf), sampled parent-based
    at ``sample_ratio``; ``exporter`` replaces the OTLP one (tests); ``redact`` cleans error
    descriptions (upstream error text can quote a key) before they are exported."""

    def __init__(
        self,
        endpoint: str,
        service_name: str,
        sample_ratio: float,
        exporter: Any = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        from opentelemetry.propagators.textmap import DefaultGetter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint.rstrip("/")
            exporter = OTLPSpanExporter(endpoint=url if url.endswith(TRACES_PATH) else url + TRACES_PATH)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        self.tracer = self.provider.get_tracer("runyard")
        self.propagator = TraceContextTextMapPropagator()
        self.getter = DefaultGetter()
        self.redact = redact
        self.kinds = {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT}

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes what is queued


_active: Tracing | None = None


def install(tracing: Tracing | None) -> None:
    """Make ``tracing`` the process's tracer (None: off)."""
    global _active
    _active = tracing


def enabled() -> bool:
    return _active is not None


def span(
    name: str,
    attrs: Attributes | None = None,
    *,
    kind: str = "internal",
    parent: Any = None,
    start_ns: int | None = None,
) -> Span:
    """A child of the current span (or of ``parent``, a context from :func:`extract`);
    ``start_ns``: when it began, if before now (``time.time_ns()`` clock; a queue wait)."""
    t = _active
    if t is None:
        return NOOP
    clean = {k: v for k, v in attrs.items() if v is not None} if attrs else None
    return _OtelSpan(
        t.tracer.start_as_current_span(
            name,
            context=parent,
            kind=t.kinds[kind],
            attributes=clean,
            start_time=start_ns,
            record_exception=False,
            set_status_on_exception=False,
        )
    )


def start(name: str, attrs: Attributes | None = None, *, kind: str = "internal") -> Detached:
    """A child of the current span that is not made current and outlives this block (a stream,
    ended by whoever iterates it): ``with d.current():`` makes it the parent, ``d.end()`` ends it."""
    t = _active
    if t is None:
        return NOOP_DETACHED
    clean = {k: v for k, v in attrs.items() if v is not None} if attrs else None
    return _OtelDetached(t.tracer.start_span(name, kind=t.kinds[kind], attributes=clean, record_exception=False))


class Detached(Span):
    """A started span that is not current (tracing off: records nothing)."""

    __slots__ = ()

    def current(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def end(self) -> None:
        pass


NOOP_DETACHED = Detached()


class _OtelDetached(Detached):
    __slots__ = ("_span",)

    def __init__(self, otel_span: Any) -> None:
        self._span = otel_span

    set = _OtelSpan.set
    set_many = _OtelSpan.set_many
    set_list = _OtelSpan.set_list
    event = _OtelSpan.event
    fail = _OtelSpan.fail
    rename = _OtelSpan.rename

    def current(self) -> contextlib.AbstractContextManager[Any]:
        from opentelemetry import trace

        return trace.use_span(self._span, end_on_exit=False)

    def end(self) -> None:
        self._span.end()


def extract(carrier: Mapping[str, str]) -> Any:
    """The context a carrier (``{"traceparent": ...}``) holds; None when tracing is off."""
    t = _active
    if t is None:
        return None
    return t.propagator.extract(carrier)


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``carrier``; returns it."""
    t = _active
    if t is not None:
        t.propagator.inject(carrier)
    return carrier


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, for an outgoing request; None when off or none."""
    if _active is None:
        return None
    return inject({}).get("traceparent")


@contextlib.contextmanager
def attached(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Run the block under the trace context ``carrier`` holds (no-op when off or empty)."""
    if _active is None or not carrier:
        yield
        return
    from opentelemetry import context

    token = context.attach(_active.propagator.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits) when a sampled span is current; None otherwise."""
    if _active is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
