"""A TCP proxy between a sidecar and its upstream that sees its requests and can hold its change stream.

`hold_streams()` stops passing the upstream's bytes down every connection whose request
asked for `text/event-stream` (the follower's change stream), as a proxy that buffers a
long-poll would: the stream stays open and silent, and the sidecar learns nothing from it.
Other requests (the snapshot, a catch-up's JSON page) pass. `release_streams()` lets the
held bytes through. Every request line is recorded, so a test counts what reached the upstream.
The sidecar sends only GETs without a body, so a request is its head up to the blank line.
"""

import socket
import threading

from tests.replicas.tcp_proxy import TcpProxy


class FeedTap(TcpProxy):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.requests: list[tuple[str, bool]] = []  # (request target, asked for an event stream), in order
        self._heads: dict[socket.socket, bytes] = {}  # the part of a request head received so far
        self._streams: set[socket.socket] = set()  # connections carrying a change stream
        self._flowing = threading.Event()
        self._flowing.set()
        self._seen = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_streams(self) -> None:
        self._flowing.clear()

    def release_streams(self) -> None:
        self._flowing.set()

    def count(self, path: str, *, stream: bool = False) -> int:
        """Requests for `path` (without the query) so far; `stream`: those that asked for an event stream."""
        with self._seen:
            return sum(1 for target, streamed in self.requests
                       if target.partition("?")[0] == path and streamed == stream)

    def forward(self, data: bytes, client: socket.socket, outbound: bool) -> None:
        if outbound:
            self._read_heads(client, data)
        elif client in self._streams:
            self._flowing.wait()

    def _read_heads(self, client: socket.socket, data: bytes) -> None:
        buffer = self._heads.get(client, b"") + data
        while b"\r\n\r\n" in buffer:
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            streamed = any(line.lower().startswith("accept:") and "text/event-stream" in line for line in lines[1:])
            with self._seen:
                self.requests.append((lines[0].split(" ")[1], streamed))
                if streamed:
                    self._streams.add(client)
        self._heads[client] = buffer

    def close(self) -> None:
        self.release_streams()  # a pump thread held in `forward` ends with its connection
        super().close()
