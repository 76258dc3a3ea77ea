"""Token chunking with the two real tokenizers of the knowledge pipeline (no fake counters).

tiktoken cl100k (the OpenAI embedding models) and the local MiniLM WordPiece tokenizer, whose
count includes [CLS] and [SEP]. Property checks run over many random texts built from standard
library docstrings plus the awkward cases (huge words, CJK, combining marks, odd whitespace),
with fixed seeds so a failure reproduces.

Offsets contract checked here: ``chunk.text == text[start_char:end_char]`` exactly.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import functools
import heapq
import inspect
import itertools
import json
import random
import re
import textwrap
import unicodedata
from collections.abc import Callable

import pytest

from apps.knowledge.chunking import TextChunk, chunk_text
from apps.llm.tokenizer import Tokenizer
from apps.llm.transport.local_embeddings import get_local_embedder

Counter = Callable[[str], int]


@pytest.fixture(scope="module")
def tiktoken_count() -> Counter:
    tokenizer = Tokenizer()
    return lambda text: tokenizer.count_tokens(text, "text-embedding-3-small")


@pytest.fixture(scope="module")
def wordpiece_count() -> Counter:
    return get_local_embedder().count_tokens


@pytest.fixture(scope="module", params=["tiktoken", "wordpiece"])
def count(request, tiktoken_count, wordpiece_count) -> Counter:
    return tiktoken_count if request.param == "tiktoken" else wordpiece_count


def _docstrings() -> list[str]:
    docs = [heapq.__about__, argparse.__doc__, difflib.__doc__, json.__doc__, collections.__doc__]
    for module in (textwrap, functools, inspect, heapq, json, difflib, collections):
        for name in sorted(dir(module)):
            doc = getattr(getattr(module, name, None), "__doc__", None)
            if isinstance(doc, str) and len(doc) > 300:
                docs.append(doc)
    return [textwrap.dedent(doc).strip() for doc in dict.fromkeys(docs)]


DOCS = _docstrings()
PROSE = "\n\n".join(DOCS)
# Single sentences of ordinary prose: "Capitalised ... full stop."
SENTENCES = sorted(
    {
        s
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(PROSE.split()))
        if 40 <= len(s) <= 220 and s[0].isupper() and s.endswith(".") and "  " not in s
    }
)
WORDS = sorted({w for w in PROSE.split() if w.isalpha()})
CJK_SENTENCES = [
    "堆是一种特殊的树形数据结构。",
    "每个节点的值都小于或等于其子节点的值！",
    "这种性质使得最小的元素总是在根部？",
    "优先队列通常用堆来实现。",
    "排序算法也可以利用堆的性质来完成，时间复杂度为对数级别。",
]


def check(text: str, chunks: list[TextChunk], count: Counter, *, hard_limit: int, overlap: int) -> None:
    """The contract of chunk_text, for any input."""
    base = count("")
    if not text.strip():
        assert chunks == []
        return
    assert chunks
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.token_count == count(chunk.text)
        assert chunk.token_count <= hard_limit, (i, chunk.token_count, hard_limit)
    # No content lost: everything outside the chunks is whitespace; chunks go forward.
    assert not text[: chunks[0].start_char].strip()
    assert not text[chunks[-1].end_char :].strip()
    for previous, chunk in itertools.pairwise(chunks):
        assert previous.start_char < chunk.start_char
        assert previous.end_char < chunk.end_char
        if chunk.start_char >= previous.end_char:
            assert not text[previous.end_char : chunk.start_char].strip()
        else:
            assert count(text[chunk.start_char : previous.end_char]) - base <= overlap


def random_text(rng: random.Random) -> str:
    """Prose with the shapes documents take, and the ones they should not but sometimes do."""
    paragraphs = []
    for _ in range(rng.randint(1, 25)):
        kind = rng.random()
        if kind < 0.45:
            paragraph = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 12)))
        elif kind < 0.55:
            paragraph = "\n".join("- " + rng.choice(SENTENCES)[:60] for _ in range(rng.randint(2, 8)))
        elif kind < 0.62:  # a sentence that never ends
            paragraph = " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 900)))
        elif kind < 0.67:  # one enormous word: a URL, base64, a hash dump
            alphabet = rng.choice(
                ["abcdef0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/=", "a/b-c_d.e?f=g&"]
            )
            paragraph = "see https://example.com/" + "".join(
                rng.choice(alphabet) for _ in range(rng.randint(200, 6000))
            )
        elif kind < 0.75:
            sentences = rng.choices(CJK_SENTENCES, k=rng.randint(1, 40))
            paragraph = "".join(sentences) if rng.random() < 0.5 else "".join(sentences).replace("。", "")
        elif kind < 0.8:  # combining marks and emoji sequences with no spaces
            unit = rng.choice(["e\u0301", "👩\u200d💻", "🇫🇷", "👍🏽", "ᄀ\u1161\u11a8"])
            paragraph = unit * rng.randint(10, 400)
        elif kind < 0.88:  # odd whitespace
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 80))]
            paragraph = "".join(w + rng.choice([" ", "  ", "\t", "\u00a0", " \u3000", "\r\n", " \n "]) for w in words)
        else:
            paragraph = rng.choice(DOCS)
        paragraphs.append(paragraph)
    separators = ["\n\n", "\n\n\n", "\n \n", "\r\n\r\n"]
    return rng.choice(["", "  ", "\n"]) + "".join(p + rng.choice(separators) for p in paragraphs).rstrip(
        rng.choice(["", "\n"])
    )


# --- the contract on random texts --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_contract_holds_on_random_texts_tiktoken(seed, tiktoken_count):
    rng = random.Random(seed)
    text = random_text(rng)
    max_tokens = rng.choice([8, 16, 40, 100, 256, 512])
    overlap = rng.choice([0, 4, max_tokens // 8, max_tokens // 2, max_tokens])
    hard_limit = rng.choice([None, max_tokens, max_tokens + 10, max(4, max_tokens // 2)])
    chunks = chunk_text(
        text, count_tokens=tiktoken_count, max_tokens=max_tokens, overlap=overlap, hard_limit=hard_limit
    )
    check(text, chunks, tiktoken_count, hard_limit=max_tokens if hard_limit is None else hard_limit, overlap=overlap)


@pytest.mark.parametrize("seed", range(40))
def test_contract_holds_on_random_texts_wordpiece(seed, wordpiece_count):
    rng = random.Random(1000 + seed)
    text = random_text(rng)
    max_tokens = rng.choice([12, 32, 128, 256])
    overlap = rng.choice([0, 8, max_tokens // 4, max_tokens])
    chunks = chunk_text(text, count_tokens=wordpiece_count, max_tokens=max_tokens, overlap=overlap)
    check(text, chunks, wordpiece_count, hard_limit=max_tokens, overlap=overlap)


def test_local_model_reads_every_chunk_whole(wordpiece_count):
    embedder = get_local_embedder()
    text = "\n\n".join(DOCS[:6])
    chunks = chunk_text(text, count_tokens=embedder.count_tokens, max_tokens=embedder.max_input_tokens, overlap=32)
    assert max(c.token_count for c in chunks) <= 256
    batch = embedder.embed([c.text for c in chunks[:8]])
    assert not any(batch.truncated)
    assert batch.token_counts == [c.token_count for c in chunks[:8]]


# --- simple cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t \u3000 \r\n"])
def test_empty_text_has_no_chunks(text, count):
    assert chunk_text(text, count_tokens=count) == []


def test_tiny_text_is_one_chunk(count):
    text = "  \n Heaps are arrays for which a[k] <= a[2*k+1].  \n\n"
    [chunk] = chunk_text(text, count_tokens=count)
    assert chunk == TextChunk(0, "Heaps are arrays for which a[k] <= a[2*k+1].", count(chunk.text), 4, 48)


def test_text_that_fits_is_one_chunk(count):
    text = "\n\n".join(DOCS[:2])
    assert count(text) < 2000
    [chunk] = chunk_text(text, count_tokens=count, max_tokens=2000)
    assert chunk.text == text.strip()


def test_deterministic(count):
    text = random_text(random.Random(42))
    first = chunk_text(text, count_tokens=count, max_tokens=64, overlap=16)
    assert chunk_text(text, count_tokens=count, max_tokens=64, overlap=16) == first
    # A fresh counter with no shared state gives the same chunks.
    assert chunk_text(text, count_tokens=lambda t: count(t), max_tokens=64, overlap=16) == first


def test_invalid_arguments(tiktoken_count, wordpiece_count):
    with pytest.raises(ValueError, match="positive"):
        chunk_text("text", count_tokens=tiktoken_count, max_tokens=0)
    with pytest.raises(ValueError, match="positive"):
        chunk_text("text", count_tokens=tiktoken_count, hard_limit=0)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", count_tokens=tiktoken_count, overlap=-1)
    # WordPiece spends 2 tokens on [CLS] and [SEP] whatever the text.
    with pytest.raises(ValueError, match="leave no room for text"):
        chunk_text("text", count_tokens=wordpiece_count, max_tokens=2)


# --- boundaries --------------------------------------------------------------------------------


def paragraphs_of(count: Counter, rng: random.Random, low: int, high: int, n: int) -> list[str]:
    """``n`` paragraphs of whole sentences, each ``low..high`` tokens."""
    out: list[str] = []
    while len(out) < n:
        paragraph = ""
        while count(paragraph) - count("") < low:
            paragraph = (paragraph + " " + rng.choice(SENTENCES)).strip()
        if count(paragraph) - count("") <= high:
            out.append(paragraph)
    return out


def test_chunks_end_at_paragraph_ends_when_one_fits(count):
    paragraphs = paragraphs_of(count, random.Random(1), 25, 90, 40)
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, count_tokens=count, max_tokens=200, overlap=32)
    check(text, chunks, count, hard_limit=200, overlap=32)
    assert len(chunks) > 5
    # Paragraph ends come at most ~90 tokens apart: one always falls in the second half of a chunk.
    for chunk in chunks[:-1]:
        assert text[chunk.end_char : chunk.end_char + 2] == "\n\n", chunk.text[-80:]


def test_chunks_end_at_sentence_ends_inside_a_long_paragraph(count):
    text = " ".join(random.Random(2).choices(SENTENCES, k=200))
    chunks = chunk_text(text, count_tokens=count, max_tokens=150, overlap=24)
    check(text, chunks, count, hard_limit=150, overlap=24)
    for chunk in chunks[:-1]:
        assert chunk.text[-1] in ".!?", chunk.text[-80:]
        assert text[chunk.end_char] == " "


def test_chunks_end_between_words_inside_a_sentence_without_end(count):
    text = " ".join(random.Random(3).choices(WORDS, k=3000))
    chunks = chunk_text(text, count_tokens=count, max_tokens=100, overlap=16)
    check(text, chunks, count, hard_limit=100, overlap=16)
    for chunk in chunks:
        assert chunk.start_char == 0 or text[chunk.start_char - 1] == " "
        assert chunk.end_char == len(text) or text[chunk.end_char] == " "
    # Word-level cuts still fill chunks: only the last may be small.
    assert min(c.token_count for c in chunks[:-1]) >= 50


def test_a_heading_is_not_a_chunk_of_its_own(count):
    body = " ".join(random.Random(4).choices(SENTENCES, k=40))
    text = "## Heap queues\n\n" + body
    chunks = chunk_text(text, count_tokens=count, max_tokens=120, overlap=0)
    assert chunks[0].text.startswith("## Heap queues\n\n")
    assert chunks[0].token_count >= 60


def test_enormous_word_is_split(count):
    rng = random.Random(5)
    url = "https://example.com/" + "/".join(f"{rng.choice(WORDS)}-{i}" for i in range(3000))
    text = f"The link is {url} and nothing else."
    chunks = chunk_text(text, count_tokens=count, max_tokens=64, overlap=8)
    check(text, chunks, count, hard_limit=64, overlap=8)
    assert len(chunks) > 20
    assert "".join(c.text for c in chunks if c.start_char >= chunks[0].end_char) != ""
    # Pieces of the URL tile it: each chunk of the URL starts inside the previous one or right after it.
    inside = [c for c in chunks if " " not in c.text]
    assert len(inside) >= len(chunks) - 2


def test_long_run_without_any_separator_tiktoken(tiktoken_count):
    # One "word" of 30,000 hex digits: only split inside the word can fit it.
    text = "".join(random.Random(6).choice("0123456789abcdef") for _ in range(30_000))
    chunks = chunk_text(text, count_tokens=tiktoken_count, max_tokens=100, overlap=10)
    check(text, chunks, tiktoken_count, hard_limit=100, overlap=10)
    assert len(chunks) > 100


def test_cjk_text_is_cut_at_full_stops(count):
    rng = random.Random(7)
    text = "".join(rng.choices(CJK_SENTENCES, k=300))
    chunks = chunk_text(text, count_tokens=count, max_tokens=100, overlap=20)
    check(text, chunks, count, hard_limit=100, overlap=20)
    for chunk in chunks[:-1]:
        assert chunk.text[-1] in "。！？", chunk.text[-10:]


def test_cjk_text_without_punctuation_is_split_between_characters(count):
    rng = random.Random(8)
    text = "".join(rng.choices(CJK_SENTENCES, k=200)).translate(str.maketrans("", "", "。！？，"))
    assert " " not in text
    chunks = chunk_text(text, count_tokens=count, max_tokens=64, overlap=8)
    check(text, chunks, count, hard_limit=64, overlap=8)
    assert len(chunks) > 10


def test_combining_marks_and_emoji_sequences_stay_whole(tiktoken_count):
    for unit in ("e\u0301", "👩\u200d💻", "👍🏽"):
        text = unit * 500
        chunks = chunk_text(text, count_tokens=tiktoken_count, max_tokens=40, overlap=0)
        check(text, chunks, tiktoken_count, hard_limit=40, overlap=0)
        for chunk in chunks:
            assert len(chunk.text) % len(unit) == 0 and chunk.text.startswith(unit), unit
            assert not unicodedata.combining(chunk.text[0])


# --- balance -----------------------------------------------------------------------------------


def _sentences_of(count: Counter, tokens: int, seed: int) -> str:
    """Whole sentences adding up to about ``tokens`` tokens (a little more)."""
    rng = random.Random(seed)
    text = ""
    while count(text) < tokens:
        text = (text + " " + rng.choice(SENTENCES)).strip()
    return text


@pytest.mark.parametrize("size", [1.1, 1.4, 1.7])
def test_a_text_a_little_over_one_chunk_is_two_balanced_chunks(wordpiece_count, size):
    # The local model's case: 256 word pieces with a configured overlap of 64. Before, a text of
    # 1.1 chunks was a full chunk and a tail repeating 64 tokens to add about 30.
    limit, overlap = 256, 64
    text = "Title of the abstract\n\n" + _sentences_of(wordpiece_count, int(size * limit), seed=int(size * 10))
    chunks = chunk_text(text, count_tokens=wordpiece_count, max_tokens=limit, overlap=overlap)
    check(text, chunks, wordpiece_count, hard_limit=limit, overlap=overlap)
    first, second = chunks
    whole = wordpiece_count(text)
    # Equal halves, give or take a sentence.
    assert abs(first.token_count - second.token_count) <= 60, (first.token_count, second.token_count)
    # The overlap is at most an eighth of a chunk, so the two chunks hold little more than the text.
    shared = wordpiece_count(text[second.start_char : first.end_char]) - wordpiece_count("")
    assert shared <= whole // 2 // 8
    assert first.token_count + second.token_count <= whole + whole // 16 + 2
    # The model reads every chunk whole.
    batch = get_local_embedder().embed([first.text, second.text])
    assert not any(batch.truncated)


def test_balanced_chunks_are_the_fewest_that_hold_the_text(count):
    limit = 200
    for seed in range(5):
        text = _sentences_of(count, 3 * limit + 40 * seed, seed)
        chunks = chunk_text(text, count_tokens=count, max_tokens=limit, overlap=32)
        check(text, chunks, count, hard_limit=limit, overlap=32)
        overlap = min(32, count(text) // len(chunks) // 8)
        fewest = -(-(count(text) - count("") + (len(chunks) - 1) * overlap) // (limit - count("")))
        assert len(chunks) <= fewest + 1, (seed, [c.token_count for c in chunks])
        # No tail: the smallest chunk is at least half the largest.
        sizes = [c.token_count for c in chunks]
        assert min(sizes) >= max(sizes) // 2, sizes


def test_a_long_text_has_no_small_tail(count):
    text = " ".join(random.Random(14).choices(SENTENCES, k=120))
    chunks = chunk_text(text, count_tokens=count, max_tokens=256, overlap=32)
    check(text, chunks, count, hard_limit=256, overlap=32)
    assert len(chunks) > 5
    assert chunks[-1].token_count >= 0.6 * max(c.token_count for c in chunks)


# --- overlap -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "overlap"), [(400, 40), (200, 40)])
def test_consecutive_chunks_overlap_by_about_overlap_tokens(count, max_tokens, overlap):
    # The overlap is ``overlap``, at most an eighth of a chunk's room: 40 of 400, about 24 of 200.
    expected = min(overlap, (max_tokens - count("")) // 8)
    text = " ".join(random.Random(9).choices(SENTENCES, k=300))
    chunks = chunk_text(text, count_tokens=count, max_tokens=max_tokens, overlap=overlap)
    check(text, chunks, count, hard_limit=max_tokens, overlap=expected)
    shared = []
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.start_char < previous.end_char  # overlap present
        assert text[chunk.start_char - 1] == " "  # and it starts at a word
        shared.append(count(text[chunk.start_char : previous.end_char]) - count(""))
    assert expected * 3 // 4 <= max(shared) <= expected
    assert min(shared) >= max(shared) // 2  # at least half of it


def test_overlap_prefers_a_sentence_start(count):
    # Short sentences: a whole sentence always fits in the overlap, so it starts at one.
    short = [s for s in SENTENCES if count(s) - count("") <= 20]
    text = " ".join(random.Random(10).choices(short, k=200))
    chunks = chunk_text(text, count_tokens=count, max_tokens=400, overlap=48)
    assert len(chunks) > 5
    for chunk in chunks[1:]:
        before = text[chunk.start_char - 2 : chunk.start_char]
        assert before[0] in ".!?" and before[1] == " ", text[chunk.start_char - 20 : chunk.start_char + 20]


def test_no_overlap(count):
    text = " ".join(random.Random(11).choices(SENTENCES, k=100))
    chunks = chunk_text(text, count_tokens=count, max_tokens=100, overlap=0)
    check(text, chunks, count, hard_limit=100, overlap=0)
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.start_char > previous.end_char


# --- limits ------------------------------------------------------------------------------------


def test_hard_limit_below_max_tokens_wins(count):
    text = "\n\n".join(DOCS[:10])
    chunks = chunk_text(text, count_tokens=count, max_tokens=512, overlap=64, hard_limit=100)
    check(text, chunks, count, hard_limit=100, overlap=64)


def test_hard_limit_above_max_tokens_is_never_exceeded(count):
    text = "\n\n".join(DOCS[:10])
    chunks = chunk_text(text, count_tokens=count, max_tokens=100, overlap=10, hard_limit=110)
    check(text, chunks, count, hard_limit=110, overlap=10)


def test_token_counts_are_not_additive_across_newlines_tiktoken(tiktoken_count):
    # Every line costs a newline token the words alone do not show: the estimate must account
    # for separators, and the final count (not the estimate) is what is checked.
    text = "\n".join(random.Random(12).choices(WORDS, k=5000))
    chunks = chunk_text(text, count_tokens=tiktoken_count, max_tokens=50, overlap=5)
    check(text, chunks, tiktoken_count, hard_limit=50, overlap=5)
    assert max(c.token_count for c in chunks) == 50 or max(c.token_count for c in chunks) >= 45


def test_number_of_counts_grows_linearly(tiktoken_count):
    """count_tokens is called about once per sentence plus a few times per chunk, not per word."""
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return tiktoken_count(text)

    sentences = random.Random(13).choices(SENTENCES, k=4000)
    for k in (1000, 4000):
        calls = 0
        text = " ".join(sentences[:k])
        chunks = chunk_text(text, count_tokens=counting, max_tokens=256, overlap=32)
        assert calls <= k + 12 * len(chunks) + 20, (k, calls, len(chunks))


def test_pathological_runs_are_linear(tiktoken_count):
    # Quadratic regular expressions would take minutes on these (the suite's timeout fails them).
    for text in ("." * 200_000, "a" + " " * 200_000 + "b", "\n" * 200_000 + "x", "。" * 100_000, "!?" * 100_000):
        chunks = chunk_text(text, count_tokens=tiktoken_count, max_tokens=512, overlap=64)
        check(text, chunks, tiktoken_count, hard_limit=512, overlap=64)
