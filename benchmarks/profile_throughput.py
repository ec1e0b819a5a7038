"""Throughput and noise of `hwgpt profile`: archs per minute and latency variation across reps.

Profiles N unique random archs of a scale end to end (random-init dense models, compile,
warm-up, timed reps, parquet parts and merge) into a temporary table and prints one JSON line:
archs/min, the median over archs of the coefficient of variation (std / mean) of the latency
reps, the median latency, and the share of wall time spent compiling. On a machine shared with
other processes both throughput and CV reflect that load (`load_avg_1m` is printed).

    .venv/bin/python benchmarks/profile_throughput.py --scale tiny --n 20 --config tiny
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from hwgpt_jax.base.config import load_config
from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.measure.profiler import host_cpu_model
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.stages.profile import ProfileConfig, profile_archs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--config", default="tiny", help="TOML file or profile preset name")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    space = get_space(args.scale)
    config = load_config(ProfileConfig, resolve_preset("profile", args.config))
    archs = space.sample_unique(jax.random.key(args.seed), args.n)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        table = profile_archs(archs, space, config, Path(folder) / "profile.parquet")
        seconds = time.perf_counter() - start
    latency = table[table["metric"] == "latency"].groupby("arch_id")["value"]
    cv = latency.std(ddof=1) / latency.mean()
    compile_s = table.loc[table["metric"] == "compile_time", "value"].sum()
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "profile_throughput", "scale": args.scale, "archs": args.n,
        "batch": config.batch, "seq": config.seq, "reps": config.reps,
        "warmup": config.warmup, "dtype": config.dtype, "weights": "random init",
        "archs_per_min": round(60 * args.n / seconds, 2), "wall_s": round(seconds, 1),
        "compile_share": round(compile_s / seconds, 3),
        "median_latency_cv": round(float(cv.median()), 4),
        "p90_latency_cv": round(float(cv.quantile(0.9)), 4),
        "median_latency_ms": round(float(latency.median().median()), 2),
        "rows": len(table), "device": f"{device.platform}:{device.device_kind}",
        "host_cpu": host_cpu_model(), "cpu_count": os.cpu_count(),
        "load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "jax": jax.__version__, "finite": bool(np.isfinite(latency.median()).all())}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
