"""What tracing costs a `/v1/check`, in process: off (the default), and on with spans recorded.

Drives the ASGI app directly (no sockets) with the same request N times per round,
alternating the two apps round by round so machine noise hits both alike, and reports the
median per-request time of each. Off, the request path differs from an app without any
tracing code by one attribute test in `RequestMiddleware`; on, every request gets a server
span (here recorded by a processor that drops it: the cost of tracing, not of exporting).
`python -m bench.tracing_cost`.
"""

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.services.service_keys import create_service_key
from bench.app_cost import call, check_scope
from bench.change_feed import _settings

BODY = b'{"subject": "alice", "action": "read", "resource": {"type": "algorithm", "id": "grover"}}'


class _Drop(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _round(app: Any, scope: dict[str, Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call(app, scope, BODY)
    return (time.perf_counter() - started) / n * 1e6


async def main_async(rounds: int = 15, n: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        settings = _settings(f"sqlite:///{Path(workdir) / 'authz.db'}")
        runtime = open_runtime(settings)
        key = create_service_key(runtime, cli_principal(), "bench", ["check"]).value
        scope = check_scope(f"Bearer {key}", BODY)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_Drop()))
        apps = {"off": create_app(settings, runtime), "on": create_app(settings, runtime, tracer_provider=provider)}
        contexts = {name: app.router.lifespan_context(app) for name, app in apps.items()}
        for context in contexts.values():
            await context.__aenter__()
        try:
            for app in apps.values():
                assert (await call(app, scope, BODY))[0] == 200
                await _round(app, scope, 200)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in apps}
            for _ in range(rounds):
                for name, app in apps.items():
                    times[name].append(await _round(app, scope, n))
        finally:
            for context in contexts.values():
                await context.__aexit__(None, None, None)
            runtime.database.dispose()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"/v1/check in process: tracing off {off:.1f} µs, on {on:.1f} µs per request "
          f"(median of {rounds} rounds of {n}); on/off = {on / off:.2f}")


if __name__ == "__main__":
    asyncio.run(main_async())
