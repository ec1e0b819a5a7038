"""One loader for every frozen dataclass config: TOML file or mapping in, config out.

A config is a frozen dataclass; a field whose default is itself a dataclass instance is a
section (a TOML table). Unknown sections and keys are errors naming the key and the expected
ones, so a typo never silently runs the default. Values are checked by the dataclass's own
`__post_init__`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The tables of a TOML file; a one-line error for a missing file or invalid TOML."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{what} {path} is not valid TOML: {err}") from None


def _section_type(field: dataclasses.Field) -> type | None:
    default = field.default
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return type(default)
    return None


def config_from_mapping(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """`cls` built from `data` (nested mappings for sections); unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or cls.__name__}: expected a table of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        place = f" in [{where}]" if where else ""
        raise ValueError(f"unknown config key(s) {unknown}{place}; expected some of "
                         f"{sorted(fields)}")
    values = {}
    for name, value in data.items():
        section = _section_type(fields[name])
        if section is not None:
            value = config_from_mapping(section, value, f"{where}.{name}" if where else name)
        values[name] = value
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (TOML/JSON-ready; tuples become lists)."""
    return json_ready(dataclasses.asdict(config))


def json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def replace_config(config: C, **changes: Any) -> C:
    """A copy with some keys changed; a section takes a mapping of its own keys, e.g.
    `replace_config(cfg, train={"steps": 5})`. Values that are None are left unchanged."""
    data = dataclasses.asdict(config)
    for name, value in changes.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(data.get(name), dict):
            data[name] = data[name] | dict(value)
        else:
            data[name] = value
    return config_from_mapping(type(config), data)


def load_config(cls: type[C], path: str | Path | None = None, **changes: Any) -> C:
    """`cls` from a TOML file (or its defaults when `path` is None), then `changes` applied as
    by `replace_config`."""
    base = config_from_mapping(cls, read_toml(path)) if path is not None else cls()
    return replace_config(base, **changes)


__all__ = ["config_from_mapping", "config_to_dict", "json_ready", "load_config", "read_toml",
           "replace_config"]
