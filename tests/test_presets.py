"""Presets are package data, named by stage and name, replaceable through $HWGPT_PRESETS."""

import tomllib

import pytest

from hwgpt_jax.presets import STAGES, find_preset, preset_names, resolve_preset

EXPECTED = {"train": {"tiny", "s", "m", "l"}, "profile": {"tiny", "s", "m", "l"},
            "surrogates": {"default", "fast"},
            "search": {"smoke_analytic", "paper_2obj_energy", "paper_3obj"}}


@pytest.mark.parametrize("stage", STAGES)
def test_every_preset_is_packaged_and_parses(stage):
    assert set(preset_names(stage)) >= EXPECTED[stage]
    for name in EXPECTED[stage]:
        path = find_preset(stage, name)
        assert "hwgpt_jax" in path.parts and path.parent.name == stage
        assert tomllib.loads(path.read_text())


def test_resolve_takes_a_path_a_name_or_the_former_repository_path(tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text("[model]\nscale = 'tiny'\n")
    assert resolve_preset("train", own) == own
    assert resolve_preset("train", "tiny") == find_preset("train", "tiny")
    assert resolve_preset("train", "train/tiny.toml") == find_preset("train", "tiny")


@pytest.mark.parametrize("value", ["tinyy", "missing/tiny.toml", "nope.toml", "profile/s.toml"])
def test_unknown_presets_name_the_value_and_the_choices(value):
    with pytest.raises(FileNotFoundError) as err:
        resolve_preset("train", value)
    message = str(err.value)
    assert repr(value) in message and "'tiny'" in message and "'s'" in message
    assert "\n" not in message


def test_unknown_stage_is_rejected():
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        find_preset("trian", "tiny")


def test_hwgpt_presets_folder_replaces_packaged_presets(tmp_path, monkeypatch):
    (tmp_path / "train").mkdir()
    edited = tmp_path / "train" / "tiny.toml"
    edited.write_text("[model]\nscale = 'tiny'\n")
    (tmp_path / "train" / "extra.toml").write_text("")
    monkeypatch.setenv("HWGPT_PRESETS", str(tmp_path))
    assert find_preset("train", "tiny") == edited
    assert find_preset("train", "s").parent.parent.parent.name == "hwgpt_jax"
    assert "extra" in preset_names("train")


def test_stage_presets_load_into_their_stage_configs():
    from hwgpt_jax.base.config import load_config
    from hwgpt_jax.stages.profile import ProfileConfig
    from hwgpt_jax.stages.search import SearchConfig

    for name in EXPECTED["search"]:
        config = load_config(SearchConfig, find_preset("search", name))
        assert config.objectives and config.budget >= 64
    assert load_config(SearchConfig, find_preset("search", "paper_3obj")).algorithms[0] != "all"
    for name in EXPECTED["profile"]:
        assert load_config(ProfileConfig, find_preset("profile", name)).reps >= 1
