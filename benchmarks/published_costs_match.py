"""How exactly `published_costs` reproduces the published params / FLOPs / MACs arrays.

For each scale's archive: the fraction of archs whose closed-form count equals the published
one exactly, and the largest relative error. Prints one JSON line per (scale, count).

Usage:
    .venv/bin/python benchmarks/published_costs_match.py --data ../shared/reference/hwgpt-bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.published_costs import published_costs
from hwgpt_jax.surrogates.published import ARCH_KEYS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of hwgpt_<scale>_full.npz")
    args = parser.parse_args()
    for scale in ("s", "m", "l"):
        path = Path(args.data) / f"hwgpt_{scale}_full.npz"
        with np.load(path, allow_pickle=False) as archive:
            space = get_space(scale)
            archs = space.from_published({k: archive[k] for k in ARCH_KEYS}).to_numpy()
            costs = published_costs(archs, space)
            for name in ("params", "flops", "macs"):
                published = archive[name].astype(np.int64)
                error = np.abs(costs[name] - published) / published
                print(json.dumps({"figure": "published_costs_match", "scale": scale,
                                  "count": name, "n_archs": int(len(published)),
                                  "exact_fraction": float(np.mean(costs[name] == published)),
                                  "max_relative_error": float(error.max()),
                                  "data": str(path)}))


if __name__ == "__main__":
    main()
