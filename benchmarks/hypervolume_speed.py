"""Hypervolume speed: hwgpt_jax.pareto.hypervolume against moocore (pymoo's backend).

Prints one JSON line per case: best-of-repeats wall time per call (ms) for ours and moocore,
the ratio, and the relative difference of the values. Fronts are points on the positive unit
sphere (all mutually non-dominated, the worst case), reference point 1.1.

    .venv/bin/python benchmarks/hypervolume_speed.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import moocore
import numpy as np

from hwgpt_jax.pareto import hypervolume


def best_time_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n_points, n_objectives in [(1_000, 2), (10_000, 2), (1_000, 3), (10_000, 3)]:
        points = np.abs(rng.normal(size=(n_points, n_objectives)))
        points = 1 - points / np.linalg.norm(points, axis=1, keepdims=True)
        ref = np.full(n_objectives, 1.1)
        repeats = args.repeats if n_points * n_objectives < 30_000 else max(3, args.repeats // 10)
        ours_ms = best_time_ms(lambda p=points, r=ref: hypervolume(p, r), repeats)
        theirs_ms = best_time_ms(lambda p=points, r=ref: moocore.hypervolume(p, ref=r), repeats)
        ours, theirs = hypervolume(points, ref), moocore.hypervolume(points, ref=ref)
        print(json.dumps({
            "figure": "hypervolume_ms_per_call",
            "n_points": n_points,
            "n_objectives": n_objectives,
            "ours_ms": round(ours_ms, 4),
            "moocore_ms": round(theirs_ms, 4),
            "ratio_ours_over_moocore": round(ours_ms / theirs_ms, 2),
            "relative_difference": abs(ours - theirs) / theirs,
            "repeats": repeats,
            "timing": "best of repeats, after one warm-up call",
            "device": f"cpu ({platform.processor() or platform.machine()})",
            "versions": {"numpy": np.__version__, "moocore": moocore.__version__},
        }))


if __name__ == "__main__":
    main()
