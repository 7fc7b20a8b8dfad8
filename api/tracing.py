"""OpenTelemetry traces: one server span per request, with SQL and SMTP spans beneath.

Off unless configured with the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`,
`console`; `none` turns it off) or `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`;
`OTEL_SDK_DISABLED=true` wins. Everything else (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, the OTLP headers, protocol, timeout, `OTEL_TRACES_SAMPLER`) is
read by the SDK itself. When off, nothing is installed and the SDK is not imported: no
middleware, no SQL hooks, so the check path is the same code as without tracing.

FastAPI's own ("native") telemetry is off in authz's apps (`FASTAPI_TELEMETRY`): the traces
are the ones configured here, one way. Left on, it asks OpenTelemetry for the global tracer,
meter and logger providers on every request (reading the environment each time while none
is set), about 3 µs of a plain /v1/check's 35 (`bench.app_cost`), only to find them unset; and
a global provider set by anything else in the process would start a second kind of trace.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace as _trace  # the API package only (FastAPI depends on it)
from sqlalchemy.engine import Engine

from authz.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("authz.tracing")
# Paths not worth a trace: probes and scrapes arrive every few seconds from the platform.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def tracing_configured(settings: Settings) -> bool:
    if settings.otel_sdk_disabled:
        return False
    exporter = (settings.otel_traces_exporter or "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or bool(settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint)


def provider_from_settings(settings: Settings) -> "TracerProvider":
    """An SDK tracer provider exporting in batches to the configured exporter(s)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "authz"}))  # OTEL_SERVICE_NAME overrides
    names = [n.strip().lower() for n in (settings.otel_traces_exporter or "otlp").split(",") if n.strip()]
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r} (use otlp, console or none)")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_app(app: FastAPI, provider: "TracerProvider") -> None:
    """A server span for every request (outermost, so the access log sees its trace id)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS,
                                       exclude_spans=["receive", "send"])


def instrument_engine(engine: Engine, provider: "TracerProvider") -> None:
    """A client span for every SQL statement on `engine` (and only on it).

    `SQLAlchemyInstrumentor().instrument()` also patches `create_engine` for the whole
    process and imports SQLAlchemy's asyncio support (greenlet), and declares SQLAlchemy
    < 2.1; the package's own engine tracer hooks just this engine's events, which work on
    2.1 (tests/api/test_tracing.py checks the spans).
    """
    from opentelemetry.instrumentation.sqlalchemy import __name__ as scope
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter(scope).create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(_ChildSpansOnly(provider.get_tracer(scope)), engine, usage, enable_commenter=False)


class _ChildSpansOnly:
    """SQL spans only inside a request's trace: the changelog follower polls every second, and a
    root trace per poll would bury the requests' traces at the collector.

    Shaped like a Tracer for the engine tracer, which calls only these two methods; not a
    subclass, since Tracer's abstract methods promise its own context-manager type.
    """

    def __init__(self, tracer: _trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> _trace.Span:
        if not _trace.get_current_span(context).get_span_context().is_valid:
            return _trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(self, name: str, context: Any = None, *args: Any,
                              **kwargs: Any) -> Iterator[_trace.Span]:
        span = self.start_span(name, context, *args, **kwargs)
        with _trace.use_span(span, end_on_exit=True) as current:
            yield current
