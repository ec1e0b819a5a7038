"""The TOML presets of each stage, shipped as package data (`hwgpt_jax/presets/<stage>/`).

A preset is named by its stage and name (`find_preset("train", "tiny")`). Wherever the CLI
takes a preset (`--config`, `--preset`), it takes a file path or a preset name. A folder named
by `$HWGPT_PRESETS` (holding `<stage>/<name>.toml`) is searched before the packaged presets,
so edited copies can replace them without touching the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

STAGES = ("train", "profile", "surrogates", "search")
PACKAGED = Path(__file__).resolve().parent


def preset_roots() -> list[Path]:
    """The folders searched for `<stage>/<name>.toml`, first match wins."""
    roots = [PACKAGED]
    if os.environ.get("HWGPT_PRESETS"):
        roots.insert(0, Path(os.environ["HWGPT_PRESETS"]))
    return roots


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")


def preset_names(stage: str) -> list[str]:
    """The names of the presets of a stage (all roots), sorted."""
    _check_stage(stage)
    return sorted({path.stem for root in preset_roots() for path in (root / stage).glob("*.toml")})


def find_preset(stage: str, name: str) -> Path:
    """The path of preset `name` of `stage`, e.g. find_preset('train', 'tiny')."""
    _check_stage(stage)
    for root in preset_roots():
        path = root / stage / f"{name}.toml"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {stage} preset {name!r}; expected one of "
                            f"{preset_names(stage)} or a path to a TOML file")


def resolve_preset(stage: str, value: str | os.PathLike) -> Path:
    """A TOML file given on the command line: an existing path, else a preset name of `stage`."""
    path = Path(value)
    if path.is_file():
        return path
    if path.suffix == ".toml" or len(path.parts) > 1:
        # Accept the preset's former repository path (`train/tiny.toml`) as its name.
        if len(path.parts) == 2 and path.parts[0] == stage:
            return find_preset(stage, path.stem)
        raise FileNotFoundError(f"{stage} preset file {str(value)!r} does not exist; expected a "
                                f"TOML file or a preset name, one of {preset_names(stage)}")
    return find_preset(stage, str(value))
