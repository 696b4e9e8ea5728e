"""Observability: Prometheus metrics, OpenTelemetry traces, request ids and operator logs.

:class:`Telemetry` (telemetry/service.py) holds what one gateway process reports; nothing
here imports opentelemetry unless tracing is configured (``[telemetry] otlp_endpoint``).
"""
