"""Tests of hwgpt_jax/base: the one config loader and the provenance writer."""

from __future__ import annotations

import dataclasses

import pytest

from hwgpt_jax.base.config import config_from_mapping, config_to_dict, load_config, replace_config
from hwgpt_jax.base.metadata import provenance, versions


@dataclasses.dataclass(frozen=True)
class Inner:
    x: int = 1
    y: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError(f"x={self.x}; expected >= 0")


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    name: str = "a"


def test_sections_defaults_and_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "b"\n[inner]\nx = 3\n')
    config = load_config(Outer, path)
    assert config == Outer(Inner(x=3), "b")
    assert config_from_mapping(Outer, config_to_dict(config)) == Outer(Inner(3, [1, 2]), "b")
    assert load_config(Outer, None, inner={"x": 4}, name=None) == Outer(Inner(x=4))
    assert replace_config(config, name="c").inner.x == 3


@pytest.mark.parametrize("data, message", [
    ({"nme": "a"}, r"unknown config key\(s\) \['nme'\]; expected some of \['inner', 'name'\]"),
    ({"inner": {"z": 1}}, r"unknown config key\(s\) \['z'\] in \[inner\]"),
    ({"inner": 3}, r"inner: expected a table of keys, got 3"),
    ({"inner": {"x": -1}}, r"x=-1; expected >= 0"),
])
def test_bad_keys_are_one_line_errors(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_mapping(Outer, data)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(Outer, tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = = 1\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(Outer, bad)


def test_provenance_records_versions_and_time():
    info = provenance(stage="test")
    assert info["stage"] == "test" and info["versions"] == versions()
    assert info["versions"]["jax"] != "unknown" and info["created"].endswith("+00:00")
