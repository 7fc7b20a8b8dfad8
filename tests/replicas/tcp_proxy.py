"""A loopback TCP proxy the test owns, to take the database away from replicas and give it back.

`cut()` closes every open connection and makes new ones close at once (as a dead server
would look to libpq); `restore()` lets connections through again. The machine's
PostgreSQL is never touched.
"""

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

CHUNK = 65536


class TcpProxy:
    """Forward 127.0.0.1:<port> to `upstream`, in threads; cut and restore at will."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self.accepted = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        """Drop every connection now and refuse (accept-then-close) new ones."""
        self._cut.set()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()
        self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._cut.is_set():
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=3)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._cut.is_set():
                    _close(client)
                    _close(server)
                    continue
                self._open.update((client, server))
            for source, target, outbound in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, target, outbound), daemon=True).start()

    def forward(self, data: bytes, client: socket.socket, outbound: bool) -> None:
        """Called in the pump's thread for every chunk (`outbound`: client to upstream) before it is sent.

        A subclass may look at the traffic or hold it (tests/sidecar/feed_tap.py); `client`
        names the connection.
        """

    def _pump(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        client = source if outbound else target
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                self.forward(data, client, outbound)
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may have closed it first
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
