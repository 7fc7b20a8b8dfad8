"""CPU time of a plain `POST /v1/check` through the whole ASGI app, in process, against the no-op app.

The HTTP figure (`bench.http`) is a throughput ratio through uvicorn and wrk on a shared
2-core machine, and it moves between runs by more than a change of a few µs in authz's
own code. This figure isolates that code. The authz app (every middleware, logging set up
as `authz serve` sets it up, the access line written to a file) and the HTTP figure's
baseline, the no-op FastAPI app of `bench.noop_app`, are called directly, with no socket,
on one event loop, with the HTTP figure's 1000 questions on its data. Two callers: the
bench's service key (as in the HTTP figure), and each question's user with an HS256 token
asking about itself. Time is CPU time of this thread (`time.thread_time_ns`), so the
replica's follower thread and the machine's other processes add nothing but cache misses.
Rounds of N requests alternate between the apps and callers; the figure is each one's
best round (noise only ever adds time), the median round beside it.

`python -m bench.app_cost` builds the quick data set and prints the figures
(`--profile service|user` prints a cProfile of that caller instead); `bench.run` runs it
with the http figures, on the run's data.
"""

import argparse
import asyncio
import cProfile
import logging
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import orjson

from api.app import create_app
from authz.bootstrap import open_runtime
from authz.domain.principal import cli_principal
from authz.logging_setup import configure_logging
from authz.services.runtime import Runtime
from authz.services.service_keys import create_service_key
from bench.bulk_load import bench_settings, bulk_load
from bench.dataset import QUICK, Dataset
from bench.noop_app import create_noop_app
from bench.report import Figure, Report
from bench.requests_mix import Question, questions
from bench.server import JWT_SECRET

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
QUESTIONS = 1000


class Caller:
    """One kind of caller: a request per question, sent in turn, as uvicorn hands them over."""

    def __init__(self, name: str, requests: list[tuple[str, bytes]]) -> None:
        self.name = name
        self.requests = [(check_scope(authorization, body), body) for authorization, body in requests]

    async def round(self, app: App, n: int) -> float:
        """CPU µs per request over n requests (the questions in turn), in this thread."""
        requests = self.requests
        count = len(requests)
        started = time.thread_time_ns()
        for i in range(n):
            await call(app, *requests[i % count])
        return (time.thread_time_ns() - started) / n / 1000


def check_scope(authorization: str, body: bytes) -> dict[str, Any]:
    """The ASGI scope uvicorn makes of a `POST /v1/check` with this credential and body."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"authorization", authorization.encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/check", "raw_path": b"/v1/check",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def call(app: App, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request: a fresh copy of the scope, the body in one message; (status, response body)."""
    status, chunks, sent = 0, [], False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # nothing reads past the body on this path
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(dict(scope), receive, send)
    return status, b"".join(chunks)


def _callers(runtime: Runtime, asked: list[Question]) -> list[Caller]:
    key = create_service_key(runtime, cli_principal(), "bench-app-cost", ["check"]).value
    tokens: dict[str, str] = {}
    expires = int(time.time()) + 3600
    for q in asked:
        if q.user not in tokens:
            claims = {"sub": q.user, "email": f"{q.user}@example.com", "email_verified": True, "exp": expires}
            tokens[q.user] = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    service = [("Bearer " + key, orjson.dumps(q.body())) for q in asked]
    user = [("Bearer " + tokens[q.user],
             orjson.dumps({"action": q.action, "resource": {"type": q.resource_type, "id": q.resource_id}}))
            for q in asked]
    return [Caller("service key", service), Caller("user token", user)]


async def measure(database_url: str, dataset: Dataset, workdir: Path, *, rounds: int, requests: int,
                  profile: str | None = None) -> dict[str, Any]:
    """{name: {"best", "median"}} µs per request for the no-op app and each caller, on loaded data."""
    settings = bench_settings(database_url, jwt_secret=JWT_SECRET, mail_sender=False, log_level="INFO")
    runtime = open_runtime(settings)
    callers = _callers(runtime, questions(dataset, QUESTIONS, seed=21))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO")  # as `authz serve` does: the access line takes its direct path
    access = (workdir / "app-cost-access.log").open("w", encoding="utf-8")
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(access)
    authz: Any = create_app(settings, runtime)
    noop: Any = create_noop_app()
    try:
        async with authz.router.lifespan_context(authz):
            for caller in callers:  # every question answered, and by the fast path
                for scope, body in caller.requests:
                    status, answer = await call(authz, scope, body)
                    if status != 200 or set(orjson.loads(answer)) != {"allowed", "revision"}:
                        raise RuntimeError(f"{caller.name}: {status} {answer!r}")
            if profile is not None:
                await _profile(authz, next(c for c in callers if c.name.startswith(profile)), requests)
                return {}
            times: dict[str, list[float]] = {name: [] for name in ("no-op", *(c.name for c in callers))}
            for n in range(rounds + 1):
                noop_time = await callers[0].round(noop, requests)
                mine = [await caller.round(authz, requests) for caller in callers]
                if n:  # the first is a warm-up
                    times["no-op"].append(noop_time)
                    for caller, t in zip(callers, mine, strict=True):
                        times[caller.name].append(t)
            answered = authz.state.metrics.registry.get_sample_value("authz_fast_path_total", {"outcome": "answered"})
    finally:
        runtime.database.dispose()
        root.handlers[:], level = saved
        root.setLevel(level)
        access.close()
    result: dict[str, Any] = {name: {"best": min(t), "median": statistics.median(t)} for name, t in times.items()}
    result["fast_path_answered"] = answered  # None on code without the counter
    return result


async def _profile(app: Any, caller: Caller, requests: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await caller.round(app, requests)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(50)


def run(report: Report, database_url: str, dataset: Dataset, workdir: Path, *, quick: bool) -> None:
    rounds, requests = (9, 2000) if quick else (15, 4000)
    result = asyncio.run(measure(database_url, dataset, workdir, rounds=rounds, requests=requests))
    noop = result["no-op"]
    for name in ("service key", "user token"):
        mine = result[name]
        report.add(Figure(
            f"/v1/check CPU per request through the ASGI app in process ({name})", mine["best"], "µs",
            noop["best"], "no-op FastAPI endpoint, the same way",
            note=f"best of {rounds} rounds of {requests} over {QUESTIONS} questions; "
                 f"medians {mine['median']:.1f} / {noop['median']:.1f} µs",
        ))
    report.sections["app_cost"] = result | {"rounds": rounds, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", choices=("service", "user"), help="cProfile this caller instead of timing")
    args = parser.parse_args()
    dataset = Dataset(QUICK)
    with tempfile.TemporaryDirectory(prefix="authz-app-cost-") as workdir:
        url = f"sqlite:///{Path(workdir) / 'authz.db'}"
        bulk_load(url, dataset)
        result = asyncio.run(measure(url, dataset, Path(workdir), rounds=args.rounds, requests=args.requests,
                                     profile=args.profile))
    if args.profile:
        return
    noop = result["no-op"]
    print(f"no-op FastAPI app: best {noop['best']:.2f} µs, median {noop['median']:.2f} µs CPU per request")
    for name in ("service key", "user token"):
        mine = result[name]
        print(f"authz /v1/check ({name}): best {mine['best']:.2f} µs ({mine['best'] / noop['best']:.3f}× the no-op), "
              f"median {mine['median']:.2f} µs ({mine['median'] / noop['median']:.3f}×)")
    print(f"answered by the fast path (authz_fast_path_total): {result['fast_path_answered']}")


if __name__ == "__main__":
    main()
