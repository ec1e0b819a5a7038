"""Atomic writes: every file and folder appears whole or not at all.

Each writer writes into a temporary sibling (same folder, so the final `os.replace` is a
rename on one file system) and renames it over the target; a crash or an exception leaves the
previous file intact and removes the temporary. Tables carry their metadata inside the file
(parquet key-value metadata under b"hwgpt", as JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

METADATA_KEY = b"hwgpt"


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(temp_path)` on a temporary sibling of `path`, then rename it to `path`.

    The parent folder is created; the file gets mode 0644 (mkstemp makes it private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, value: Any, indent: int | None = 1) -> Path:
    """Write `value` as JSON (strict: no NaN) to `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


def write_parquet_atomic(frame: pd.DataFrame, path: str | os.PathLike,
                         metadata: dict[str, Any] | None = None) -> Path:
    """Write a DataFrame as parquet atomically; `metadata` goes into the file's key-value
    metadata under b"hwgpt" as JSON (read it back with `read_table_metadata`), with
    `content_sha256`, a checksum of the column names and values that `read_parquet_checked`
    verifies."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        metadata = {**metadata, "content_sha256": _table_sha256(table)}
        merged = dict(table.schema.metadata or {})
        merged[METADATA_KEY] = json.dumps(metadata, default=str).encode()
        table = table.replace_schema_metadata(merged)
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _table_sha256(table: Any) -> str:
    """sha256 of a pyarrow table's column names and values (as Python values, so that the
    checksum survives the parquet round trip whatever the physical layout)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        values = table.column(name).to_pylist()
        digest.update(json.dumps([name, values], default=str).encode())
    return digest.hexdigest()


def read_parquet_checked(path: str | os.PathLike) -> pd.DataFrame:
    """A parquet table as a DataFrame; when it carries `content_sha256` (tables this project
    writes), a damaged or edited table raises ValueError naming the file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{path} cannot be read as parquet ({str(err)[:200]}); the file is "
                         f"damaged") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    expected = json.loads(raw).get("content_sha256") if raw else None
    if expected is not None and _table_sha256(table) != expected:
        raise ValueError(f"{path} does not match its content_sha256: the table was edited or "
                         f"is damaged")
    return table.to_pandas()


def read_table_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The b"hwgpt" JSON metadata of a parquet file ({} when it has none)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def atomic_folder(directory: str | os.PathLike, overwrite: bool,
                  write: Callable[[Path], None]) -> Path:
    """Call `write(temp_folder)` on a temporary sibling folder, then rename it to `directory`
    (replacing an existing one only when `overwrite`)."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; pass overwrite=True (CLI: --overwrite)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; outputs are meant to be shared
        write(tmp)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "folder")
            os.replace(tmp, directory)
            shutil.rmtree(old)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_sidecar(path: str | os.PathLike, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The JSON sidecar at `path`, checked to be of format `fmt` at `format_version` `version`;
    `what` names the folder kind in the error for a missing sidecar."""
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path.parent} has no {path.name}; not {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the folder is corrupted") from None
    if not isinstance(info, dict) or info.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} sidecar")
    if info.get("format_version") != version:
        raise ValueError(f"{path} has format_version {info.get('format_version')!r}; this "
                         f"version reads {version}")
    return info


# ---------------------------------------------------------------------------- output policy
def _nearest_folder(path: Path) -> Path:
    """The deepest existing ancestor of `path` (what a writer would create its folders in)."""
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                 folder: bool = False, flag: str = "--out") -> Path:
    """Refuse an output before any work starts: one policy for every command.

    An existing `path` is refused unless `overwrite` (or `resume`, for commands that continue
    their own earlier output), or it is an empty folder for a folder output. A file output
    must not be a folder (nor a folder output a file). The folder it goes into must accept a
    new file, probed by creating and removing a temporary file there, so any OSError
    (read-only file system, permissions, quota) shows
    now rather than after the work. Returns `path` as a Path.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(f"{flag} {path} is a file; expected a folder")
        if not folder and path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; expected a file path")
        empty_folder = folder and not any(path.iterdir())  # nothing to lose
        if not (overwrite or resume or empty_folder):
            raise FileExistsError(f"{flag} {path} exists; pass --overwrite to replace it")
    parent = _nearest_folder(path)
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is not a folder")
    for where in ([parent, path] if folder and path.is_dir() else [parent]):
        try:
            handle, name = tempfile.mkstemp(dir=where, prefix=".hwgpt-probe-")
            os.close(handle)
            os.unlink(name)
        except OSError as err:
            raise OutputNotWritableError(
                f"{flag} {path}: cannot write in {where} ({err.strerror or err}); "
                f"choose a writable location") from None
    return path


class OutputNotWritableError(ValueError):
    """The folder of an output does not accept new files (a one-line CLI error)."""


# ---------------------------------------------------------------------------- sidecar seals
SEAL = "sidecar_sha256"


def json_sha256(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_sidecar(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with `sidecar_sha256`: a checksum of every other field, so an edit of any field
    to another valid value (a transform, a unit, a hash) is detected by `check_sidecar_seal`."""
    info = {k: v for k, v in info.items() if k != SEAL}
    return {**info, SEAL: json_sha256(info)}


def check_sidecar_seal(path: str | os.PathLike, info: dict[str, Any]) -> None:
    """Raise ValueError naming `path` unless its `sidecar_sha256` matches its other fields."""
    if SEAL not in info:
        raise ValueError(f"{path} has no {SEAL}; it was edited or written by an older version")
    if json_sha256({k: v for k, v in info.items() if k != SEAL}) != info[SEAL]:
        raise ValueError(f"{path} does not match its {SEAL}: a field was edited or the file "
                         f"is damaged")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256s(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under `folder`, keyed by its POSIX path relative to `folder`."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): file_sha256(path)
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}


def check_folder_sha256s(folder: str | os.PathLike, recorded: dict[str, str]) -> None:
    """Raise ValueError naming the first file under `folder` that is missing or differs from
    `recorded` (from `folder_sha256s`): checked before a reader (orbax) opens the files, so
    a damaged folder fails cleanly instead of inside the reader's threads."""
    folder = Path(folder)
    actual = folder_sha256s(folder) if folder.is_dir() else {}
    for name, digest in recorded.items():
        if name not in actual:
            raise ValueError(f"{folder / name} is missing; the folder is damaged")
        if actual[name] != digest:
            raise ValueError(f"{folder / name} does not match its recorded sha256; the folder "
                             f"is damaged or was edited")


# ---------------------------------------------------------------------------- output locks
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold `<out>.lock` while a command writes `out` in parts, so a second run on the same
    output fails at once instead of colliding. A lock whose process is gone (same host, dead
    pid) is stale and taken over; the lock is removed on exit, Ctrl-C included."""
    out = Path(out)
    lock = out.with_name(out.name + ".lock")
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock.read_text())
                pid, host = int(held["pid"]), str(held["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = -1, owner["host"]  # unreadable: a crash mid-write, stale
            if host == owner["host"] and (pid <= 0 or not _pid_alive(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise FileExistsError(f"{out} is being written by another run (pid {pid} on "
                                  f"{host}); lock {lock}. Wait for it, or remove the lock if "
                                  f"that run is gone") from None
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(owner))
        break
    else:
        raise FileExistsError(f"could not take the lock {lock}; remove it if no run holds it")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
