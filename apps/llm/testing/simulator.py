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
import json
import sys
import time
from collections.abc import Callable, Sequence

from apps.llm.testing.payloads import DEFAULT_MODELS
from apps.llm.testing.responses import ReceivedRequest, SimResponse
from apps.llm.testing.routes import CHAT, EMBEDDINGS, MODELS
from apps.llm.testing.server import OpenAISimulator, lognormal_latency

# The simulator is split into one module per concept (responses, routes, payloads, embeddings,
# wire, server); these names are re-exported because tests, benchmarks and the demo import them
# from this one module.
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
