"""`authz serve --workers N`: load the state once, then fork N workers that share its pages.

uvicorn's own `workers=` spawns fresh interpreters, each loading every rule again (N times
the memory and the start-up). Here the supervisor opens the runtime (schema upgrade,
policy, the whole index, frozen out of the collector's reach by `bulk_allocation`),
binds the socket, and forks: each worker starts with the index already in memory, shared
copy-on-write with its siblings, and then follows the changelog on its own from the
revision loaded (DESIGN.md invariant 3). Pages a worker touches (reference counts of
what its requests read, and every change it applies) become its own; the rest stay shared.

The supervisor forwards SIGTERM/SIGINT to the workers and exits when they have; a worker
that dies is reported and the others are stopped too (the process manager restarts the
whole service: a half-sized pool is a surprise nobody wants).
"""

import contextlib
import gc
import logging
import os
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authz.settings import Settings

log = logging.getLogger("authz.serve")


def serve_prefork(settings: "Settings", host: str, port: int, workers: int, uvicorn_options: dict[str, object]) -> int:
    """Run the service with `workers` forked processes; returns the exit status."""
    from api.app import create_app
    from api.serving import serve
    from authz.bootstrap import open_runtime
    runtime = open_runtime(settings)  # the one load: every worker starts from this index
    runtime.database.engine.dispose()  # no pooled connection may be shared across the fork
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    gc.collect()
    gc.freeze()  # what exists now is never walked (nor written to) by a worker's collector
    log.info("loaded revision %d once; forking %d workers", runtime.replica.revision, workers)

    children: list[int] = []
    supervisor = os.getpid()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            status = 0
            try:
                _die_with(supervisor)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                runtime.database.engine.dispose(close=False)  # its own connections from here on
                serve(create_app(settings, runtime), uvicorn_options, sockets=[sock])
            except BaseException:  # a worker must never return into the supervisor's loop
                log.exception("worker %d failed", os.getpid())
                status = 1
            finally:
                os._exit(status)
        children.append(pid)

    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # it has exited already
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in children:
            children.remove(pid)
            if not stopping:
                log.error("worker %d exited (status %d); stopping the others", pid, code)
                status = 1
                stop(signal.SIGTERM, None)
    sock.close()
    return status


def _die_with(supervisor: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (Linux): no orphan keeps the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("this platform cannot stop a worker when its supervisor dies")
    if os.getppid() != supervisor:  # it died before the request above took effect
        os._exit(1)
