"""HNSW search latency and recall@10 against exact search, at ~100k chunks of real text.

1. Corpus: the docstrings of the installed standard library and of the packages in the
   virtualenv's site-packages, read with ``ast`` from the source files (nothing is imported),
   walked in sorted order, split into paragraphs and sentences; distinct sentences of 20-600
   characters. About 200 evenly spaced sentences are held out as queries (never in the corpus);
   the first ``--chunks`` of the others are the corpus.
2. Embedding with the local MiniLM model (``get_local_embedder``: the pipeline's own embedder,
   384 dims), sorted by length so batches carry little padding. The vectors are cached in
   ``var/bench/search-<fingerprint>.npy`` (with the texts in a ``.json``), keyed by the list of
   source files and the sizes asked for, so re-runs skip the embedding; the time it took is kept
   with them and printed.
3. A scratch database on the project's PostgreSQL server (default ``bench_search``: created and
   migrated; dropped at the end unless ``--keep``; a kept one with the same fingerprint is reused
   as is). Documents (one per source file) and chunks are loaded with binary COPY (a NUL or
   lone surrogate in a text is stored backslash-escaped, the vector is the original's) with the
   model's partial HNSW index dropped, then the index is rebuilt from its own definition
   (``pg_get_indexdef``, i.e. exactly what the migration creates) with
   ``maintenance_work_mem = 1GB`` and ``max_parallel_maintenance_workers = 2``; the build time,
   and with ``--build-compare`` the build time with the server's defaults, are reported.
4. Ground truth: the exact top-10 by cosine distance, by brute force in numpy over the same
   float32 vectors; on a sample it is checked against PostgreSQL's own exact answer (a
   sequential scan: ``SET LOCAL enable_indexscan = off``, plan checked), whose latency is
   reported too. Recall@10 counts a returned chunk as correct when its exact distance is within
   1e-6 of the 10th exact distance (MiniLM lower-cases, so distinct texts can share a vector).
5. HNSW search exactly as ``retrieve()`` does it: in a transaction, ``set_config('hnsw.ef_search',
   ef, true)`` then ``list(nearest_chunks(vector, model, k=10))``, with the query vector
   precomputed (so only the database search and the ORM are timed), for several ef_search values,
   interleaved in rotating order per query, ``--reps`` times; plus the same compiled SQL through a
   bare cursor (no ORM) at the default ef_search. Then the full ``search()`` (query embedding
   included; a ``DummyCache`` so every query is embedded) at the default and recommended ef_search.
6. The ``EXPLAIN (ANALYZE, BUFFERS)`` of one search, to show the HNSW index is used.

Target: recall@10 >= 0.95 with p50 < 10 ms at 100k chunks.

    .venv/bin/python bench/bench_search.py [--chunks 100000] [--queries 200] [--ef 10,20,40,60,80,120,160]
        [--reps 3] [--keep] [--rebuild] [--build-compare] [--db bench_search]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import statistics
import sys
import sysconfig
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_ENV", "development")

import numpy as np
import psycopg
from _setup import ROOT, percentile, setup_django, table
from psycopg import sql

LOCAL_MODEL = "local/all-minilm-l6-v2"
INDEX = "knowledge_hnsw_minilm"
DIMS = 384
K = 10
CACHE_DIR = ROOT / "var" / "bench"
CORPUS_VERSION = "search-corpus-v1"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
TIE_EPS = 1e-6


def log(message: str) -> None:
    print(message, flush=True)


# -- corpus ---------------------------------------------------------------------------------------


def source_files() -> list[tuple[str, Path]]:
    """(label, path) of every .py file of the stdlib and the venv's site-packages, sorted."""
    paths = sysconfig.get_paths()
    roots = [("stdlib", Path(paths["stdlib"])), ("site-packages", Path(paths["purelib"]))]
    files = []
    for label, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            # The base interpreter's own site-packages is not this project's.
            dirnames[:] = sorted(
                d for d in dirnames if d not in ("__pycache__", "site-packages") and not d.startswith(".")
            )
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = Path(dirpath) / name
                    files.append((f"{label}/{path.relative_to(root)}", path))
    return files


def fingerprint(files: list[tuple[str, Path]], chunks: int, queries: int) -> str:
    digest = hashlib.sha256(f"{CORPUS_VERSION}:{chunks}:{queries}:{LOCAL_MODEL}".encode())
    for label, path in files:
        digest.update(f"{label}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def docstring_sentences(files: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """(source, sentence) for every distinct prose sentence of every docstring, in a fixed order."""
    seen: set[str] = set()
    out = []
    for label, path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, RecursionError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            # Paragraphs, not lines: docstrings wrap sentences. Doctests and indented code are not prose.
            for paragraph in doc.split("\n\n"):
                if paragraph.lstrip().startswith(">>>") or paragraph.startswith((" ", "\t")):
                    continue
                for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                    if 20 <= len(sentence) <= 600 and sentence[0].isalpha() and sentence not in seen:
                        seen.add(sentence)
                        out.append((label, sentence))
    return out


def load_corpus(chunks: int, queries: int) -> dict:
    """The corpus, the queries and their vectors: from var/bench/ if cached, else built and embedded."""
    started = time.perf_counter()
    files = source_files()
    fp = fingerprint(files, chunks, queries)
    meta_path = CACHE_DIR / f"search-{fp}.json"
    vectors_path = CACHE_DIR / f"search-{fp}.npy"
    queries_path = CACHE_DIR / f"search-{fp}-queries.npy"
    if meta_path.exists() and vectors_path.exists() and queries_path.exists():
        corpus = json.loads(meta_path.read_text())
        corpus["vectors"] = np.load(vectors_path)
        corpus["query_vectors"] = np.load(queries_path)
        corpus["cached"] = True
        log(f"corpus     cached in {meta_path.relative_to(ROOT)} (loaded in {time.perf_counter() - started:.1f} s)")
        return corpus

    log(f"corpus     parsing docstrings of {len(files)} source files ...")
    sentences = docstring_sentences(files)
    parse_seconds = time.perf_counter() - started
    step = max(1, len(sentences) // queries)
    held_out = set(range(step // 2, len(sentences), step)[:queries])
    query_texts = [sentences[i][1] for i in sorted(held_out)]
    kept = [s for i, s in enumerate(sentences) if i not in held_out][:chunks]
    log(
        f"corpus     {len(sentences)} distinct sentences in {parse_seconds:.1f} s: {len(kept)} chunks, "
        f"{len(query_texts)} held-out queries"
    )
    if len(kept) < chunks:
        log(f"corpus     only {len(kept)} chunks available (asked for {chunks})")

    from apps.llm.transport.local_embeddings import get_local_embedder

    embedder = get_local_embedder(LOCAL_MODEL).load()
    texts = [t for _, t in kept]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), DIMS), np.float32)
    token_counts = [0] * len(texts)
    started = time.perf_counter()
    slice_size = 4096
    for first in range(0, len(order), slice_size):
        part = order[first : first + slice_size]
        batch = embedder.embed([texts[i] for i in part], batch_size=32)
        vectors[part] = batch.array
        for i, n in zip(part, batch.token_counts, strict=True):
            token_counts[i] = n
        done = first + len(part)
        elapsed = time.perf_counter() - started
        log(
            f"embedding  {done:>7}/{len(texts)}  {done / elapsed:6.0f} texts/s  "
            f"(eta {elapsed / done * (len(texts) - done):4.0f} s; longest texts last)"
        )
    embed_seconds = time.perf_counter() - started
    query_started = time.perf_counter()
    query_vectors = embedder.embed(query_texts, batch_size=32).array
    query_seconds = time.perf_counter() - query_started

    corpus = {
        "fingerprint": fp,
        "sources": [s for s, _ in kept],
        "texts": texts,
        "token_counts": token_counts,
        "queries": query_texts,
        "embed_seconds": embed_seconds,
        "query_embed_seconds": query_seconds,
        "parse_seconds": parse_seconds,
        "cpus": os.cpu_count(),
        "threads": embedder.intra_op_num_threads,
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for path, array in ((vectors_path, vectors), (queries_path, query_vectors)):
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        tmp.replace(path)
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(corpus))
    tmp.replace(meta_path)
    corpus.update(vectors=vectors, query_vectors=query_vectors, cached=False)
    return corpus


# -- scratch database -----------------------------------------------------------------------------


def scratch_database(name: str, fp: str, rebuild: bool) -> tuple[str, str, bool]:
    """(maintenance URL, scratch URL, reused): a kept database with the same corpus is reused."""
    from config.database import database_url
    from config.env import load_env

    base = database_url(load_env())
    parts = urlsplit(base)
    if parts.path.lstrip("/") == name:
        sys.exit(f"--db {name} is the project's own database; pick another name")
    scratch = urlunsplit(parts._replace(path=f"/{name}"))
    reused = False
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not rebuild:
            try:
                with psycopg.connect(scratch) as db:
                    row = db.execute("SELECT fingerprint FROM bench_meta").fetchone()
                reused = row is not None and row[0] == fp
            except psycopg.Error:
                reused = False
        if not reused:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = scratch
    load_env.cache_clear()
    return base, scratch, reused


def drop_database(base: str, name: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL and lone surrogates (from docstring escapes) escaped."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def load_chunks(url: str, corpus: dict) -> tuple[str, float]:
    """COPY documents and chunks (index dropped); returns the index definition and the seconds taken."""
    from pgvector.psycopg import register_vector

    sources, texts, counts, vectors = corpus["sources"], corpus["texts"], corpus["token_counts"], corpus["vectors"]
    doc_ids: dict[str, int] = {}
    for source in sources:
        doc_ids.setdefault(source, len(doc_ids) + 1)
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        register_vector(conn)
        indexdef = conn.execute("SELECT pg_get_indexdef(%s::regclass)", [INDEX]).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(INDEX)))
        conn.execute("TRUNCATE knowledge_chunk, knowledge_document RESTART IDENTITY CASCADE")
        counts_per_doc: dict[int, int] = {}
        for source in sources:
            counts_per_doc[doc_ids[source]] = counts_per_doc.get(doc_ids[source], 0) + 1
        with conn.cursor() as cur:
            with cur.copy(
                "COPY knowledge_document (id, title, file, content_hash, mime_type, size, status, "
                "error_message, warnings, chunk_count, chunks_done, token_count, embedding_model, "
                "attempts, created_at, updated_at, processed_at) FROM STDIN"
            ) as copy:
                for source, pk in doc_ids.items():
                    copy.write_row(
                        [
                            pk,
                            source[:255],
                            source[-100:],
                            hashlib.sha256(source.encode()).hexdigest(),
                            "text/x-python",
                            0,
                            "ready",
                            "",
                            "[]",
                            counts_per_doc[pk],
                            counts_per_doc[pk],
                            0,
                            LOCAL_MODEL,
                            1,
                            "now",
                            "now",
                            "now",
                        ]
                    )
            positions: dict[int, int] = {}
            with cur.copy(
                "COPY knowledge_chunk (id, document_id, index, text, token_count, start_char, end_char, "
                "embedding_model, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "int4", "text", "int4", "int4", "int4", "varchar", "vector"])
                for i, (source, text) in enumerate(zip(sources, texts, strict=True)):
                    doc = doc_ids[source]
                    index = positions[doc] = positions.get(doc, -1) + 1
                    copy.write_row(
                        [i + 1, doc, index, storable(text), counts[i], 0, len(text), LOCAL_MODEL, vectors[i]]
                    )
            for table_name in ("knowledge_document", "knowledge_chunk"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), (SELECT max(id) FROM {table_name}))"
                )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE knowledge_document")
        conn.execute("VACUUM ANALYZE knowledge_chunk")
    return indexdef, time.perf_counter() - started


def build_index(url: str, indexdef: str, settings_sql: list[str]) -> tuple[float, list[str]]:
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(INDEX)))
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        for statement in settings_sql:
            conn.execute(statement)
        started = time.perf_counter()
        conn.execute(indexdef)
        seconds = time.perf_counter() - started
        conn.execute("ANALYZE knowledge_chunk")
    return seconds, notices


# -- searching ------------------------------------------------------------------------------------


def exact_top(query_vectors: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-K chunk ids per query (best first), and each query's distances to every chunk."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    ids, dists = [], []
    for q in query_vectors.astype(np.float64):
        distance = 1.0 - (vectors @ q.astype(np.float32)).astype(np.float64) / (norms * np.linalg.norm(q))
        top = np.argpartition(distance, K)[:K]
        top = top[np.argsort(distance[top], kind="stable")]
        ids.append(top + 1)  # chunk ids are row + 1
        dists.append(distance.astype(np.float32))
    return np.array(ids), np.array(dists)


def recall(returned: list[int], distances: np.ndarray) -> float:
    """Share of ``returned`` within the exact top-K (ties at the K-th distance count as correct)."""
    kth = np.partition(distances, K - 1)[K - 1]
    return sum(distances[i - 1] <= kth + TIE_EPS for i in returned[:K]) / K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="10,20,40,60,80,120,160", help="ef_search values, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--exact-db-queries", type=int, default=20, help="queries checked against a seq scan")
    parser.add_argument("--full-search-queries", type=int, default=200, help="queries timed through search()")
    parser.add_argument("--build-workers", type=int, default=2, help="max_parallel_maintenance_workers")
    parser.add_argument(
        "--build-compare", action="store_true", help="also time a build with the server's default maintenance settings"
    )
    parser.add_argument("--db", default="bench_search")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database for re-runs")
    parser.add_argument("--rebuild", action="store_true", help="reload and re-index a kept database")
    args = parser.parse_args()
    efs = [int(x) for x in args.ef.split(",")]

    from config.env import load_env

    load_env()  # fail early on a bad environment
    corpus = load_corpus(args.chunks, args.queries)
    n, nq = len(corpus["texts"]), len(corpus["queries"])
    tokens = corpus["token_counts"]
    log(
        f"corpus     {n} chunks from {len(set(corpus['sources']))} source files (stdlib + site-packages), "
        f"{sum(tokens):,} word pieces (mean {sum(tokens) / n:.1f}), {nq} held-out queries"
    )
    log(
        f"embedding  {n} chunks took {corpus['embed_seconds']:.0f} s ({n / corpus['embed_seconds']:.0f} chunks/s, "
        f"{corpus['threads']} threads on {corpus['cpus']} CPUs"
        f"{', cached: not re-embedded' if corpus['cached'] else ''})"
    )

    base, url, reused = scratch_database(args.db, corpus["fingerprint"], args.rebuild)
    try:
        setup_django()
        run(args, corpus, efs, url, reused)
    finally:
        if args.keep:
            log(f"\nkept the scratch database {args.db} (re-runs reuse it)")
        else:
            drop_database(base, args.db)


def run(args, corpus: dict, efs: list[int], url: str, reused: bool) -> None:
    from django.conf import settings
    from django.core.cache.backends.dummy import DummyCache
    from django.db import connection, transaction

    from apps.knowledge.embedding_models import embedding_model
    from apps.knowledge.search import nearest_chunks, search
    from apps.llm.client import LLMClient

    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": LOCAL_MODEL}
    default_ef = settings.KNOWLEDGE["EF_SEARCH"]
    model = embedding_model(LOCAL_MODEL)
    n = len(corpus["texts"])

    with psycopg.connect(url, autocommit=True) as conn:
        server = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM unnest(ARRAY['shared_buffers', "
                "'maintenance_work_mem', 'max_parallel_maintenance_workers', 'work_mem', "
                "'jit']) AS name"
            ).fetchall()
        )
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    log(f"server     pgvector {version}; " + ", ".join(f"{k}={v}" for k, v in server.items()))

    if reused:
        log(f"database   {args.db}: reused (same corpus, loaded and indexed earlier)")
    else:
        indexdef, load_seconds = load_chunks(url, corpus)
        log(f"load       COPY (binary) of {n} chunks + VACUUM ANALYZE: {load_seconds:.1f} s")
        log(f"index      {indexdef}")
        if args.build_compare:
            seconds, notices = build_index(
                url, indexdef, ["RESET maintenance_work_mem", "RESET max_parallel_maintenance_workers"]
            )
            log(
                f"build      server defaults (maintenance_work_mem={server['maintenance_work_mem']}, "
                f"max_parallel_maintenance_workers={server['max_parallel_maintenance_workers']}): "
                f"{seconds:.1f} s" + "".join(f"\n           NOTICE: {m}" for m in notices)
            )
        seconds, notices = build_index(
            url,
            indexdef,
            ["SET maintenance_work_mem = '1GB'", f"SET max_parallel_maintenance_workers = {args.build_workers}"],
        )
        log(
            f"build      maintenance_work_mem=1GB, max_parallel_maintenance_workers={args.build_workers}: "
            f"{seconds:.1f} s" + "".join(f"\n           NOTICE: {m}" for m in notices)
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_meta (fingerprint text)")
            conn.execute("INSERT INTO bench_meta VALUES (%s)", [corpus["fingerprint"]])
    with psycopg.connect(url, autocommit=True) as conn:
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('knowledge_chunk')), "
            "pg_size_pretty(pg_relation_size(%s::regclass)), count(*) FROM knowledge_chunk",
            [INDEX],
        ).fetchone()
    log(f"sizes      knowledge_chunk {sizes[0]} in all, HNSW index {sizes[1]}, {sizes[2]} rows")

    vectors, query_vectors = corpus["vectors"], corpus["query_vectors"]
    started = time.perf_counter()
    _exact_ids, exact_dist = exact_top(query_vectors, vectors)
    ties = sum(int(np.sum(d <= np.partition(d, K - 1)[K - 1] + TIE_EPS)) > K for d in exact_dist)
    log(
        f"exact      numpy brute force for {len(query_vectors)} queries: {time.perf_counter() - started:.1f} s "
        f"({ties} queries have more than {K} chunks tied at the {K}th distance)"
    )
    queries = [v.tolist() for v in query_vectors]  # what retrieve() gets from the client: list[float]

    def hnsw(vector: list[float], ef: int) -> list[int]:
        # Exactly what retrieve() does around the query.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
            rows = list(nearest_chunks(vector, model, k=K))
        return [c.pk for c in rows]

    # The same statement, compiled once, through a bare cursor: what the ORM adds.
    statement, params = nearest_chunks(queries[0], model, k=K).query.sql_with_params()
    vector_param = next(i for i, p in enumerate(params) if isinstance(p, str) and p.startswith("["))
    literals = [f"[{','.join(str(np.float32(x)) for x in v)}]" for v in query_vectors]

    def raw(i: int, ef: int) -> list[int]:
        bound = list(params)
        bound[vector_param] = literals[i]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
            cursor.execute(statement, bound)
            return [row[0] for row in cursor.fetchall()]

    # Exact answers from PostgreSQL itself on a sample: the index disabled, so a sequential scan.
    def exact_db(vector: list[float]) -> tuple[list[int], str]:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            qs = nearest_chunks(vector, model, k=K)
            s, p = qs.query.sql_with_params()
            cursor.execute("EXPLAIN (COSTS OFF) " + s, p)
            plan = "\n".join(r[0] for r in cursor.fetchall())
            return [c.pk for c in qs], plan

    sample = range(0, len(queries), max(1, len(queries) // args.exact_db_queries))[: args.exact_db_queries]
    agree, exact_times, plan = 0, [], ""
    for i in sample:
        t = time.perf_counter()
        ids, plan = exact_db(queries[i])
        exact_times.append(time.perf_counter() - t)
        agree += recall(ids, exact_dist[i]) == 1.0
    seq = "Seq Scan" in plan and INDEX not in plan
    log(
        f"exact db   {agree}/{len(sample)} sample queries: PostgreSQL's sequential scan (plan: "
        f"{'Seq Scan, no index' if seq else 'UNEXPECTED: ' + plan}) returns the numpy top-{K}; "
        f"its latency p50 {statistics.median(exact_times) * 1000:.0f} ms, "
        f"p95 {percentile(exact_times, 0.95) * 1000:.0f} ms"
    )

    # Warm-up: the index and heap pages into the caches, the ORM's code paths hot.
    for v in queries:
        hnsw(v, max(efs))

    variants = [("nearest_chunks", ef) for ef in efs] + [("bare cursor", default_ef)]
    times: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    recalls: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    log(f"\ntiming     {len(variants)} variants x {len(queries)} queries x {args.reps} reps, interleaved ...")
    for rep in range(args.reps):
        for i, vector in enumerate(queries):
            shift = (i + rep) % len(variants)
            for kind, ef in variants[shift:] + variants[:shift]:
                t = time.perf_counter()
                ids = hnsw(vector, ef) if kind == "nearest_chunks" else raw(i, ef)
                times[(kind, ef)].append(time.perf_counter() - t)
                if rep == 0:
                    recalls[(kind, ef)].append(recall(ids, exact_dist[i]))

    rows = []
    for kind, ef in variants:
        ts, rs = times[(kind, ef)], recalls[(kind, ef)]
        p50, p95 = statistics.median(ts) * 1000, percentile(ts, 0.95) * 1000
        mean = statistics.fmean(rs)
        half = 1.96 * statistics.stdev(rs) / len(rs) ** 0.5 if len(rs) > 1 else 0.0
        meets = "yes" if mean >= 0.95 and p50 < 10 else "no"
        note = " (default)" if ef == default_ef else ""
        rows.append(
            [
                kind,
                f"{ef}{note}",
                p50,
                p95,
                mean,
                f"{mean - half:.3f}-{mean + half:.3f}",
                min(rs),
                f"{sum(r == 1.0 for r in rs) / len(rs):.0%}",
                meets,
            ]
        )
    log(
        f"\nHNSW search, {n} chunks, k={K}, {len(queries)} held-out queries "
        f"(latency: {args.reps} x {len(queries)} searches per row; recall vs exact top-{K})\n"
    )
    log(
        table(
            ["path", "ef_search", "p50 ms", "p95 ms", "recall@10", "95% CI", "min recall", "recall=1", "target met"],
            rows,
        )
    )

    passing = [
        ef
        for kind, ef in variants
        if kind == "nearest_chunks"
        and statistics.fmean(recalls[(kind, ef)]) >= 0.95
        and statistics.median(times[(kind, ef)]) < 0.010
    ]
    chosen = min(passing) if passing else None
    default_recall = statistics.fmean(recalls[("nearest_chunks", default_ef)]) if default_ef in efs else None
    log("")
    if chosen is None:
        log("target     recall@10 >= 0.95 with p50 < 10 ms: not met by any ef_search tried")
    else:
        log(f"target     recall@10 >= 0.95 with p50 < 10 ms: smallest ef_search meeting it = {chosen}")
    if default_recall is not None:
        verdict = "meets" if default_recall >= 0.95 else "does NOT meet"
        log(
            f"default    KNOWLEDGE_EF_SEARCH={default_ef}: recall@10 {default_recall:.3f}, {verdict} the recall target"
            + ("" if default_recall >= 0.95 or chosen is None else f"; use {chosen}")
        )

    # The full search(): the query embedded by the local model (no cache), then the same search.
    client = LLMClient(configure_from_env=False, cache_backend=DummyCache("bench-search", {}), recorders=[])
    texts = corpus["queries"][: args.full_search_queries]
    client.generate_embedding(["warm-up"], model=LOCAL_MODEL)
    full_efs = sorted({default_ef, chosen or max(efs)})
    full: dict[object, list[float]] = {"embed": [], **{ef: [] for ef in full_efs}}
    for i, text in enumerate(texts):
        for what in ["embed", *full_efs] if i % 2 == 0 else [*full_efs, "embed"]:
            t = time.perf_counter()
            if what == "embed":
                client.generate_embedding(text, model=LOCAL_MODEL, feature="knowledge.search")
            else:
                hits = search(text, k=K, model=LOCAL_MODEL, ef_search=what, client=client)
            full[what].append(time.perf_counter() - t)
            if what != "embed" and len(hits) != K:
                sys.exit(f"search() returned {len(hits)} hits")
    rows = [["generate_embedding (query only)", "-", *(x * 1000 for x in summary_pair(full["embed"]))]]
    rows += [["search() (embedding + HNSW + ORM)", ef, *(x * 1000 for x in summary_pair(full[ef]))] for ef in full_efs]
    log(
        f"\nFull search(query): local MiniLM query embedding (DummyCache: never cached) + search, "
        f"{len(texts)} queries each, interleaved\n"
    )
    log(table(["path", "ef_search", "p50 ms", "p95 ms"], rows))

    # The plan of one search, as retrieve() runs it.
    qs = nearest_chunks(queries[0], model, k=K)
    s, p = qs.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(default_ef)])
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + s, p)
        plan = [re.sub(r"'\[[-0-9.,e ]+\]'", f"'[...{DIMS} floats...]'", r[0]) for r in cursor.fetchall()]
    shown = re.sub(
        r"'\[[-0-9.,e ]+\]'", f"'[...{DIMS} floats...]'", s % tuple(f"'{x}'" if isinstance(x, str) else x for x in p)
    )
    log(f"\nEXPLAIN (ANALYZE, BUFFERS) of one search, ef_search={default_ef}:\n\n{shown}\n")
    log("\n".join("  " + line for line in plan))
    used = any(f"Index Scan using {INDEX}" in line for line in plan)
    log(f"\nindex used: {'yes' if used else 'NO'} ({INDEX})")


def summary_pair(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), percentile(values, 0.95)


if __name__ == "__main__":
    main()
