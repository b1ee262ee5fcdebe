"""The packaged word table (llm/data/minilm_words.npz) and LocalEmbedder.embed_words."""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from llm.embeddings import (
    DIMENSIONS,
    WORD_TABLE_FORMAT,
    LocalEmbedder,
    default_model_path,
    default_tokenizer_path,
    default_word_table_path,
    file_sha256,
    unavailable_reason,
)

MODEL_MISSING = unavailable_reason()
pytestmark = pytest.mark.skipif(
    bool(MODEL_MISSING), reason=f"the word table needs the packaged MiniLM model: {MODEL_MISSING}"
)

COMMON = ["time", "people", "government", "fox", "leopard", "table", "election", "music"]
NOT_IN_TABLE = ["tv", "café", "o'clock", "zzxqvbnm"]  # too short, not ASCII, an apostrophe, no token
TOLERANCE = 5e-4  # 1 - cosine between a table row and the model's vector (int8 rounding: ~1e-4)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    e = LocalEmbedder()
    assert e.load_word_table(), (
        f"the packaged word table is not usable ({e.word_table_error}); "
        "rebuild it with scripts/build_word_vectors.py"
    )
    return e


@pytest.fixture(scope="module")
def live() -> LocalEmbedder:
    """The model alone: no table, no cache."""
    return LocalEmbedder(word_table=False, cache_entries=0)


def write_table(path, words, vectors, *, model_sha=None, tokenizer_sha=None, fmt=WORD_TABLE_FORMAT):
    """A table in the builder's layout (np.savez_compressed instead of its fixed-timestamp zip)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1)
    q = np.rint(vectors / scales[:, None] * 127).astype(np.int8)
    np.savez_compressed(
        path,
        vectors=q,
        scales=scales.astype(np.float32),
        words=np.frombuffer("\n".join(words).encode("ascii"), dtype=np.uint8),
        model_sha256=np.array(model_sha or file_sha256(default_model_path())),
        tokenizer_sha256=np.array(tokenizer_sha or file_sha256(default_tokenizer_path())),
        meta=np.array(json.dumps({"format": fmt})),
    )
    return path


def test_the_packaged_table_loads_and_holds_common_words(embedder):
    assert default_word_table_path().is_file()
    assert embedder.word_table_error is None
    assert 29_000 <= embedder.word_table_size <= 30_000
    for word in COMMON:
        assert embedder.in_word_table(word), word
    assert not embedder.in_word_table("Time")  # lowercase only: the simulator case-folds first


def test_table_rows_match_the_model(embedder, live):
    rows = embedder.embed_words(COMMON)
    expected = live.embed(COMMON)
    assert rows.dtype == np.float32 and rows.shape == (len(COMMON), DIMENSIONS)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    cosines = (rows * expected).sum(axis=1)
    assert (1.0 - cosines).max() < TOLERANCE, cosines


def test_table_words_never_reach_the_model():
    e = LocalEmbedder()
    e.embed_words(COMMON)
    assert not e.loaded  # the model was not even loaded
    assert e.cache_size() == 0


def test_words_not_in_the_table_go_to_the_model(embedder, live):
    for word in NOT_IN_TABLE:
        assert not embedder.in_word_table(word), word
    before = embedder.cache_size()
    rows = embedder.embed_words(["fox", *NOT_IN_TABLE, "", "fox"])
    assert embedder.cache_size() == before + len(NOT_IN_TABLE)  # only the model's rows are cached
    assert np.allclose(rows[1:5], live.embed(NOT_IN_TABLE), atol=1e-6)
    assert not rows[5].any()  # an empty word is a zero row, as with embed
    assert np.array_equal(rows[0], rows[6])
    assert np.array_equal(embedder.embed_words(["fox"])[0], rows[0])  # same source every time


def test_embed_words_of_nothing(embedder):
    assert embedder.embed_words([]).shape == (0, DIMENSIONS)


def test_the_table_is_the_source_for_its_words(tmp_path):
    # A matching table whose "fox" points somewhere the model never would.
    odd = np.zeros((1, DIMENSIONS), dtype=np.float32)
    odd[0, 7] = -0.5
    e = LocalEmbedder(word_table=write_table(tmp_path / "t.npz", ["fox"], odd))
    rows = e.embed_words(["fox", "leopard"])
    assert e.word_table_size == 1
    assert rows[0, 7] == pytest.approx(-1.0) and np.count_nonzero(rows[0]) == 1
    assert np.allclose(rows[1], LocalEmbedder(word_table=False).embed(["leopard"])[0], atol=1e-6)


@pytest.mark.parametrize(
    "case, error",
    [
        ("missing", "no word table"),
        ("other model", "another model"),
        ("other tokenizer", "another tokenizer"),
        ("other format", "format"),
        ("corrupt", "cannot read"),
    ],
)
def test_an_unusable_table_falls_back_to_the_model_and_says_so_once(tmp_path, caplog, live, case, error):
    path = tmp_path / "words.npz"
    vectors = np.eye(2, DIMENSIONS, dtype=np.float32)
    if case == "other model":
        write_table(path, ["fox", "time"], vectors, model_sha="0" * 64)
    elif case == "other tokenizer":
        write_table(path, ["fox", "time"], vectors, tokenizer_sha="0" * 64)
    elif case == "other format":
        write_table(path, ["fox", "time"], vectors, fmt=WORD_TABLE_FORMAT + 1)
    elif case == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    e = LocalEmbedder(word_table=path)
    with caplog.at_level(logging.WARNING, logger="llm.embeddings"):
        rows = e.embed_words(["fox", "time"])
        again = e.embed_words(["fox", "time"])
    assert not e.load_word_table() and e.word_table_size == 0
    assert error in e.word_table_error
    assert np.allclose(rows, live.embed(["fox", "time"]), atol=1e-6)
    assert np.array_equal(rows, again)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and error in warnings[0].getMessage()


def test_no_table_when_asked_for_none(caplog):
    e = LocalEmbedder(word_table=False)
    with caplog.at_level(logging.WARNING, logger="llm.embeddings"):
        assert not e.load_word_table()
    assert e.word_table_error is None and not caplog.records


def test_the_table_loads_once_for_all_threads(monkeypatch, embedder):
    opened = []
    original = LocalEmbedder._open_table

    def counting(self):
        opened.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(LocalEmbedder, "_open_table", counting)
    e = LocalEmbedder()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: e.embed_words(COMMON), range(16)))
    assert len(opened) == 1
    for rows in results:
        assert np.array_equal(rows, results[0])
    assert np.array_equal(results[0], embedder.embed_words(COMMON))


def test_warm_up_loads_the_model_and_the_table():
    e = LocalEmbedder()
    e.warm_up()
    assert e.loaded and e.word_table_size > 0
