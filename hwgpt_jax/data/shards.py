"""GPT-2 token shards of a corpus: one uint16 `.npy` per split plus `manifest.json`.

`prepare_corpus` reads a corpus (`hwgpt_jax.data.sources`), splits it into train and
validation *documents* (deterministic by seed), tokenizes with the offline GPT-2 encoding
(end-of-text after every document) and writes the shards, the manifest last (its presence
marks a complete set). A later call with the same corpus, tokenizer, seed and fraction reuses
them; `corpus_fingerprint` is that reuse key, computed without writing anything. Each split
has its own token array, so no window (`hwgpt_jax.data.windows`) ever crosses the split.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwgpt_jax.base.files import write_atomic, write_text_atomic
from hwgpt_jax.base.metadata import versions
from hwgpt_jax.data import tokenizer
from hwgpt_jax.data.sources import describe_source, load_documents

FORMAT = "hwgpt-jax/token-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
MANIFEST_NAME = "manifest.json"
_TOKENIZE_CHUNK = 512  # documents per encode_ordinary_batch call (progress granularity)


@dataclasses.dataclass(frozen=True)
class CorpusShards:
    """Token shards on disk: one uint16 `.npy` per split and the manifest describing them."""

    directory: Path
    manifest: dict[str, Any]
    reused: bool = False  # True when existing shards matched and nothing was tokenized

    def path(self, split: str) -> Path:
        _check_split(split)
        return self.directory / self.manifest["splits"][split]["file"]

    def num_tokens(self, split: str) -> int:
        _check_split(split)
        return int(self.manifest["splits"][split]["tokens"])

    def tokens(self, split: str) -> np.ndarray:
        """The split's tokens, memory-mapped read-only, shape (num_tokens,), uint16."""
        return np.load(self.path(split), mmap_mode="r", allow_pickle=False)

    @property
    def train_tokens(self) -> int:
        return self.num_tokens("train")

    @property
    def val_tokens(self) -> int:
        return self.num_tokens("val")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} {value!r} must be an integer >= {minimum}")


def _check_fraction(val_fraction: Any) -> None:
    if not isinstance(val_fraction, int | float) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction {val_fraction!r} must be a number strictly between 0 and 1")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")


def split_documents(num_documents: int, seed: int, val_fraction: float) -> dict[str, np.ndarray]:
    """Document indices per split: a seeded permutation, each split kept in corpus order."""
    _check_fraction(val_fraction)
    if num_documents < 2:
        raise ValueError(
            f"corpus has {num_documents} non-empty document(s); need at least 2 to split "
            "into train and validation"
        )
    num_val = min(num_documents - 1, max(1, round(val_fraction * num_documents)))
    order = np.random.default_rng(seed).permutation(num_documents)
    return {"train": np.sort(order[num_val:]), "val": np.sort(order[:num_val])}


def tokenize_documents(
    documents: Sequence[str],
    *,
    num_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """GPT-2 tokens of the documents, each followed by end-of-text, as one uint16 array.

    `progress(n)` is called after every chunk with the number of documents just encoded.
    """
    encoding = tokenizer.gpt2_encoding()
    threads = num_threads or min(8, os.cpu_count() or 1)
    eot = np.array([tokenizer.EOT_ID], dtype=np.uint16)
    parts = [np.zeros(0, dtype=np.uint16)]
    for start in range(0, len(documents), _TOKENIZE_CHUNK):
        chunk = list(documents[start:start + _TOKENIZE_CHUNK])
        for ids in encoding.encode_ordinary_batch(chunk, num_threads=threads):
            parts.append(np.asarray(ids, dtype=np.uint16))  # ids < 50257 fit uint16
            parts.append(eot)
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(parts)


def _reuse_key(description: dict[str, Any], seed: int, val_fraction: float) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "corpus": description,
            "tokenizer_sha256": tokenizer.tokenizer_hash(), "seed": seed,
            "val_fraction": val_fraction}


def corpus_fingerprint(source: str | os.PathLike, *, seed: int = 0, val_fraction: float = 0.05,
                       text_field: str = "text", hf_split: str = "train") -> dict[str, Any]:
    """What `prepare_corpus` compares to reuse shards (corpus description with its content
    hash, tokenizer hash, split seed and fraction), computed without writing anything."""
    description = describe_source(source, text_field=text_field, hf_split=hf_split)
    return _reuse_key(description, seed, float(val_fraction))


def load_shards(directory: str | os.PathLike) -> CorpusShards:
    """Open shards written by `prepare_corpus`, checking the manifest against the files."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no token shards in {str(directory)!r}: {MANIFEST_NAME} missing")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path} has format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    shards = CorpusShards(directory, manifest, reused=True)
    for split in SPLITS:
        tokens = shards.tokens(split)
        if tokens.dtype != np.uint16 or tokens.shape != (shards.num_tokens(split),):
            raise ValueError(
                f"{shards.path(split)} holds {tokens.dtype} {tokens.shape}; manifest expects "
                f"uint16 ({shards.num_tokens(split)},)"
            )
    return shards


def prepare_corpus(
    source: str | os.PathLike = "bbc",
    out_dir: str | os.PathLike = "data",
    *,
    seed: int = 0,
    val_fraction: float = 0.05,
    text_field: str = "text",
    hf_split: str = "train",
    num_threads: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusShards:
    """Tokenize a corpus into train/val shards in `out_dir`, or reuse matching shards there.

    Args:
        source: "bbc", a local .txt/.jsonl/.parquet file or folder, or a Hugging Face name.
        out_dir: folder for `train.npy`, `val.npy` and `manifest.json` (created if missing).
        seed: seeds the document-level train/validation split.
        val_fraction: fraction of documents held out for validation, in (0, 1).
        text_field: the text field of .jsonl/.parquet/Hugging Face records.
        hf_split: which split of a Hugging Face dataset to read (all of it is re-split).
        force: rebuild even when matching shards exist.
        progress: called as `progress(documents_done_now, documents_total)` while tokenizing.

    Returns:
        The shards; `reused` says whether existing files were kept.
    """
    check_int("seed", seed, 0)
    _check_fraction(val_fraction)
    description = describe_source(source, text_field=text_field, hf_split=hf_split)
    key = _reuse_key(description, seed, float(val_fraction))
    out_dir = Path(out_dir)
    if not force and (out_dir / MANIFEST_NAME).is_file():
        try:
            shards = load_shards(out_dir)
        except (OSError, ValueError):
            shards = None  # unreadable or stale files: rebuild below
        if shards is not None and all(shards.manifest.get(k) == v for k, v in key.items()):
            return shards

    documents = load_documents(description)
    if not documents:
        raise ValueError(f"corpus {os.fspath(source)!r} holds no non-empty document")
    indices = split_documents(len(documents), seed, float(val_fraction))
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, dict[str, Any]] = {}

    def report(done: int) -> None:
        progress(done, len(documents))

    for split in SPLITS:
        tokens = tokenize_documents(
            [documents[i] for i in indices[split]], num_threads=num_threads,
            progress=report if progress is not None else None,
        )
        file_name = f"{split}.npy"
        write_atomic(out_dir / file_name, functools.partial(_save_npy, tokens))
        splits[split] = {"file": file_name, "tokens": int(tokens.size),
                         "documents": int(indices[split].size), "dtype": "uint16"}
    manifest = key | {
        "tokenizer": {"name": "gpt2", "vocab_size": tokenizer.VOCAB_SIZE,
                      "eot_id": tokenizer.EOT_ID, "eot_placement": "after every document"},
        "documents": len(documents),
        "splits": splits,
        "versions": versions(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    # The manifest is written last: its presence marks a complete set of shards.
    write_text_atomic(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return CorpusShards(out_dir, manifest, reused=False)


def _save_npy(tokens: np.ndarray, path: Path) -> None:
    with path.open("wb") as handle:  # a file handle: np.save would append ".npy" to a path
        np.save(handle, tokens, allow_pickle=False)


__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "SPLITS", "CorpusShards",
           "check_int", "corpus_fingerprint", "load_shards", "prepare_corpus", "split_documents",
           "tokenize_documents"]
