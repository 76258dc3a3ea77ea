"""Ingestion throughput of the real pipeline: batched embedding calls vs one call per chunk.

`apps.knowledge.pipeline.process_document` runs on the same documents four ways, in the same
process and the same run:

- the local MiniLM model (``local/all-minilm-l6-v2``, 384 dims, chunks of <= 256 word pieces),
- a loopback OpenAI-protocol server (``OpenAISimulator``) answering ``text-embedding-3-small``
  (1536 dims, chunks of ``CHUNK_TOKENS`` tiktoken tokens) with a lognormal latency per request
  (default median 200 ms, sigma 0.3: p95 ~330 ms, the kind of latency OpenAI's endpoint has),

each with ``KNOWLEDGE["EMBED_BATCH"] = 64`` (the default: 64 chunks per ``generate_embedding``
call) and ``= 1`` (one call, so one HTTP request, per chunk). Rounds alternate the order of the
two batch sizes. The text is real: the docstrings of the standard-library modules in
``sys.stdlib_module_names`` that import cleanly (and of their public classes, functions and
methods), in sorted order, packed into ``--docs`` documents of ``--doc-chars`` characters each.

Isolation: everything runs in a scratch database on the project's PostgreSQL server (default
``bench_ingestion``, created and migrated at start, dropped at the end unless ``--keep``); uploaded
files go to a temporary MEDIA_ROOT. The tables are truncated before every run, so each run starts
with empty HNSW indexes. Each run gets a new ``LLMClient(configure_from_env=False, recorders=[])``
(no request log: accounting is measured by bench_logging.py) with its own empty ``LocMemCache``,
so the per-text embedding cache never turns a later run into cache hits (checked: every run
must make as many embedding calls as ceil(chunks / EMBED_BATCH) per document and every chunk
is embedded, never served from the cache).

A last table times ``LocalEmbedder.embed()`` alone on a sample of the pipeline's MiniLM chunks
at several ONNX batch sizes: what a 64-chunk ``generate_embedding`` call runs (batches of
``DEFAULT_BATCH_SIZE``) against what one chunk per call runs (batches of one).

    .venv/bin/python bench/bench_ingestion.py [--docs 20] [--doc-chars 26000] [--rounds-local 2]
        [--rounds-remote 1] [--latency 0.2] [--jitter 0.3] [--ms-per-1k-tokens 0]
        [--embedder-batches 1,4,8,16,32] [--skip-local | --skip-remote] [--keep] [--db bench_ingestion]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import io
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_ENV", "development")

import psycopg
from _setup import setup_django, table
from psycopg import sql

LOCAL_MODEL = "local/all-minilm-l6-v2"
REMOTE_MODEL = "text-embedding-3-small"
#: Importing these has side effects (opens a web browser, prints the Zen of Python).
SIDE_EFFECT_MODULES = {"antigravity", "this"}


# -- the scratch database (before Django starts, so that "default" points at it) ----------------


def scratch_database(name: str) -> tuple[str, str]:
    """(maintenance URL, scratch URL): the project's server, with a fresh database ``name`` on it."""
    from config.database import database_url
    from config.env import load_env

    base = database_url(load_env())  # starts the embedded server if needed
    parts = urlsplit(base)
    if parts.path.lstrip("/") == name:
        sys.exit(f"--db {name} is the project's own database; pick another name")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    load_env.cache_clear()
    return base, os.environ["DATABASE_URL"]


def drop_database(base: str, name: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- the corpus ---------------------------------------------------------------------------------


def _import_quietly(name: str):
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _own(member, module_name: str) -> bool:
    owner = getattr(member, "__module__", None) or module_name
    return owner == module_name or owner.startswith(module_name + ".") or owner == "_" + module_name


def stdlib_module_texts() -> list[tuple[str, str]]:
    """(module, text) for every top-level stdlib module that imports cleanly, sorted by name.

    The text is the module's docstring and those of its public classes and functions (defined in
    the module, not re-exported) and of the classes' methods, each docstring once.
    """
    seen: set[str] = set()
    texts = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SIDE_EFFECT_MODULES:
            continue
        try:
            module = _import_quietly(name)
        except Exception:  # Windows-only modules, missing optional C libraries
            continue
        parts: list[str] = []

        def add(title: str, doc: str | None) -> None:
            doc = inspect.cleandoc(doc) if doc else ""
            if len(doc) >= 40 and doc not in seen:
                seen.add(doc)
                parts.append(f"{title}\n\n{doc}")

        add(name, inspect.getdoc(module))
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            if attr.startswith("_"):
                continue
            member = getattr(module, attr, None)
            if not (inspect.isclass(member) or inspect.isfunction(member) or inspect.isbuiltin(member)):
                continue
            if not _own(member, name):
                continue
            add(f"{name}.{attr}", getattr(member, "__doc__", None))
            if inspect.isclass(member):
                for meth_name, meth in sorted(vars(member).items()):
                    if meth_name.startswith("_") or not callable(meth):
                        continue
                    add(f"{name}.{attr}.{meth_name}", getattr(meth, "__doc__", None))
        if parts:
            texts.append((name, "\n\n\n".join(parts)))
    return texts


def build_documents(count: int, chars: int) -> list[tuple[str, bytes]]:
    """(file name, UTF-8 text) of ``count`` documents of about ``chars`` characters, in a fixed order."""
    documents: list[tuple[str, bytes]] = []
    current: list[str] = []
    size = 0
    for module, text in stdlib_module_texts():
        current.append(text)
        size += len(text)
        if size >= chars:
            first = current[0].split("\n", 1)[0]
            documents.append((f"stdlib-{len(documents):02d}-{first}-{module}.txt", "\n\n\n".join(current).encode()))
            current, size = [], 0
            if len(documents) == count:
                break
    return documents


# -- one run --------------------------------------------------------------------------------------


def timed_client_class():
    from apps.llm.client import LLMClient

    class TimedClient(LLMClient):
        """The real client, counting the time spent in ``generate_embedding`` (what the pipeline waits on)."""

        embed_seconds = 0.0
        embed_calls = 0
        texts = 0
        cached_calls = 0

        def generate_embedding(self, text, *args, **kwargs):
            started = time.perf_counter()
            try:
                response = super().generate_embedding(text, *args, **kwargs)
            finally:
                self.embed_seconds += time.perf_counter() - started
                self.embed_calls += 1
            self.texts += 1 if isinstance(text, str) else len(text)
            self.cached_calls += response.cached
            return response

    return TimedClient


def make_client(remote_url: str | None):
    from django.core.cache.backends.locmem import LocMemCache

    # A new LocMemCache name is a new, empty cache: no run ever hits the previous run's embeddings.
    cache = LocMemCache(f"bench-ingestion-{uuid.uuid4().hex}", {"MAX_ENTRIES": 1_000_000, "TIMEOUT": 3600})
    options = {"apikey_openai": "sk-bench", "openai_base_url": remote_url} if remote_url else {}
    return timed_client_class()(configure_from_env=False, cache_backend=cache, recorders=[], **options)


def run(
    model: str, batch: int, documents: list[tuple[str, bytes]], remote_url: str | None, base_knowledge: dict
) -> dict:
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.db import connection

    from apps.knowledge.models import Chunk, Document
    from apps.knowledge.pipeline import process_document

    with connection.cursor() as cursor:  # empty tables, empty HNSW indexes
        cursor.execute("TRUNCATE knowledge_chunk, knowledge_document RESTART IDENTITY CASCADE")
    run_id = uuid.uuid4().hex
    ids = []
    for name, data in documents:
        document = Document(
            title=name,
            content_hash=hashlib.sha256(run_id.encode() + data).hexdigest(),
            size=len(data),
            mime_type="text/plain",
        )
        document.file.save(name, ContentFile(data), save=False)
        document.save()
        ids.append(document.pk)

    settings.KNOWLEDGE = {**base_knowledge, "EMBEDDING_MODEL": model, "EMBED_BATCH": batch}
    client = make_client(remote_url)
    client.generate_embedding(["warm-up: model, tokenizer and connection"], model=model, cache=False)
    client.embed_seconds, client.embed_calls, client.texts, client.cached_calls = 0.0, 0, 0, 0

    started = time.perf_counter()
    for pk in ids:
        done = process_document(pk, client=client)
        if done is None or done.status != Document.Status.READY:
            sys.exit(f"document {pk} was not processed: {done and done.status} {done and done.error_message}")
    seconds = time.perf_counter() - started

    chunks = Chunk.objects.filter(embedding_model=model).count()
    per_doc = list(Document.objects.values_list("chunk_count", flat=True))
    expected_calls = sum(math.ceil(n / batch) for n in per_doc)
    if sum(per_doc) != chunks or client.texts != chunks or client.embed_calls != expected_calls or client.cached_calls:
        sys.exit(
            f"unexpected run: {chunks} chunks, {client.texts} texts embedded in {client.embed_calls} calls "
            f"(expected {expected_calls}), {client.cached_calls} cache hits"
        )
    return {
        "model": model,
        "batch": batch,
        "docs": len(ids),
        "chunks": chunks,
        "seconds": seconds,
        "embed_seconds": client.embed_seconds,
        "calls": client.embed_calls,
    }


def latency_knob(median: float, sigma: float, ms_per_1k_tokens: float):
    from apps.llm.testing.simulator import lognormal_latency

    base = lognormal_latency(median, sigma, seed=1)
    if not ms_per_1k_tokens:
        return base

    def latency(request) -> float:
        inputs = (request.json or {}).get("input") if isinstance(request.json, dict) else None
        texts = [inputs] if isinstance(inputs, str) else [t for t in inputs or [] if isinstance(t, str)]
        tokens = sum(len(t) for t in texts) / 4  # the simulator's own estimate
        return base(request) + tokens / 1000 * ms_per_1k_tokens / 1000

    return latency


def measure(model: str, rounds: int, documents, remote_url, base_knowledge, log) -> dict[int, list[dict]]:
    results: dict[int, list[dict]] = {64: [], 1: []}
    for r in range(rounds):
        for batch in (64, 1) if r % 2 == 0 else (1, 64):
            result = run(model, batch, documents, remote_url, base_knowledge)
            results[batch].append(result)
            log(
                f"  round {r + 1} {model} EMBED_BATCH={batch:<3}: {result['chunks']} chunks in "
                f"{result['seconds']:.1f} s ({result['chunks'] / result['seconds']:.1f} chunks/s, "
                f"{result['calls']} embedding calls)"
            )
    return results


def embedder_batches(sizes: list[int], sample_size: int, reps: int) -> list[list[object]]:
    """``LocalEmbedder.embed`` alone on the pipeline's own MiniLM chunks, by internal batch size.

    Explains the local rows: one ``generate_embedding`` call of 64 chunks is one ``embed()``
    that runs ONNX in batches of ``DEFAULT_BATCH_SIZE`` texts; one chunk per call runs batches of one.
    """
    from apps.knowledge.models import Chunk
    from apps.llm.transport.local_embeddings import DEFAULT_BATCH_SIZE, get_local_embedder

    texts = list(
        Chunk.objects.filter(embedding_model=LOCAL_MODEL)
        .order_by("document_id", "index")
        .values_list("text", flat=True)
    )
    sample = texts[:: max(1, len(texts) // sample_size)][:sample_size]
    embedder = get_local_embedder(LOCAL_MODEL)
    tokens = [embedder.count_tokens(t) for t in sample]
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for rep in range(reps):
        for size in sizes if rep % 2 == 0 else sizes[::-1]:
            started = time.perf_counter()
            embedder.embed(sample, batch_size=size)
            rates[size].append(len(sample) / (time.perf_counter() - started))
    best = max(statistics.median(r) for r in rates.values())
    return [
        [
            f"{size}{' (DEFAULT_BATCH_SIZE)' if size == DEFAULT_BATCH_SIZE else ''}",
            len(sample),
            f"{statistics.fmean(tokens):.0f}",
            statistics.median(rates[size]),
            statistics.median(rates[size]) / best,
        ]
        for size in sizes
    ]


def rows_for(label: str, results: dict[int, list[dict]]) -> list[list[object]]:
    rows = []
    rate = {}
    for batch in (64, 1):
        runs = results[batch]
        if not runs:
            continue
        chunks, seconds = sum(r["chunks"] for r in runs), sum(r["seconds"] for r in runs)
        embed = sum(r["embed_seconds"] for r in runs)
        rate[batch] = chunks / seconds
        per_run = [r["chunks"] / r["seconds"] for r in runs]
        rows.append(
            [
                label,
                batch,
                len(runs),
                runs[0]["docs"],
                runs[0]["chunks"],
                runs[0]["calls"],
                seconds / len(runs),
                rate[batch],
                f"{min(per_run):.1f}-{max(per_run):.1f}",
                f"{embed / seconds:.0%}",
                (seconds - embed) / chunks * 1000,
                "",
            ]
        )
    if 1 in rate and 64 in rate:
        rows[0][-1] = f"{rate[64] / rate[1]:.2f}x"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--doc-chars", type=int, default=26_000, help="characters per document (about)")
    parser.add_argument("--rounds-local", type=int, default=2)
    parser.add_argument("--rounds-remote", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.2, help="median seconds per embeddings request")
    parser.add_argument("--jitter", type=float, default=0.3, help="lognormal sigma of the latency")
    parser.add_argument(
        "--ms-per-1k-tokens",
        type=float,
        default=0.0,
        help="extra latency per 1,000 input tokens of a request (0: size-independent)",
    )
    parser.add_argument(
        "--embedder-batches",
        default="1,4,8,16,32",
        help="ONNX batch sizes for the LocalEmbedder diagnostic ('' to skip)",
    )
    parser.add_argument("--embedder-sample", type=int, default=96, help="chunks in that diagnostic")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-remote", action="store_true")
    parser.add_argument("--db", default="bench_ingestion")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    base, _ = scratch_database(args.db)
    try:
        setup_django()
        from django.conf import settings
        from django.test import override_settings

        from apps.llm.testing.simulator import OpenAISimulator

        base_knowledge = dict(settings.KNOWLEDGE)
        started = time.perf_counter()
        documents = build_documents(args.docs, args.doc_chars)
        corpus_seconds = time.perf_counter() - started
        total_chars = sum(len(d.decode()) for _, d in documents)
        print(
            f"corpus     {len(documents)} documents, {total_chars:,} characters of stdlib docstrings "
            f"({documents[0][0]} .. {documents[-1][0]}; built in {corpus_seconds:.1f} s)"
        )
        print(
            f"settings   CHUNK_TOKENS={base_knowledge['CHUNK_TOKENS']} (MiniLM: capped at 256), "
            f"CHUNK_OVERLAP={base_knowledge['CHUNK_OVERLAP']}; database {args.db} (scratch), "
            f"client: LocMemCache per run, recorders=[]"
        )
        print(
            f"remote     OpenAISimulator, {REMOTE_MODEL}, lognormal latency median {args.latency * 1000:.0f} ms "
            f"sigma {args.jitter}"
            + (f" + {args.ms_per_1k_tokens} ms per 1k tokens" if args.ms_per_1k_tokens else "")
            + f"; machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print()

        rows, diagnostic = [], []
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            if not args.skip_local:
                results = measure(LOCAL_MODEL, args.rounds_local, documents, None, base_knowledge, print)
                rows += rows_for("local MiniLM", results)
                if args.embedder_batches:
                    sizes = [int(x) for x in args.embedder_batches.split(",")]
                    diagnostic = embedder_batches(sizes, args.embedder_sample, reps=3)
            if not args.skip_remote:
                latency = latency_knob(args.latency, args.jitter, args.ms_per_1k_tokens)
                with OpenAISimulator(latency=latency, keep_requests=100) as sim:
                    results = measure(REMOTE_MODEL, args.rounds_remote, documents, sim.base_url, base_knowledge, print)
                rows += rows_for("simulated OpenAI", results)
        print(
            "\nIngestion throughput: process_document over the same documents "
            "(seconds and chunks/s per run; embed = time inside generate_embedding)\n"
        )
        print(
            table(
                [
                    "embedding",
                    "EMBED_BATCH",
                    "runs",
                    "docs",
                    "chunks",
                    "calls",
                    "s/run",
                    "chunks/s",
                    "range",
                    "embed share",
                    "other ms/chunk",
                    "batched/per-chunk",
                ],
                rows,
            )
        )
        if diagnostic:
            print(
                "\nLocalEmbedder.embed() alone on a sample of the pipeline's MiniLM chunks, by the ONNX batch size "
                "it runs (median of 3 interleaved passes)\n"
            )
            print(table(["ONNX batch size", "chunks", "mean tokens", "chunks/s", "vs best"], diagnostic))
    finally:
        if args.keep:
            print(f"\nkept the scratch database {args.db}")
        else:
            drop_database(base, args.db)


if __name__ == "__main__":
    main()
