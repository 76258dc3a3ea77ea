"""HTTP plumbing of the simulator: the threaded server, reading requests, writing responses.

Hand-written framing rather than ``send_response``/``send_header``, because the simulator is the
zero-cost baseline of the client benchmarks: one write per response, keep-alive, TCP_NODELAY.
The server knows nothing of the API; it hands every request to a callback.
"""

from __future__ import annotations

import contextlib
import http
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apps.llm.testing.responses import SimResponse, SSEItem

__all__ = ["LoopbackServer", "dumps", "read_body", "write_response"]

# The server sets these itself; copying them from a recorded response would corrupt the framing.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the SDK's pool reuses connections
    # Headers and body go out in one write, but SSE events are many small writes: without
    # TCP_NODELAY, Nagle plus delayed ACKs can stall them by 40 ms.
    disable_nagle_algorithm = True
    # Idle keep-alive connections end eventually, freeing their thread.
    timeout = 300
    server: LoopbackServer

    def do_GET(self) -> None:
        self.server.dispatch(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the default prints every request to stderr: slow, noisy, and headers must not leak


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server that calls ``dispatch`` for every request and can end idle connections."""

    daemon_threads = True
    # Keep-alive threads wait for the client's next request; stop() must not wait for them.
    block_on_close = False
    # The default backlog of 5 drops connections when many client threads connect at once.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Callable[[BaseHTTPRequestHandler], None],
        on_connection: Callable[[], None],
    ) -> None:
        self.dispatch = dispatch
        self._on_connection = on_connection
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._on_connection()
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads exit and clients see a clean close."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # clients hanging up is normal
        super().handle_error(request, client_address)


def read_body(h: BaseHTTPRequestHandler) -> bytes:
    """The request body, whether sent with a content-length or chunked."""
    length = h.headers.get("content-length")
    if length:
        return h.rfile.read(int(length))
    if "chunked" in h.headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size = int(h.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    return b""


def write_response(h: BaseHTTPRequestHandler, response: SimResponse, stream_delay: float) -> None:
    """Send ``response``: one write for a plain body, one chunk per event for a stream."""
    status = response.status
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    content_type = None
    for name, value in response.headers.items():
        lower = name.lower()
        if lower in _FRAMING_HEADERS:
            continue
        if lower == "content-type":
            content_type = value if isinstance(value, str) else value[0]
            continue
        for v in [value] if isinstance(value, str) else value:
            lines.append(f"{name}: {v}")
    lines.append("connection: close" if h.close_connection else "connection: keep-alive")

    if response.sse is not None:
        # Chunked framing keeps the connection reusable; HTTP/1.0 has no chunks, so the end of
        # the stream is the end of the connection there.
        chunked = h.request_version == "HTTP/1.1"
        if not chunked:
            h.close_connection = True
            lines[-1] = "connection: close"
        lines.append(f"content-type: {content_type or 'text/event-stream; charset=utf-8'}")
        lines.append("cache-control: no-cache")
        if chunked:
            lines.append("transfer-encoding: chunked")
        h.wfile.write(_head(lines))
        for i, event in enumerate(_sse_events(response.sse)):
            if i and stream_delay > 0:
                time.sleep(stream_delay)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
        return

    if response.json is not None:
        body = dumps(response.json)
        content_type = content_type or "application/json"
    elif response.body is not None:
        body = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        body = b""
    if content_type:
        lines.append(f"content-type: {content_type}")
    lines.append(f"content-length: {len(body)}")
    h.wfile.write(_head(lines) + body)  # one write: one TCP segment for small responses


def _head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _sse_events(sse: str | Sequence[SSEItem]) -> list[bytes]:
    if isinstance(sse, str):
        # Raw recorded text: split at event boundaries so it streams, rejoining to the same bytes.
        parts = sse.encode("utf-8").split(b"\n\n")
        events = [p + b"\n\n" for p in parts[:-1]]
        if parts[-1]:
            events.append(parts[-1])
        return events
    events = []
    for item in sse:
        if isinstance(item, bytes):
            events.append(item)
        elif isinstance(item, str):
            events.append(b"data: " + item.encode("utf-8") + b"\n\n")
        else:
            events.append(b"data: " + dumps(item) + b"\n\n")
    return events


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the real API sends it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
