"""Serving an app with uvicorn, and ending its waits for later revisions when the server stops.

A change stream stays open for as long as its client reads, a long poll for up to
`changes_max_wait`, and a check for its `min_revision` up to `min_revision_wait`. On a stop,
uvicorn closes the listening socket and then waits `timeout_graceful_shutdown` for open
responses before it cancels them mid-response. An open feed therefore held every stop of
`authz serve` (a deploy, a restart) for the full timeout, and its follower then saw a
broken response.

Here the app hears of the stop first (`DrainingServer` sets the app's `ServerShutdown`). A
stream ends with a comment saying why, a long poll answers with what it has, and a waiting
check answers 503. Then the connections close, and uvicorn's own shutdown has nothing left
to wait for. A client resumes from its last revision (Last-Event-ID, `after`), or retries,
on a replica that is running, and loses nothing.
"""

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

T = TypeVar("T")


class ServerShutdown:
    """Begun once, on the server's event loop, when the server begins to shut down.

    Bound to no event loop itself (an `asyncio.Event` is, at its first wait): a test may run
    the same app under one event loop after another.
    """

    def __init__(self) -> None:
        self._begun = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def begun(self) -> bool:
        return self._begun

    def begin(self) -> None:
        self._begun = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def unless_begun(self, waiting: Coroutine[Any, Any, T]) -> T | None:
        """What `waiting` returns; or None as soon as the shutdown begins, and `waiting` is cancelled."""
        task = asyncio.ensure_future(waiting)
        begun: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._begun:
            begun.set_result(None)
        self._waiters.add(begun)
        try:
            done, _ = await asyncio.wait((task, begun), return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the caller is cancelled (its client went away)
            self._waiters.discard(begun)
            task.cancel()
        return task.result() if task in done else None


class DrainingServer(uvicorn.Server):
    """uvicorn's server; its shutdown first tells the app (`ServerShutdown.begin`)."""

    def __init__(self, config: uvicorn.Config, shutdown: ServerShutdown) -> None:
        super().__init__(config)
        self._app_shutdown = shutdown

    async def shutdown(self, sockets: Any = None) -> None:
        # Before uvicorn closes the listening sockets, without an await in between: a waiting
        # response wakes only after they are closed, so its client cannot reconnect to this server.
        self._app_shutdown.begin()
        await super().shutdown(sockets=sockets)


def serve(app: FastAPI, options: dict[str, Any], *, host: str | None = None, port: int | None = None,
          sockets: list[Any] | None = None) -> None:
    """Run `app` until the server is stopped, on `host`:`port` or on the bound `sockets` (`--workers`).

    As `uvicorn.run`, it exits with uvicorn's start-up failure status if the server never
    started (e.g. the port is taken).
    """
    address: dict[str, Any] = {} if sockets else {"host": host, "port": port}
    server = DrainingServer(uvicorn.Config(app, **address, **options), app.state.shutdown)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)
