"""LLM client library and accounting."""
