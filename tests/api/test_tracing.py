"""OpenTelemetry: a server span per request with SQL spans beneath, SMTP spans, ids in the access log.

Off by default.
"""

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from api.app import create_app
from api.tracing import tracing_configured
from authz.mail.transport import DeliveryFailed, Mail, SmtpTransport
from authz.services.runtime import Runtime
from authz.settings import Settings
from tests.app_client import AppClient
from tests.conftest import BILLING, JWT_SECRET, auth, make_settings, service_key
from tests.smtp_server import SmtpServer, free_port


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


@pytest.fixture
def traced(settings: Settings, runtime: Runtime, provider: TracerProvider) -> Iterator[TestClient]:
    with AppClient(create_app(settings, runtime, tracer_provider=provider), raise_server_exceptions=False) as client:
        yield client


def _servers(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authz.access"]


def test_every_request_is_a_server_span_with_its_sql_beneath_and_ids_in_the_access_log(
    traced: TestClient, runtime: Runtime, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="authz.access")
    created = traced.post("/v1/organizations", json={"name": "Lab", "billing_address": BILLING},
                          headers={**auth("alice"), "X-Request-ID": "req-create-1"})
    assert created.status_code == 201
    [server] = _servers(spans)
    assert server.attributes is not None and server.attributes["http.route"] == "/v1/organizations"
    assert server.attributes["authz.request_id"] == "req-create-1"
    trace_id = server.context.trace_id
    sql = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT and s.context.trace_id == trace_id]
    assert sql, "the write's SQL statements are spans of the request's trace"
    assert any("INSERT" in s.name or "INSERT" in str((s.attributes or {}).get("db.statement", "")) for s in sql)
    assert all(s.parent is not None for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT)
    [line] = [r for r in _access_lines(caplog) if getattr(r, "request_id", None) == "req-create-1"]
    assert line.trace_id == f"{trace_id:032x}"  # type: ignore[attr-defined]


def test_the_check_fast_path_and_authzen_are_traced_too(
    traced: TestClient, runtime: Runtime, spans: InMemorySpanExporter,
) -> None:
    key = service_key(runtime, "check")
    spans.clear()
    body = {"subject": "alice", "action": "read", "resource": {"type": "algorithm", "id": "x"}}
    assert traced.post("/v1/check", json=body, headers=key).status_code == 200
    evaluation = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                  "resource": {"type": "algorithm", "id": "x"}}
    assert traced.post("/access/v1/evaluation", json=evaluation, headers=key).status_code == 200
    assert len(_servers(spans)) == 2


def test_an_incoming_traceparent_continues_the_callers_trace(traced: TestClient, spans: InMemorySpanExporter) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    header = {"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}
    traced.get("/v1/me", headers={**auth("alice"), **header})
    [server] = _servers(spans)
    assert f"{server.context.trace_id:032x}" == caller_trace


def test_probes_and_background_polls_are_not_traced(
    traced: TestClient, runtime: Runtime, spans: InMemorySpanExporter,
) -> None:
    traced.get("/healthz")
    traced.get("/metrics")
    assert isinstance(traced.app, FastAPI)
    traced.app.state.follower.poll_once()  # the changelog follower's SQL, outside any request
    assert spans.get_finished_spans() == ()


def test_off_by_default_nothing_is_installed(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="authz.access")
    assert not getattr(client.app, "_is_instrumented_by_opentelemetry", False)
    client.get("/healthz", headers={"X-Request-ID": "req-off"})
    [line] = [r for r in _access_lines(caplog) if getattr(r, "request_id", None) == "req-off"]
    assert not hasattr(line, "trace_id")


def test_off_unless_configured_even_when_something_else_sets_a_global_tracer_provider(
    client: TestClient, runtime: Runtime, provider: TracerProvider, spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a library or a wrapper in the same process might (set_tracer_provider works once per
    # process, so the test swaps the global itself). FastAPI's own telemetry would trace with it.
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    assert otel_trace.get_tracer_provider() is provider
    check = client.post("/v1/check", headers=service_key(runtime, "check"),
                        json={"subject": "alice", "action": "read", "resource": {"type": "algorithm", "id": "x"}})
    assert check.status_code == 200
    assert client.get("/v1/me", headers=auth("alice")).status_code == 200
    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_the_standard_variables_turn_it_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from_environment = Settings(_env_file=None, env="test", database_url="sqlite://", jwt_secret=JWT_SECRET)
    assert tracing_configured(from_environment) is expected


MAIL = Mail(recipient="bob@example.com", subject="Hi", text="Hello\n", masked_text="Hello\n")


def test_smtp_sends_are_client_spans(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    server = SmtpServer().start()
    try:
        settings = make_settings("sqlite://", smtp_host="127.0.0.1", smtp_port=server.port)
        SmtpTransport(settings, tracer_provider=provider).send(MAIL)
    finally:
        server.stop()
    closed = make_settings("sqlite://", smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2)
    with pytest.raises(DeliveryFailed):
        SmtpTransport(closed, tracer_provider=provider).send(MAIL)
    sent, failed = spans.get_finished_spans()
    assert sent.name == failed.name == "smtp send"
    assert sent.kind == SpanKind.CLIENT and sent.attributes["server.port"] == server.port  # type: ignore[index]
    assert sent.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
