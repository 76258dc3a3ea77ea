"""The simulator itself: a loopback OpenAI-compatible server with scripted and default answers.

Scripted responses (``enqueue``) come first, in order, per route; everything else is answered
from the request by ``payloads`` and ``embeddings``. The knobs are plain attributes so a test or
benchmark can turn them while the server runs. Stdlib only and independent of Django.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import random
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from apps.llm.testing.embeddings import embeddings
from apps.llm.testing.payloads import (
    DEFAULT_MODELS,
    chat_completion,
    model_list,
    model_object,
)
from apps.llm.testing.responses import (
    ReceivedRequest,
    SimResponse,
    invalid_json,
    not_found,
    rate_limited,
)
from apps.llm.testing.routes import (
    CHAT,
    EMBEDDINGS,
    MODELS,
    normalise_route,
    split_route,
)
from apps.llm.testing.wire import LoopbackServer, dumps, read_body, write_response

__all__ = ["OpenAISimulator", "lognormal_latency"]


def lognormal_latency(median: float, sigma: float = 0.5, *, seed: int | None = 0) -> Callable[[ReceivedRequest], float]:
    """A latency knob with a long right tail, like real provider latencies.

    ``median`` is in seconds; ``sigma`` is the spread of the underlying normal distribution.
    """
    rng = random.Random(seed)
    lock = threading.Lock()
    mu = math.log(median)

    def latency(_request: ReceivedRequest) -> float:
        with lock:  # lognormvariate draws twice; the lock keeps a seeded sequence reproducible
            return rng.lognormvariate(mu, sigma)

    return latency


class OpenAISimulator:
    """An OpenAI-compatible HTTP server on a loopback port, for tests, benchmarks and demos.

    Knobs (plain attributes, safe to change while it runs): ``latency`` (seconds, or a callable
    taking the ``ReceivedRequest``), ``stream_delay`` (seconds between SSE events),
    ``error_rate`` (share of unscripted chat/embedding calls answered by a 429 or a 500, drawn
    from an RNG seeded with ``seed``), ``cached_fraction`` (share of prompt tokens reported as
    cached), ``reasoning_tokens`` (added to each completion), ``embedding_dim`` (for unknown
    embedding models).

    ``models`` are the ids listed at ``GET /v1/models``; ``openrouter_catalog`` (a ``{"data": [...]}``
    catalog) is served verbatim at ``GET /api/v1/models`` and prices ``usage.cost`` and the context
    limit of calls under ``/api/v1``. ``keep_requests`` bounds the request log for long runs
    (``None``: keep all). ``log`` receives one line per request (method, path, status, time;
    never headers).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float | Callable[[ReceivedRequest], float] = 0.0,
        stream_delay: float = 0.0,
        error_rate: float = 0.0,
        seed: int | None = 0,
        cached_fraction: float = 0.0,
        reasoning_tokens: int = 0,
        embedding_dim: int = 1536,
        models: Sequence[str] = DEFAULT_MODELS,
        openrouter_catalog: Mapping[str, Any] | None = None,
        keep_requests: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.latency = latency
        self.stream_delay = stream_delay
        self.error_rate = error_rate
        self.cached_fraction = cached_fraction
        self.reasoning_tokens = reasoning_tokens
        self.embedding_dim = embedding_dim
        self._requested_port = port
        self._log = log
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._requests: collections.deque[ReceivedRequest] = collections.deque(maxlen=keep_requests)
        self._counts: collections.Counter[str] = collections.Counter()
        self._connections = 0
        self._scripts: dict[str, collections.deque[SimResponse]] = {}
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None
        self._models = tuple(models)
        self._models_body = dumps(model_list(self._models))
        # The catalog is large (hundreds of KB): serialise it once, not per request.
        self._catalog_body = dumps(openrouter_catalog) if openrouter_catalog is not None else None
        self._catalog = {
            m["id"]: m for m in (openrouter_catalog or {}).get("data", []) if isinstance(m, Mapping) and "id" in m
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenAISimulator:
        if self._server is not None:
            return self
        server = LoopbackServer((self.host, self._requested_port), self._handle, self._on_connection)
        self._server = server
        # A short poll interval keeps stop() fast; the loop cost is negligible.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> OpenAISimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def openrouter_base_url(self) -> str:
        """The OpenRouter-style base URL, ``http://127.0.0.1:PORT/api/v1``."""
        return f"http://{self.host}:{self.port}/api/v1"

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, route: str, *responses: SimResponse) -> None:
        """Serve ``responses`` in order to the next requests on ``route`` (e.g. ``CHAT``).

        ``route`` may be given with or without its ``/v1/`` or ``/api/v1/`` prefix; a scripted
        response is served under either prefix.
        """
        for r in responses:
            if not isinstance(r, SimResponse):
                raise TypeError(f"expected SimResponse, got {type(r).__name__}")
        key = normalise_route(route)
        with self._lock:
            self._scripts.setdefault(key, collections.deque()).extend(responses)

    def fail_next(
        self, route: str, n: int = 1, status: int = 500, message: str | None = None, **error_kwargs: Any
    ) -> None:
        """Answer the next ``n`` requests on ``route`` with an error (see ``SimResponse.error``)."""
        self.enqueue(route, *[SimResponse.error(status, message, **error_kwargs) for _ in range(n)])

    def pending(self, route: str) -> int:
        """Scripted responses on ``route`` not served yet."""
        with self._lock:
            return len(self._scripts.get(normalise_route(route), ()))

    def reset(self) -> None:
        """Forget scripted responses, the request log and the counters."""
        with self._lock:
            self._scripts.clear()
            self._requests.clear()
            self._counts.clear()
            self._connections = 0

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, route: str) -> list[ReceivedRequest]:
        key = normalise_route(route)
        return [r for r in self.requests if r.route == key]

    def count(self, route: str) -> int:
        """How many requests ``route`` received (both prefixes)."""
        with self._lock:
            return self._counts[normalise_route(route)]

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted: fewer than requests served means keep-alive works."""
        with self._lock:
            return self._connections

    # -- request handling (called on the server's connection threads) --------------------------

    def _on_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        path = h.path.split("?", 1)[0]
        route, flavour = split_route(path)
        raw = read_body(h)
        payload: Any = None
        bad_json = False
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                bad_json = True
        request = ReceivedRequest(
            method=h.command,
            path=path,
            headers={k.lower(): v for k, v in h.headers.items()},
            json=payload,
            route=route,
        )
        with self._lock:
            self._requests.append(request)
            self._counts[route] += 1
            queue = self._scripts.get(route)
            response = queue.popleft() if queue else None
        if response is None:
            try:
                response = self._default(request, flavour, bad_json)
            except Exception as exc:  # a simulator bug must show up as a readable 500, not a hang
                traceback.print_exc()
                response = SimResponse.error(500, f"simulator error: {exc!r}")
        delay = response.delay if response.delay is not None else self._latency_for(request)
        if delay > 0:
            time.sleep(delay)
        try:
            write_response(h, response, self.stream_delay)
        except OSError:  # the client went away mid-response
            h.close_connection = True
        if self._log is not None:
            ms = (time.perf_counter() - started) * 1000
            self._log(f"{h.command} {path} {response.status} {ms:.1f}ms")

    def _latency_for(self, request: ReceivedRequest) -> float:
        latency = self.latency
        return float(latency(request)) if callable(latency) else float(latency)

    def _default(self, request: ReceivedRequest, flavour: str | None, bad_json: bool) -> SimResponse:
        method, route = request.method, request.route
        if flavour is None:
            return not_found(method, request.path)
        if method == "POST" and route in (CHAT, EMBEDDINGS):
            if bad_json or not isinstance(request.json, dict):
                return invalid_json()
            failure = self._random_failure()
            if failure is not None:
                return failure
            if route == CHAT:
                return chat_completion(
                    request.json,
                    flavour,
                    catalog=self._catalog,
                    ids=self._ids,
                    reasoning_tokens=self.reasoning_tokens,
                    cached_fraction=self.cached_fraction,
                )
            return embeddings(request.json, flavour, catalog=self._catalog, default_dim=self.embedding_dim)
        if method == "GET" and route == MODELS:
            if flavour == "openrouter" and self._catalog_body is not None:
                return SimResponse(body=self._catalog_body, headers={"content-type": "application/json"})
            return SimResponse(body=self._models_body, headers={"content-type": "application/json"})
        if method == "GET" and route.startswith(MODELS + "/"):
            return self._model(route[len(MODELS) + 1 :])
        return not_found(method, request.path)

    def _random_failure(self) -> SimResponse | None:
        if self.error_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.error_rate:
                return None
            too_many = self._rng.random() < 2 / 3
            wait_ms = self._rng.randint(50, 500)
        if too_many:
            return rate_limited(wait_ms)
        return SimResponse.error(500)

    def _model(self, model_id: str) -> SimResponse:
        if model_id in self._models:
            return SimResponse(json=model_object(model_id))
        if model_id in self._catalog:
            return SimResponse(json=self._catalog[model_id])
        return SimResponse.error(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
