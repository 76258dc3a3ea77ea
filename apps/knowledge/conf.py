"""The knowledge base's settings: the only reader of ``settings.KNOWLEDGE``, read when asked.

    KNOWLEDGE = {
        "EMBEDDING_MODEL": "local/all-minilm-l6-v2",
        "ANSWER_MODEL": "openai/gpt-4o-mini",
        "CHUNK_TOKENS": 512, "CHUNK_OVERLAP": 64,
        "MAX_UPLOAD_BYTES": 25 * 1024 * 1024,
        "EF_SEARCH": 80,               # HNSW ef_search
        "EMBED_BATCH": 64,             # chunks per embedding call
        "PROCESSING_TIMEOUT": 900,     # seconds before a document stuck in processing is retried
        "MAX_ATTEMPTS": 3,             # claims of a document before it is failed ("gave up after 3 attempts")
        "GROUP_DOCUMENTS": 64,         # documents claimed together, their chunks embedded in shared batches
        "EXTRACTION_MEMORY_BYTES": 1024 * 1024 * 1024,  # address space of the extraction child process
        "EXTRACTION_TIMEOUT": 120,     # seconds (CPU and wall clock) of the extraction child process
        "SEARCH_MODE": "hybrid",       # search()'s default: "hybrid", "vector" or "keyword"
        "RRF_K": 20,                   # hybrid: reciprocal rank fusion's k (see below)
        "HYBRID_CANDIDATES": 100,      # hybrid: chunks taken from each ranking before fusing
        "KEYWORD_CANDIDATES": 1000,    # keyword: about how many chunks are ranked per query
    }

Every key is optional; this project's ``config/`` fills them from the environment.

``RRF_K``: the usual 60 is Cormack et al.'s; on SciFact's 809 training claims smaller values
ranked better (nDCG@10 0.730 at 20 against 0.724 at 60, 95% bootstrap interval of the gain
+0.002..+0.010, the same sign on both halves of the claims; ``bench/bench_retrieval.py``).
``MAX_ATTEMPTS``: a claim that ended in a retryable provider error does not count (the actor's
retries bound those); one that never ended (worker killed, stuck past the timeout) does.
``EXTRACTION_*``: .docx, PDF and HTML are parsed in a child process with these limits; a file that
needs more fails as too large (``apps.knowledge.extraction.sandbox``).
``KEYWORD_CANDIDATES``: keyword ranking reads the chunks holding the query's rarest terms, up to
about this many; more ranks more of the chunks holding only common terms, at a cost in time
that grows with the number (see ``apps.knowledge.search.parse_keyword_query``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class KnowledgeSettings:
    embedding_model: str = "local/all-minilm-l6-v2"
    answer_model: str = "openai/gpt-4o-mini"
    chunk_tokens: int = 512
    chunk_overlap: int = 64
    max_upload_bytes: int = 25 * 1024 * 1024
    ef_search: int = 80
    embed_batch: int = 64
    processing_timeout: int = 900
    max_attempts: int = 3
    group_documents: int = 64
    extraction_memory_bytes: int = 1024 * 1024 * 1024
    extraction_timeout: int = 120
    search_mode: str = "hybrid"
    rrf_k: int = 20
    hybrid_candidates: int = 100
    keyword_candidates: int = 1000


def knowledge_settings() -> KnowledgeSettings:
    """``settings.KNOWLEDGE`` as typed values, with the defaults for what it leaves out."""
    raw: Mapping[str, Any] = getattr(settings, "KNOWLEDGE", {})
    return KnowledgeSettings(
        **{f.name: raw[f.name.upper()] for f in fields(KnowledgeSettings) if raw.get(f.name.upper()) is not None}
    )
