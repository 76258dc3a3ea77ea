"""Test doubles for the LLM layer: an OpenAI-compatible loopback server (``simulator``).

The real ``openai`` SDK talks HTTP to it, so tests, benchmarks and the demo exercise the SDK's own
request building, retries, streaming and error mapping at no cost and with no network. Stdlib only,
so it also runs outside Django: ``python -m apps.llm.testing.simulator``.
"""
