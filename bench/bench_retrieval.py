"""Retrieval quality on a real benchmark (BEIR SciFact, training claims) per search mode, and latency.

1. Corpus: BEIR's SciFact (``/work/shared/reference/scifact/``, see its SOURCES.md): 5,183 scientific
   abstracts. Each becomes one ``.txt`` document, ``title + "\\n\\n" + text`` (as BEIR concatenates
   them), named by its corpus id.
2. Ingestion through the real pipeline, as ``ingest_documents --wait`` does it: ``add_document``
   then ``process_document`` per file (extraction, token chunking, local MiniLM embeddings through
   ``LLMClient``, the chunks stored with their generated ``tsvector``). The only differences: the
   broker is not told (``enqueue_document`` is a no-op here: the documents are processed right here
   anyway) and the client has its own ``LocMemCache`` and no recorder (no request log). The time is
   printed. The scratch database (default ``bench_retrieval``, on the project's PostgreSQL server) is
   dropped at the end unless ``--keep``; ``--reuse`` measures a kept one again without re-ingesting.
3. Quality on the 809 training claims and their relevance judgements (``qrels/train.tsv``; the
   300 test claims are held out and never read): ``search(claim, k=--depth, mode=...)`` per mode,
   at document level (a document ranks by its best chunk, i.e. where its first chunk appears),
   nDCG@10 (binary relevance, as BEIR's pytrec_eval ``ndcg_cut_10``) and recall@100, beside the
   published test-split nDCG@10 of BM25 (0.665) and all-MiniLM-L6-v2 (0.645).
4. Latency of ``search(claim, k=10, mode=...)`` as a caller sees it (query embedding included, a
   ``DummyCache`` so every query is embedded), modes interleaved per claim: p50 and p99.
5. With ``--scale-to N`` (default 100,000; 0 skips): the chunk table is grown to N chunks with
   copies of the SciFact chunks (the same texts, so keyword posting lists grow in proportion; the
   vectors with small Gaussian noise, renormalised) and the latency is measured again.
6. The ``EXPLAIN`` of a keyword query: the GIN index is used.

    .venv/bin/python bench/bench_retrieval.py [--claims 809] [--depth 300] [--latency-claims 200]
        [--scale-to 100000] [--keep] [--reuse] [--db bench_retrieval]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_ENV", "development")

import numpy as np
import psycopg
from _setup import percentile, setup_django, table
from psycopg import sql

SCIFACT = Path("/work/shared/reference/scifact")
LOCAL_MODEL = "local/all-minilm-l6-v2"
MODES = ("vector", "keyword", "hybrid")
#: Published nDCG@10 on SciFact's test split (SOURCES.md).
PUBLISHED = {"BM25 (BEIR, 2021)": 0.665, "all-MiniLM-L6-v2 dense (MTEB)": 0.645}
BENCH_VERSION = "retrieval-v1"


def log(message: str = "") -> None:
    print(message, flush=True)


# -- data -----------------------------------------------------------------------------------------


def load_scifact(root: Path) -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in (root / "corpus.jsonl").open()]
    claims = [json.loads(line) for line in (root / "queries-train.jsonl").open()]
    qrels: dict[str, set[str]] = {}
    with (root / "qrels" / "train.tsv").open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], set()).add(row["corpus-id"])
    return corpus, [c for c in claims if c["_id"] in qrels], qrels


def document_text(doc: dict) -> str:
    return f"{doc['title']}\n\n{doc['text']}"


def fingerprint(root: Path, knowledge: dict) -> str:
    digest = hashlib.sha256(f"{BENCH_VERSION}:{LOCAL_MODEL}".encode())
    digest.update(json.dumps({k: knowledge.get(k) for k in ("CHUNK_TOKENS", "CHUNK_OVERLAP")}).encode())
    digest.update(str((root / "corpus.jsonl").stat().st_size).encode())
    return digest.hexdigest()[:16]


# -- the scratch database (before Django starts, so that "default" points at it) -----------------


def scratch_database(name: str, reuse: bool) -> tuple[str, str, bool]:
    """(maintenance URL, scratch URL, kept one found): the project's server, with database ``name``."""
    from config.database import database_url
    from config.env import load_env

    base = database_url(load_env())  # starts the embedded server if needed
    parts = urlsplit(base)
    if parts.path.lstrip("/") == name:
        sys.exit(f"--db {name} is the project's own database; pick another name")
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if not (reuse and exists):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    load_env.cache_clear()
    return base, os.environ["DATABASE_URL"], reuse and exists


def drop_database(base: str, name: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def kept_ingestion(fp: str) -> dict | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (fingerprint text PRIMARY KEY, facts jsonb NOT NULL)")
        cursor.execute("SELECT facts FROM bench_meta WHERE fingerprint = %s", [fp])
        row = cursor.fetchone()
    if row is None:
        return None
    facts = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return facts


def make_client(cache: str):
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    from apps.llm.client import LLMClient

    backend = (
        DummyCache("bench-retrieval", {})
        if cache == "dummy"
        else LocMemCache(f"bench-retrieval-{uuid.uuid4().hex}", {"MAX_ENTRIES": 1_000_000, "TIMEOUT": 24 * 3600})
    )
    return LLMClient(configure_from_env=False, cache_backend=backend, recorders=[])


# -- ingestion ------------------------------------------------------------------------------------


def ingest(corpus: list[dict], fp: str) -> dict:
    from django.db import connection

    from apps.knowledge.documents import add_document
    from apps.knowledge.models import Chunk, Document
    from apps.knowledge.pipeline import process_document

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (fingerprint text PRIMARY KEY, facts jsonb NOT NULL)")
        cursor.execute("DELETE FROM bench_meta")
        cursor.execute("TRUNCATE knowledge_chunk, knowledge_document RESTART IDENTITY CASCADE")
    client = make_client("locmem")
    client.generate_embedding(["warm-up: model and tokenizer"], model=LOCAL_MODEL, cache=False)
    started = time.perf_counter()
    failed = []
    with mock.patch("apps.knowledge.tasks.enqueue_document"):
        for number, doc in enumerate(corpus, 1):
            document = add_document(name=f"{doc['_id']}.txt", data=document_text(doc).encode())
            done = process_document(document.pk, client=client)
            if done is None or done.status != Document.Status.READY:
                failed.append((doc["_id"], done and done.status, done and done.error_message))
            if number % 500 == 0 or number == len(corpus):
                elapsed = time.perf_counter() - started
                log(f"  ingested {number}/{len(corpus)} documents in {elapsed:.0f} s ({number / elapsed:.1f}/s)")
    seconds = time.perf_counter() - started
    if failed:
        sys.exit(f"{len(failed)} documents failed, e.g. {failed[:3]}")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
        cursor.execute("VACUUM ANALYZE knowledge_document")
    facts = {
        "documents": Document.objects.count(),
        "chunks": Chunk.objects.count(),
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
    }
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_meta VALUES (%s, %s)", [fp, json.dumps(facts)])
    return facts


# -- quality --------------------------------------------------------------------------------------


def ndcg_at(ranked: list[str], relevant: set[str], n: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:n]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(n, len(relevant))))
    return dcg / ideal


def recall_at(ranked: list[str], relevant: set[str], n: int = 100) -> float:
    return len(set(ranked[:n]) & relevant) / len(relevant)


@dataclass(frozen=True)
class Ranked:
    chunk_id: int
    document_id: int


def evaluate(
    claims: list[dict], qrels: dict[str, set[str]], depth: int, client, rrf_ks: list[int], budgets: list[int]
) -> dict[str, dict]:
    """Mean nDCG@10 and recall@100 over ``claims`` (and per claim) of each variant.

    Variants: each mode through ``search()``; ``rrf k=K``: the same vector and keyword lists re-fused
    with another RRF k; ``keyword/hybrid candidates=B``: the keyword ranking with another
    ``KEYWORD_CANDIDATES`` (hybrid: fused with the same vector list at the configured k).
    """
    from apps.knowledge.conf import knowledge_settings
    from apps.knowledge.models import Document
    from apps.knowledge.search import keyword_chunks, reciprocal_rank_fusion, search

    titles = dict(Document.objects.values_list("pk", "title"))
    configured, mismatches = knowledge_settings().rrf_k, 0
    scores: dict[str, dict[str, list[float]]] = {}

    def score(name: str, hits) -> None:
        ranked = list(dict.fromkeys(titles[h.document_id] for h in hits))  # a document ranks by its best chunk
        entry = scores.setdefault(name, {"ndcg": [], "recall": []})
        entry["ndcg"].append(ndcg_at(ranked, relevant))
        entry["recall"].append(recall_at(ranked, relevant))

    for number, claim in enumerate(claims, 1):
        relevant = qrels[claim["_id"]]
        hits = {mode: search(claim["text"], k=depth, mode=mode, client=client) for mode in MODES}
        for mode in MODES:
            score(mode, hits[mode])
        for k in rrf_ks:
            fused = reciprocal_rank_fusion([hits["vector"], hits["keyword"]], k=k, key=attrgetter("chunk_id"))
            score(f"rrf k={k}", [hit for hit, _ in fused[:depth]])
            if k == configured:  # what search() fused must be what this fuses
                mismatches += [h.chunk_id for h, _ in fused[:depth]] != [h.chunk_id for h in hits["hybrid"]]
        for budget in budgets:
            ranking = keyword_chunks(claim["text"], k=depth, candidates=budget)
            keyword = [] if ranking is None else [Ranked(*row) for row in ranking.values_list("pk", "document_id")]
            score(f"keyword candidates={budget}", keyword)
            fused = reciprocal_rank_fusion([hits["vector"], keyword], k=configured, key=attrgetter("chunk_id"))
            score(f"hybrid candidates={budget}", [hit for hit, _ in fused[:depth]])
        if number % 200 == 0 or number == len(claims):
            log(f"  {number}/{len(claims)} claims")
    if mismatches:
        log(f"  note: {mismatches} claims where re-fusing the vector and keyword lists differs from hybrid")
    return {
        name: {
            "ndcg@10": statistics.fmean(v["ndcg"]),
            "recall@100": statistics.fmean(v["recall"]),
            "per_claim": v["ndcg"],
        }
        for name, v in scores.items()
    }


def bootstrap_ci(diff: np.ndarray, rounds: int = 2000, seed: int = 1) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(rounds)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# -- latency --------------------------------------------------------------------------------------


def latency(claims: list[dict], reps: int = 1) -> dict[str, list[float]]:
    """Seconds per ``search(claim, k=10, mode=...)``, modes interleaved in rotating order."""
    from apps.knowledge.search import search

    client = make_client("dummy")  # every query embedded, as a first-time query is
    for mode in MODES:  # warm-up: model, connections, caches
        search("warm-up query about cells", k=10, mode=mode, client=client)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(reps):
        for i, claim in enumerate(claims):
            order = MODES[i % len(MODES) :] + MODES[: i % len(MODES)]
            for mode in order:
                started = time.perf_counter()
                search(claim["text"], k=10, mode=mode, client=client)
                times[mode].append(time.perf_counter() - started)
    return times


def embed_latency(claims: list[dict]) -> list[float]:
    client = make_client("dummy")
    times = []
    for claim in claims:
        started = time.perf_counter()
        client.generate_embedding(claim["text"], model=LOCAL_MODEL, feature="knowledge.search")
        times.append(time.perf_counter() - started)
    return times


def latency_rows(label: str, times: dict[str, list[float]], embed: list[float]) -> list[list[object]]:
    rows = []
    for mode in MODES:
        values = times[mode]
        rows.append(
            [
                label,
                mode,
                len(values),
                statistics.median(values) * 1000,
                percentile(values, 0.99) * 1000,
                statistics.mean(values) * 1000,
            ]
        )
    rows.append(
        [
            label,
            "(query embedding alone)",
            len(embed),
            statistics.median(embed) * 1000,
            percentile(embed, 0.99) * 1000,
            statistics.mean(embed) * 1000,
        ]
    )
    return rows


# -- growing the table ----------------------------------------------------------------------------


def scale_to(url: str, target: int, seed: int = 7) -> tuple[int, float]:
    """Add copies of the SciFact chunks (own documents, noisy vectors) until ``target`` chunks."""
    from pgvector.psycopg import register_vector

    from apps.knowledge.embedding_models import LOCAL_MINILM

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        register_vector(conn)
        have = conn.execute("SELECT count(*) FROM knowledge_chunk").fetchone()[0]
        if have >= target:
            return have, 0.0
        originals = conn.execute(
            "SELECT document_id, index, text, token_count, start_char, end_char, embedding FROM knowledge_chunk "
            "WHERE document_id IN (SELECT id FROM knowledge_document WHERE title NOT LIKE 'copy-%%') ORDER BY id"
        ).fetchall()
        indexdef = conn.execute("SELECT pg_get_indexdef(%s::regclass)", [LOCAL_MINILM.index_name]).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(LOCAL_MINILM.index_name)))
        copy_number = conn.execute("SELECT count(*) FROM knowledge_document WHERE title LIKE 'copy-%%'").fetchone()[0]
        with conn.cursor() as cur:
            while have < target:
                copy_number += 1
                documents: dict[int, int] = {}
                for document_id, *_ in originals:
                    if document_id in documents:
                        continue
                    documents[document_id] = cur.execute(
                        "INSERT INTO knowledge_document (title, file, content_hash, mime_type, size, status, "
                        "error_message, warnings, chunk_count, chunks_done, token_count, embedding_model, attempts, "
                        "created_at, updated_at, processed_at) VALUES (%s, '', %s, 'text/plain', 0, 'ready', '', "
                        "'[]', 0, 0, 0, %s, 1, now(), now(), now()) RETURNING id",
                        [f"copy-{copy_number}-{document_id}", uuid.uuid4().hex, LOCAL_MODEL],
                    ).fetchone()[0]
                batch = originals[: target - have]
                vectors = np.array([np.asarray(row[6].to_list(), dtype=np.float32) for row in batch])
                vectors += rng.normal(0, 0.02, vectors.shape).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                with cur.copy(
                    "COPY knowledge_chunk (document_id, index, text, token_count, start_char, end_char, "
                    "embedding_model, embedding) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "int4", "text", "int4", "int4", "int4", "varchar", "vector"])
                    for row, vector in zip(batch, vectors, strict=True):
                        copy.write_row([documents[row[0]], row[1], row[2], row[3], row[4], row[5], LOCAL_MODEL, vector])
                have += len(batch)
                log(f"  {have} chunks")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute(indexdef)
        conn.execute("VACUUM ANALYZE knowledge_chunk")
        conn.execute("VACUUM ANALYZE knowledge_document")
    return have, time.perf_counter() - started


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=0, help="training claims evaluated (0: all 809)")
    parser.add_argument("--depth", type=int, default=300, help="chunks asked per claim for the quality figures")
    parser.add_argument("--rrf-k", default="10,20,30,60,100", help="RRF k values re-fused for comparison")
    parser.add_argument(
        "--candidates", default="100,200,500,5000", help="KEYWORD_CANDIDATES values compared ('' to skip)"
    )
    parser.add_argument("--latency-claims", type=int, default=200)
    parser.add_argument("--scale-to", type=int, default=100_000, help="chunks for the second latency run (0: skip)")
    parser.add_argument("--db", default="bench_retrieval")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept scratch database (no re-ingestion)")
    parser.add_argument("--ingest-only", action="store_true")
    args = parser.parse_args()

    corpus, claims, qrels = load_scifact(SCIFACT)
    base, url, kept = scratch_database(args.db, args.reuse)
    try:
        setup_django()
        from django.conf import settings

        settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": LOCAL_MODEL}
        from apps.knowledge.conf import knowledge_settings

        config = knowledge_settings()
        fp = fingerprint(SCIFACT, settings.KNOWLEDGE)
        facts = kept_ingestion(fp) if kept else None
        log(
            f"corpus     SciFact: {len(corpus):,} abstracts, {len(claims)} training claims with "
            f"{sum(len(v) for v in qrels.values())} judgements; machine: {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        log(
            f"settings   {LOCAL_MODEL}, CHUNK_TOKENS={config.chunk_tokens} (MiniLM: capped at 256), "
            f"CHUNK_OVERLAP={config.chunk_overlap}, EF_SEARCH={config.ef_search}, "
            f"HYBRID_CANDIDATES={config.hybrid_candidates}, RRF_K={config.rrf_k}; database {args.db} (scratch)"
        )
        if facts is None:
            log("\nIngesting through the pipeline (add_document + process_document, as ingest_documents --wait)")
            with tempfile.TemporaryDirectory() as media:
                settings.MEDIA_ROOT = media
                facts = ingest(corpus, fp)
        else:
            log("\nReusing the kept ingestion")
        log(
            f"ingestion  {facts['documents']:,} documents -> {facts['chunks']:,} chunks in {facts['seconds']:.0f} s "
            f"({facts['documents'] / facts['seconds']:.1f} documents/s, {facts['chunks'] / facts['seconds']:.1f} "
            f"chunks/s; {facts['cpus']} CPUs, load {facts['load']:.1f} at the end)"
        )
        if args.ingest_only:
            return
        from django.db import connection

        from apps.knowledge.embedding_models import LOCAL_MINILM
        from apps.knowledge.models import Document

        if Document.objects.filter(title__startswith="copy-").exists():  # a kept database grown by --scale-to
            Document.objects.filter(title__startswith="copy-").delete()
            with connection.cursor() as cursor:  # an HNSW graph of 90% deleted nodes is slow to search
                cursor.execute(f"REINDEX INDEX {LOCAL_MINILM.index_name}")
                cursor.execute("VACUUM ANALYZE knowledge_chunk")
                cursor.execute("VACUUM ANALYZE knowledge_document")

        chosen = claims[: args.claims] if args.claims else claims
        log(f"\nQuality: {len(chosen)} training claims, search(claim, k={args.depth}, mode=...), document level")
        rrf_ks = sorted({int(x) for x in args.rrf_k.split(",") if x} | {config.rrf_k})
        budgets = sorted({int(x) for x in args.candidates.split(",") if x} - {config.keyword_candidates})
        results = evaluate(chosen, qrels, args.depth, make_client("locmem"), rrf_ks, budgets)
        rows: list[list[object]] = [
            [
                f"this project: {mode}",
                f"{results[mode]['ndcg@10']:.3f}",
                f"{results[mode]['recall@100']:.3f}",
                f"train ({len(chosen)})",
            ]
            for mode in MODES
        ]
        rows += [[f"published: {name}", f"{value:.3f}", "", "test (300)"] for name, value in PUBLISHED.items()]
        log()
        log(table(["retrieval", "nDCG@10", "recall@100", "claims"], rows))

        baseline = np.array(results["rrf k=60"]["per_claim"]) if 60 in rrf_ks else None
        fusion_rows = []
        for k in rrf_ks:
            r = results[f"rrf k={k}"]
            row: list[object] = [k, f"{r['ndcg@10']:.4f}", f"{r['recall@100']:.4f}"]
            if baseline is not None:
                diff = np.array(r["per_claim"]) - baseline
                low, high = bootstrap_ci(diff)
                row += [
                    f"{diff.mean():+.4f}",
                    f"[{low:+.4f}, {high:+.4f}]",
                    f"{diff[::2].mean():+.4f} / {diff[1::2].mean():+.4f}",
                ]
            fusion_rows.append(row + (["<- RRF_K"] if k == config.rrf_k else [""]))
        log("\nHybrid by RRF k (the same vector and keyword lists re-fused):\n")
        log(
            table(
                ["RRF k", "nDCG@10", "recall@100", "vs k=60", "95% CI (bootstrap)", "even / odd claims", ""],
                fusion_rows,
            )
        )

        if budgets:
            budget_rows = []
            for budget in sorted([*budgets, config.keyword_candidates]):
                if budget == config.keyword_candidates:
                    keyword, hybrid = results["keyword"], results["hybrid"]
                else:
                    keyword, hybrid = results[f"keyword candidates={budget}"], results[f"hybrid candidates={budget}"]
                share = budget / facts["chunks"]
                budget_rows.append(
                    [
                        budget,
                        f"{share:.1%}",
                        f"{budget * 100_000 / facts['chunks']:,.0f}",
                        f"{keyword['ndcg@10']:.4f}",
                        f"{keyword['recall@100']:.4f}",
                        f"{hybrid['ndcg@10']:.4f}",
                        "<- KEYWORD_CANDIDATES" if budget == config.keyword_candidates else "",
                    ]
                )
            log(
                "\nKeyword candidates (chunks ranked per query, rarest terms first). A budget B on these "
                f"{facts['chunks']:,} chunks admits the same terms as about B x {100_000 / facts['chunks']:.1f} on "
                "100,000 chunks of the same kind:\n"
            )
            log(
                table(
                    [
                        "candidates",
                        "of chunks",
                        "same at 100k",
                        "keyword nDCG@10",
                        "keyword R@100",
                        "hybrid nDCG@10",
                        "",
                    ],
                    budget_rows,
                )
            )

        if args.latency_claims > 0:  # 0: the quality tables only
            sample = chosen[:: max(1, len(chosen) // args.latency_claims)][: args.latency_claims]
            from apps.knowledge.models import Chunk

            chunks = Chunk.objects.count()
            log(f"\nLatency: search(claim, k=10, mode=...) on {len(sample)} claims, query embedding included")
            latency_table = latency_rows(f"{chunks:,} chunks", latency(sample), embed_latency(sample))
            if args.scale_to:
                log(f"\nGrowing the table to {args.scale_to:,} chunks (copies of the SciFact chunks, noisy vectors)")
                have, seconds = scale_to(url, args.scale_to)
                log(f"  {have:,} chunks ({seconds:.0f} s with the HNSW index rebuilt)")
                latency_table += latency_rows(f"{have:,} chunks", latency(sample), embed_latency(sample))
            log()
            log(table(["table", "mode", "queries", "p50 ms", "p99 ms", "mean ms"], latency_table))
            explain_keyword(sample[0]["text"])
    finally:
        if args.keep:
            log(f"\nkept the scratch database {args.db} (--reuse measures it again)")
        else:
            drop_database(base, args.db)


def explain_keyword(query: str) -> None:
    from apps.knowledge.search import keyword_chunks

    chunks = keyword_chunks(query, k=10)
    assert chunks is not None
    log(f"\nEXPLAIN (ANALYZE, BUFFERS) of the ranking query of search({query!r}, mode='keyword'):\n")
    log(chunks.values_list("pk", "score").explain(analyze=True, buffers=True))


if __name__ == "__main__":
    main()
