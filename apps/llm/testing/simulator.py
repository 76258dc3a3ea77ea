"""A loopback HTTP server that speaks the OpenAI API (and OpenRouter's flavour of it).

The real ``openai`` SDK talks HTTP to it, so tests exercise the SDK's own request building,
retries, SSE parsing and error mapping instead of a monkeypatched stand-in::

    with OpenAISimulator() as sim:
        sim.enqueue(CHAT, SimResponse.error(429, "Slow down", retry_after=0.01))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Routes live under both ``/v1`` (OpenAI) and ``/api/v1`` (OpenRouter). Unscripted requests get
deterministic answers derived from the request; scripted responses (``enqueue``) are served
first, in order, per route. It is also the zero-cost baseline of the client benchmarks, so the
request path is kept short: one write per response, no per-request logging, TCP_NODELAY.

Stdlib only and independent of Django, so it can run anywhere: ``python -m apps.llm.testing.simulator``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import hashlib
import http
import itertools
import json
import math
import random
import socket
import sys
import threading
import time
import traceback
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CHAT",
    "DEFAULT_MODELS",
    "EMBEDDINGS",
    "MODELS",
    "OpenAISimulator",
    "ReceivedRequest",
    "SimResponse",
    "lognormal_latency",
    "main",
]

# Route names: the path after the /v1/ or /api/v1/ prefix.
CHAT = "chat/completions"
EMBEDDINGS = "embeddings"
MODELS = "models"

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)

_EMBEDDING_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
    "text-embedding-3-large": 3072,
}
_MAX_DIMENSIONS = 16384

_PREFIXES = (("/api/v1/", "openrouter"), ("/v1/", "openai"))

# The server sets these itself; copying them from a recorded response would corrupt the framing.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

_ERROR_TYPES = {429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided: sk-****. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    403: "You are not allowed to sample from this model.",
    404: "The requested resource does not exist.",
    429: "Rate limit reached for requests. Please try again in 20ms.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}

HeaderValue = str | Sequence[str]
SSEItem = Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class SimResponse:
    """One scripted HTTP response.

    Give at most one body: ``json`` (serialised), ``sse`` (a stream) or ``body`` (raw bytes/text).
    ``sse`` is either the raw text of a stream (sent byte-for-byte, one event per chunk) or a list
    of events: a mapping becomes ``data: {json}``, a str ``data: {str}`` (so ``"[DONE]"`` works),
    bytes are sent verbatim (comments, ``event:`` lines). ``delay`` (seconds) overrides the
    simulator's ``latency`` for this response; ``None`` means "use the simulator's".
    """

    status: int = 200
    json: Any = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    sse: str | Sequence[SSEItem] | None = None
    body: str | bytes | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.json, self.sse, self.body))
        if given > 1:
            raise ValueError("SimResponse takes only one of json=, sse= and body=")

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the field is called "type" in the API
        code: str | int | None = None,
        param: str | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> SimResponse:
        """An error in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

        ``type`` and ``code`` default to what OpenAI sends for the status (``invalid_api_key``
        for 401, ``rate_limit_exceeded`` for 429, ``server_error`` for 5xx). ``retry_after``
        (seconds) sets both ``retry-after`` and the SDK's preferred ``retry-after-ms``.
        """
        if type is None:
            type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        if code is None:
            code = _ERROR_CODES.get(status)
        all_headers: dict[str, HeaderValue] = dict(headers or {})
        if retry_after is not None:
            all_headers.setdefault("retry-after", str(max(1, math.ceil(retry_after))))
            all_headers.setdefault("retry-after-ms", str(round(retry_after * 1000)))
        body = {
            "error": {
                "message": message if message is not None else _DEFAULT_MESSAGES.get(status, "Error."),
                "type": type,
                "param": param,
                "code": code,
            }
        }
        return cls(status=status, json=body, headers=all_headers, delay=delay)


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as the simulator received it. Header names are lower-case."""

    method: str
    path: str
    # Kept out of repr so an assertion message or log line never prints an API key.
    headers: Mapping[str, str] = field(repr=False)
    json: Any
    route: str


def lognormal_latency(
    median: float, sigma: float = 0.5, *, seed: int | None = 0
) -> Callable[[ReceivedRequest], float]:
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._models = tuple(models)
        self._models_body = _dumps(
            {"object": "list", "data": [_model_object(m) for m in self._models]}
        )
        # The catalog is large (hundreds of KB): serialise it once, not per request.
        self._catalog_body = _dumps(openrouter_catalog) if openrouter_catalog is not None else None
        self._catalog = {
            m["id"]: m
            for m in (openrouter_catalog or {}).get("data", [])
            if isinstance(m, Mapping) and "id" in m
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenAISimulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), self)
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
        key = _normalise_route(route)
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
            return len(self._scripts.get(_normalise_route(route), ()))

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
        key = _normalise_route(route)
        return [r for r in self.requests if r.route == key]

    def count(self, route: str) -> int:
        """How many requests ``route`` received (both prefixes)."""
        with self._lock:
            return self._counts[_normalise_route(route)]

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
        route, flavour = _split_route(path)
        raw = _read_body(h)
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
            _write_response(h, response, self.stream_delay)
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
            return _not_found(method, request.path)
        if method == "POST" and route in (CHAT, EMBEDDINGS):
            if bad_json or not isinstance(request.json, dict):
                return SimResponse.error(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                    "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                )
            failure = self._random_failure()
            if failure is not None:
                return failure
            if route == CHAT:
                return self._chat(request.json, flavour)
            return self._embeddings(request.json, flavour)
        if method == "GET" and route == MODELS:
            if flavour == "openrouter" and self._catalog_body is not None:
                return SimResponse(body=self._catalog_body, headers={"content-type": "application/json"})
            return SimResponse(body=self._models_body, headers={"content-type": "application/json"})
        if method == "GET" and route.startswith(MODELS + "/"):
            return self._model(route[len(MODELS) + 1 :])
        return _not_found(method, request.path)

    def _random_failure(self) -> SimResponse | None:
        if self.error_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.error_rate:
                return None
            rate_limited = self._rng.random() < 2 / 3
            wait_ms = self._rng.randint(50, 500)
        if rate_limited:
            return SimResponse.error(
                429,
                "Rate limit reached for requests in organization org-simulator on requests per min (RPM): "
                f"Limit 500, Used 500, Requested 1. Please try again in {wait_ms}ms. "
                "Visit https://platform.openai.com/account/rate-limits to learn more.",
                retry_after=wait_ms / 1000,
            )
        return SimResponse.error(500)

    def _model(self, model_id: str) -> SimResponse:
        if model_id in self._models:
            return SimResponse(json=_model_object(model_id))
        if model_id in self._catalog:
            return SimResponse(json=self._catalog[model_id])
        return SimResponse.error(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )

    def _chat(self, body: dict[str, Any], flavour: str) -> SimResponse:
        model = body.get("model")
        messages = body.get("messages")
        if not model:
            return _missing("model")
        if not isinstance(messages, list) or not messages:
            return _missing("messages")
        digest = hashlib.sha256(
            json.dumps([model, messages], sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        prompt_tokens = 3 + sum(4 + _content_tokens(m.get("content")) for m in messages if isinstance(m, dict))
        if body.get("tools"):
            prompt_tokens += _estimate_tokens(json.dumps(body["tools"]))
        too_long = self._context_check(model, prompt_tokens, flavour)
        if too_long is not None:
            return too_long

        tool_call = _forced_tool_call(body, digest)
        answer = None if tool_call else _answer(messages, digest, body.get("response_format"))
        finish_reason = "tool_calls" if tool_call else "stop"
        completion_tokens = _estimate_tokens(tool_call["function"]["arguments"] if tool_call else answer or "")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if answer and isinstance(limit, int) and 0 < limit < completion_tokens:
            answer, completion_tokens, finish_reason = answer[: limit * 4], limit, "length"
        completion_tokens += self.reasoning_tokens
        cached = int(prompt_tokens * self.cached_fraction)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        seq = next(self._ids)
        created = int(time.time())
        if flavour == "openrouter":
            completion_id = f"gen-{created}-sim{seq:x}{digest[:12]}"
        else:
            completion_id = f"chatcmpl-sim{seq:x}{digest[:16]}"
        common: dict[str, Any] = {
            "id": completion_id,
            "created": created,
            "model": model,
            "system_fingerprint": "fp_sim" + digest[-8:],
        }
        if flavour == "openrouter":
            common["provider"] = "Simulator"
            self._add_cost(usage, model)
        headers = {"x-request-id": f"req_sim{seq:x}{digest[:16]}"}
        stream_options = body.get("stream_options") or {}
        if body.get("stream"):
            # OpenRouter always ends a stream with usage; OpenAI only when asked to.
            with_usage = flavour == "openrouter" or bool(stream_options.get("include_usage"))
            events = _chat_stream(common, answer, tool_call, finish_reason, usage if with_usage else None)
            if flavour == "openrouter":
                events.insert(0, b": OPENROUTER PROCESSING\n\n")
            return SimResponse(sse=events, headers=headers)
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
        if tool_call:
            message["tool_calls"] = [tool_call]
        completion = {
            **common,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
            "service_tier": "default",
        }
        return SimResponse(json=completion, headers=headers)

    def _context_check(self, model: str, prompt_tokens: int, flavour: str) -> SimResponse | None:
        entry = self._catalog.get(model) or self._catalog.get(f"openai/{model}")
        limit = entry.get("context_length") if entry else None
        if not isinstance(limit, int) or prompt_tokens <= limit:
            return None
        if flavour == "openrouter":
            return SimResponse(
                status=400,
                json={
                    "error": {
                        "message": f"This endpoint's maximum context length is {limit} tokens. "
                        f"However, you requested about {prompt_tokens} tokens. Please reduce the length.",
                        "code": 400,
                    }
                },
            )
        return SimResponse.error(
            400,
            f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )

    def _add_cost(self, usage: dict[str, Any], model: str) -> None:
        """Add OpenRouter's ``usage.cost`` when the catalog prices the model."""
        entry = self._catalog.get(model)
        pricing = entry.get("pricing") if entry else None
        if not isinstance(pricing, Mapping):
            return

        def price(key: str) -> Decimal:
            return Decimal(str(pricing.get(key) or "0"))

        cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
        prompt_cost = (usage["prompt_tokens"] - cached) * price("prompt") + cached * price("input_cache_read")
        completion_cost = usage.get("completion_tokens", 0) * price("completion")
        cost = float(prompt_cost + completion_cost)
        usage["cost"] = cost
        usage["is_byok"] = False
        usage["cost_details"] = {
            "upstream_inference_cost": cost,
            "upstream_inference_prompt_cost": float(prompt_cost),
            "upstream_inference_completions_cost": float(completion_cost),
        }

    def _embeddings(self, body: dict[str, Any], flavour: str) -> SimResponse:
        model = body.get("model")
        if not model:
            return _missing("model")
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            return SimResponse.error(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param="input",
            )
        dim = body.get("dimensions")
        if dim is None:
            dim = _EMBEDDING_DIMS.get(model.rsplit("/", 1)[-1], self.embedding_dim)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= _MAX_DIMENSIONS:
            return SimResponse.error(400, f"Invalid value for 'dimensions': {dim!r}.", param="dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, (text, n_tokens) in enumerate(texts):
            tokens += n_tokens
            vector = _unit_vector(text, dim)
            embedding: Any = base64.b64encode(vector).decode("ascii") if as_base64 else _floats(vector)
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
        result: dict[str, Any] = {"object": "list", "data": data, "model": model, "usage": usage}
        if flavour == "openrouter":
            self._add_cost(usage, model)
        return SimResponse(json=result)


# -- HTTP plumbing ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the SDK's pool reuses connections
    # Headers and body go out in one write, but SSE events are many small writes: without
    # TCP_NODELAY, Nagle plus delayed ACKs can stall them by 40 ms.
    disable_nagle_algorithm = True
    # Idle keep-alive connections end eventually, freeing their thread.
    timeout = 300
    server: _Server

    def do_GET(self) -> None:
        self.server.sim._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the default prints every request to stderr: slow, noisy, and headers must not leak


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive threads wait for the client's next request; stop() must not wait for them.
    block_on_close = False
    # The default backlog of 5 drops connections when many client threads connect at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: OpenAISimulator) -> None:
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.sim._on_connection()
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
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # clients hanging up is normal
        super().handle_error(request, client_address)


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
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


def _write_response(h: BaseHTTPRequestHandler, response: SimResponse, stream_delay: float) -> None:
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
        body = _dumps(response.json)
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
            events.append(b"data: " + _dumps(item) + b"\n\n")
    return events


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _split_route(path: str) -> tuple[str, str | None]:
    for prefix, flavour in _PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :].strip("/"), flavour
    # Outside the API prefixes the path keeps its leading slash, so it never matches a scripted
    # route: a client with a wrong base URL gets 404s instead of the test's scripted answers.
    return path, None


def _normalise_route(route: str) -> str:
    route = route.strip("/")
    for prefix in ("api/v1/", "v1/"):
        if route.startswith(prefix):
            return route[len(prefix) :].strip("/")
    return route


# -- default answers ----------------------------------------------------------------------------


def _not_found(method: str, path: str) -> SimResponse:
    return SimResponse.error(404, f"Invalid URL ({method} {path})")


def _missing(param: str) -> SimResponse:
    return SimResponse.error(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def _estimate_tokens(text: str) -> int:
    """About four characters per token, as OpenAI's rule of thumb says."""
    return (len(text) + 3) // 4


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _estimate_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += _estimate_tokens(part["text"])
            else:
                total += 85  # what a low-detail image costs
        return total
    return 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _answer(messages: list[Any], digest: str, response_format: Any) -> str:
    said = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            said = " ".join(_content_text(message.get("content")).split())
            break
    if len(said) > 80:
        said = said[:77] + "..."
    answer = f"Simulated reply {digest[:6]}. You said: {said}" if said else f"Simulated reply {digest[:6]}."
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return json.dumps({"reply": answer})
    return answer


def _forced_tool_call(body: dict[str, Any], digest: str) -> dict[str, Any] | None:
    """A tool call when the request forces one (``tool_choice`` "required" or a named function)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or not (choice == "required" or isinstance(choice, dict)):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    else:
        name = (tools[0].get("function") or {}).get("name") if isinstance(tools[0], dict) else None
    return {"id": "call_" + digest[:24], "type": "function", "function": {"name": name or "tool", "arguments": "{}"}}


def _chat_stream(
    common: dict[str, Any],
    answer: str | None,
    tool_call: dict[str, Any] | None,
    finish_reason: str,
    usage: dict[str, Any] | None,
) -> list[SSEItem]:
    # Like OpenAI: every chunk carries "usage": null when a usage chunk will follow.
    base = {**common, "object": "chat.completion.chunk"}
    if usage is not None:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    events: list[SSEItem] = []
    if tool_call:
        call = {**tool_call, "index": 0, "function": {"name": tool_call["function"]["name"], "arguments": ""}}
        events.append(chunk({"role": "assistant", "content": None, "tool_calls": [call]}))
        args = tool_call["function"]["arguments"]
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args}}]}))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        words = (answer or "").split(" ")
        for i, word in enumerate(words):
            events.append(chunk({"content": word if i == 0 else " " + word}))
    events.append(chunk({}, finish_reason))
    if usage is not None:
        events.append({**base, "choices": [], "usage": usage})
    events.append("[DONE]")
    return events


def _embedding_inputs(value: Any) -> list[tuple[str, int]] | None:
    """(text, token count) per input; token arrays are hashed by their repr. None if invalid."""

    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) for t in v)

    if isinstance(value, str):
        return [(value, max(1, _estimate_tokens(value)))] if value else None
    if is_tokens(value):
        return [(repr(value), len(value))]
    if isinstance(value, list) and value:
        items = []
        for v in value:
            if isinstance(v, str) and v:
                items.append((v, max(1, _estimate_tokens(v))))
            elif is_tokens(v):
                items.append((repr(v), len(v)))
            else:
                return None
        return items
    return None


@functools.lru_cache(maxsize=4096)
def _unit_vector(text: str, dim: int) -> bytes:
    """A deterministic pseudo-random unit vector as little-endian float32 bytes (OpenAI's base64 layout)."""
    raw = hashlib.shake_256(f"{dim}:{text}".encode()).digest(dim * 2)
    ints = array("h")
    ints.frombytes(raw)
    norm = math.sqrt(sum(i * i for i in ints)) or 1.0
    vector = array("f", [i / norm for i in ints])
    if sys.byteorder == "big":
        vector.byteswap()
    return vector.tobytes()


def _floats(vector: bytes) -> list[float]:
    values = array("f")
    values.frombytes(vector)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m apps.llm.testing.simulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", type=float, default=0.0, help="median seconds before each response")
    parser.add_argument("--jitter", type=float, default=0.0, help="lognormal sigma of the latency (0: fixed)")
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered by 429/500")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog", help="JSON file served as the OpenRouter catalog at GET /api/v1/models")
    parser.add_argument("--quiet", action="store_true", help="do not print one line per request")
    args = parser.parse_args(argv)

    catalog = None
    if args.catalog:
        with open(args.catalog, encoding="utf-8") as f:
            catalog = json.load(f)
    latency: float | Callable[[ReceivedRequest], float] = args.latency
    if args.latency > 0 and args.jitter > 0:
        latency = lognormal_latency(args.latency, args.jitter, seed=args.seed)
    sim = OpenAISimulator(
        args.host,
        args.port,
        latency=latency,
        stream_delay=args.stream_delay,
        error_rate=args.error_rate,
        seed=args.seed,
        openrouter_catalog=catalog,
        keep_requests=1000,  # a long-running server must not grow without bound
        log=None if args.quiet else lambda line: print(line, flush=True),
    )
    with sim:
        print(
            f"OpenAI simulator: {sim.base_url} (OpenRouter-style: {sim.openrouter_base_url}); Ctrl-C stops it",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
