"""Find the TOML presets of a stage (`train/`, `profile/`, `surrogates/`, `search/`).

The stage folders live at the repository root, beside the package (DESIGN.md). They are found
relative to the current directory first, then relative to the package (an editable install or
a source checkout), then in `$HWGPT_PRESETS` if set.
"""

from __future__ import annotations

import os
from pathlib import Path

STAGES = ("train", "profile", "surrogates", "search")


def preset_roots() -> list[Path]:
    roots = [Path.cwd(), Path(__file__).resolve().parents[1]]
    if os.environ.get("HWGPT_PRESETS"):
        roots.insert(0, Path(os.environ["HWGPT_PRESETS"]))
    return roots


def find_preset(stage: str, name: str) -> Path:
    """The path of `<stage>/<name>.toml`, e.g. find_preset('train', 'tiny')."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")
    for root in preset_roots():
        path = root / stage / f"{name}.toml"
        if path.is_file():
            return path
    searched = ", ".join(str(r / stage) for r in preset_roots())
    raise FileNotFoundError(f"preset {stage}/{name}.toml not found (searched {searched}); "
                            f"set HWGPT_PRESETS to the folder holding {stage}/")
