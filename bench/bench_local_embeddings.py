"""Throughput of the local embedder by batch size, with and without length-sorting.

    .venv/bin/python bench/bench_local_embeddings.py [--sentences 1000] [--threads N] [--repeat 1]

The corpus is real English prose that every checkout has: the docstrings of a
fixed list of standard-library modules (and of their public members), split into
sentences, in a fixed order. One text per ``embed()`` call is the baseline; the
other rows pass the whole corpus to one ``embed()`` call with internal batches of
the given size. All rows share one loaded model and run in the same process.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.llm.transport.local_embeddings import LocalEmbedder, available_cpus

# Fixed, so the corpus is the same on every run of the same Python version.
STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "imaplib", "inspect",
    "io", "ipaddress", "itertools", "json", "logging", "mailbox", "mimetypes", "operator",
    "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets",
    "selectors", "shlex", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize",
    "traceback", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
    "weakref", "xml.dom.minidom", "zipfile", "zoneinfo",
)  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def _docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    docs = [inspect.getdoc(module) or ""]
    for name in sorted(getattr(module, "__all__", None) or dir(module)):
        if name.startswith("_"):
            continue
        member = getattr(module, name, None)
        if inspect.isclass(member) or inspect.isfunction(member) or inspect.isbuiltin(member):
            docs.append(inspect.getdoc(member) or "")
    return docs


def stdlib_sentences(limit: int) -> list[str]:
    """Up to ``limit`` distinct prose sentences from stdlib docstrings, in a fixed order."""
    seen: set[str] = set()
    sentences: list[str] = []
    for module_name in STDLIB_MODULES:
        for doc in _docstrings(module_name):
            # Paragraphs, not lines: docstrings wrap sentences across lines. Code
            # examples (">>>", indented blocks) are not sentences.
            for paragraph in doc.split("\n\n"):
                if paragraph.lstrip().startswith(">>>") or paragraph.startswith((" ", "\t")):
                    continue
                text = " ".join(paragraph.split())
                for sentence in _SENTENCE_END.split(text):
                    if 20 <= len(sentence) <= 600 and sentence not in seen and sentence[0].isalpha():
                        seen.add(sentence)
                        sentences.append(sentence)
                        if len(sentences) == limit:
                            return sentences
    return sentences


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def padding_efficiency(token_counts: list[int], batch_size: int, sort: bool) -> float:
    """Real tokens / tokens the model computes (padding included), as ``embed`` batches them."""
    counts = sorted(token_counts, reverse=True) if sort else list(token_counts)
    runs = [counts[i : i + batch_size] for i in range(0, len(counts), batch_size)]
    return sum(counts) / sum(max(run) * len(run) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    parser.add_argument("--no-spinning", action="store_true", help="onnxruntime threads sleep when idle")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the fastest is reported")
    args = parser.parse_args()

    corpus = stdlib_sentences(args.sentences)
    embedder = LocalEmbedder(intra_op_num_threads=args.threads, allow_spinning=not args.no_spinning).load()
    counts = [embedder.count_tokens(s) for s in corpus]
    embedder.embed(corpus[:64])  # warm-up: first runs allocate ORT's arenas

    print(f"model      {embedder.model_name} (int8 ONNX, {embedder.dims} dims)")
    print(f"corpus     {len(corpus)} stdlib docstring sentences, {sum(counts)} tokens "
          f"(mean {sum(counts) / len(corpus):.1f}, max {max(counts)}, "
          f"{sum(c > embedder.max_input_tokens for c in counts)} truncated)")  # fmt: skip
    print(f"machine    {available_cpus()} CPUs available, {embedder.intra_op_num_threads} intra-op threads, "
          f"spinning {'off' if args.no_spinning else 'on'}, best of {args.repeat}")  # fmt: skip
    print()

    def one_by_one() -> None:
        for sentence in corpus:
            embedder.embed([sentence])

    # (batch size, sorted, seconds, real/padded tokens)
    rows: list[tuple[str, str, float, float]] = [("1 (one text per call)", "-", _time(one_by_one, args.repeat), 1.0)]
    for size in (8, 32, 64):
        for sort in (False, True):
            seconds = _time(lambda: embedder.embed(corpus, batch_size=size, sort_by_length=sort), args.repeat)
            rows.append((str(size), "yes" if sort else "no", seconds, padding_efficiency(counts, size, sort)))

    baseline = len(corpus) / rows[0][2]
    print(f"{'batch size':<22} {'sorted':>6} {'seconds':>8} {'sentences/s':>12} {'vs baseline':>12} "
          f"{'real/padded tokens':>19}")  # fmt: skip
    for batch, sorted_, seconds, efficiency in rows:
        rate = len(corpus) / seconds
        print(f"{batch:<22} {sorted_:>6} {seconds:>8.2f} {rate:>12.1f} {rate / baseline:>11.2f}x {efficiency:>18.0%}")


if __name__ == "__main__":
    main()
