"""Build the packaged published benchmark (`hwgpt_jax/assets/published/<scale>/`).

Input: the published HW-GPT-Bench archives `hwgpt_<scale>_full.npz` (automl/HW-GPT-Bench,
Apache-2.0; see `../shared/reference/hwgpt-bench/README.md`). For each scale it fits one
surrogate per published key with the surrogate presets (model selection as `hwgpt fit` does),
keeps the per-arch medians of the measurements, and writes the folder atomically with the
sha256 of its inputs and outputs (`hwgpt_jax.surrogates.packaged`). Fits are seeded, so a
rebuild with the same inputs, versions and machine type gives the same arrays.

    .venv/bin/python surrogates/build_published.py --reference ../shared/reference/hwgpt-bench
    .venv/bin/python surrogates/build_published.py --scales s --config fast   # a quick look

The raw archives are never copied into the repository; only the built folders are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from hwgpt_jax.base.files import file_sha256, write_text_atomic
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.surrogates import load_presets
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.packaged import (
    MANIFEST,
    PACKAGED_ROOT,
    SCALES,
    save_packaged,
)
from hwgpt_jax.surrogates.published import load_published


def build_scale(archive: Path, out: Path, configs: dict | None) -> dict:
    data = load_published(archive)
    start = time.perf_counter()
    with tqdm(total=len(data), desc=f"fit {archive.name}", file=sys.stderr) as bar:
        bench = Benchmark.fit(data, configs, keep_tables=False,
                              progress=lambda key: (bar.set_postfix(key=key), bar.update()))
    seconds = time.perf_counter() - start
    save_packaged(list(bench.surrogates.values()), data, out,
                  inputs={archive.name: file_sha256(archive)}, overwrite=True)
    return {"scale": data[0].scale, "keys": len(data), "fit_seconds": round(seconds, 1),
            "bytes": sum(f.stat().st_size for f in out.iterdir())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "reference"
                        / "hwgpt-bench", help="folder holding hwgpt_<scale>_full.npz")
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=SCALES)
    parser.add_argument("--config", default=None,
                        help="surrogate preset name or TOML file (default: the built-in "
                             "defaults, as `hwgpt fit`)")
    parser.add_argument("--out", type=Path, default=PACKAGED_ROOT)
    args = parser.parse_args()
    configs = load_presets(resolve_preset("surrogates", args.config)) if args.config else None
    for scale in args.scales:
        archive = args.reference / f"hwgpt_{scale}_full.npz"
        if not archive.is_file():
            parser.exit(2, f"build_published: error: {archive} does not exist; pass "
                           f"--reference FOLDER holding hwgpt_{scale}_full.npz\n")
        row = build_scale(archive, args.out / scale, configs)
        print(json.dumps(row), flush=True)
    licence = args.reference / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, args.out / "LICENSE")
    manifest = {scale: {name: file_sha256(args.out / scale / name)
                        for name in ("benchmark.json", "surrogates.npz", "measured.npz")}
                for scale in SCALES if (args.out / scale / "benchmark.json").is_file()}
    write_text_atomic(args.out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
