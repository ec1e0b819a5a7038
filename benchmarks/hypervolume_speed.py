"""Hypervolume speed: hwgpt_jax.search.hypervolume.hypervolume against moocore (pymoo's backend).

Prints one JSON line per case: best-of-repeats wall time and process CPU time per call (ms)
for ours and moocore, their ratios, and the relative difference of the values. Fronts are
points on the positive unit sphere (all mutually non-dominated, the worst case), reference
point 1.1; the "cloud" case adds 9,000 uniform points to a 1,000-point 3-D front, like the
archs evaluated by a search (mostly dominated). Calls alternate between the two libraries, so
both see the same machine load; the 1-minute load average is printed with each line.

    .venv/bin/python benchmarks/hypervolume_speed.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import moocore
import numpy as np

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.search.hypervolume import hypervolume


def best_times_ms(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Per function: (best wall ms, best process CPU ms) over `repeats` interleaved calls."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: [np.inf, np.inf] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            cpu, start = time.process_time(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            best[name] = [min(best[name][0], 1e3 * wall), min(best[name][1], 1e3 * cpu)]
    return {name: (wall, cpu) for name, (wall, cpu) in best.items()}


def sphere_front(rng: np.random.Generator, n_points: int, n_objectives: int) -> np.ndarray:
    points = np.abs(rng.normal(size=(n_points, n_objectives)))
    return 1 - points / np.linalg.norm(points, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = [(f"front {n} x {m}", sphere_front(rng, n, m))
             for n, m in [(1_000, 2), (10_000, 2), (1_000, 3), (10_000, 3)]]
    cases.append(("cloud 1,000 front + 9,000 dominated x 3",
                  np.vstack([sphere_front(rng, 1_000, 3), 0.1 + rng.random((9_000, 3))])))
    for name, points in cases:
        n_points, n_objectives = points.shape
        ref = np.full(n_objectives, 1.1)
        repeats = args.repeats if n_points * n_objectives < 30_000 else max(3, args.repeats // 10)
        load = os.getloadavg()[0]
        times = best_times_ms({"ours": lambda p=points, r=ref: hypervolume(p, r),
                               "moocore": lambda p=points, r=ref: moocore.hypervolume(p, ref=r)},
                              repeats)
        ours, theirs = hypervolume(points, ref), moocore.hypervolume(points, ref=ref)
        print(json.dumps({
            "figure": "hypervolume_ms_per_call",
            "case": name,
            "n_points": n_points,
            "n_objectives": n_objectives,
            "ours_ms": round(times["ours"][0], 4),
            "moocore_ms": round(times["moocore"][0], 4),
            "ratio_ours_over_moocore": round(times["ours"][0] / times["moocore"][0], 2),
            "ours_cpu_ms": round(times["ours"][1], 4),
            "moocore_cpu_ms": round(times["moocore"][1], 4),
            "cpu_ratio_ours_over_moocore": round(times["ours"][1] / times["moocore"][1], 2),
            "relative_difference": abs(ours - theirs) / theirs,
            "repeats": repeats,
            "timing": "best of interleaved repeats, after one warm-up call each",
            "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
            "device": f"cpu ({platform.processor() or platform.machine()}), "
                      f"{os.cpu_count()} cores",
            "versions": {"numpy": np.__version__, "moocore": moocore.__version__},
        }), flush=True)


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
