"""One command that checks hwgpt-jax on a machine's accelerator and records what it measures.

    python benchmarks/accelerator_check.py OUT_DIR [--scale s|tiny] [--skip CHECK ...]

Checks, each one JSON line (`check`, `ok`, figures) printed and written to
OUT_DIR/accelerator_check.jsonl (rewritten atomically after every check):
- `masked_dense`: masked supernet vs extracted dense logits of the largest and the smallest
  arch (float32, highest matmul precision, <= 1e-4) and the forward time ratio;
- `train_float32`, `train_bfloat16`: sandwich training steps (`Trainer`, pmap over all local
  devices) with tokens/s and the number of compiled gradient programs;
- `data_parallel`: with 2+ local devices, sandwich steps of fixed archs on one device and on
  all of them give the same losses (rtol 1e-5) and parameters (rtol 1e-4, atol 1e-6);
  `skipped` with one;
- `evaluate`: evaluation throughput (archs/s, tokens/s) and one program per embed dim;
- `profile`: 5 archs profiled (latency, NVML energy on NVIDIA GPUs, allocator peak memory);
- `pmap`: a different arch per local device through a pmapped supernet forward, equal to
  single-device forwards;
- `query_search`: surrogate query throughput of the published benchmark and NSGA-II
  evaluations per second on it.
The default scale is `s` on GPUs/TPUs (meant to run in about 8 minutes) and `tiny` on CPUs
(about 3 minutes; how the script is tested). A failed check gives `ok: false` with its error
and the exit status 1; speed figures are recorded, never judged. `--skip` leaves a check out
(its line says `skipped`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hwgpt_jax.base.files import write_text_atomic
from hwgpt_jax.model import supernet as model
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space

PLANS: dict[str, dict[str, int]] = {
    # forward (batch x seq), training (batch x seq, timed steps), evaluation, profiling, query
    "s": {"batch": 8, "seq": 1024, "reps": 5, "train_batch": 8, "train_seq": 256,
          "train_steps": 3, "eval_archs": 24, "eval_windows": 8, "eval_seq": 1024,
          "profile_seq": 1024, "profile_reps": 10, "query_n": 100_000, "population": 1024,
          "generations": 20, "parallel_steps": 2},
    "tiny": {"batch": 2, "seq": 64, "reps": 3, "train_batch": 4, "train_seq": 32,
             "train_steps": 1, "eval_archs": 6, "eval_windows": 2, "eval_seq": 64,
             "profile_seq": 64, "profile_reps": 3, "query_n": 10_000, "population": 64,
             "generations": 3, "parallel_steps": 2},
}
TOLERANCE = 1e-4
CHECKS = ("masked_dense", "train_float32", "train_bfloat16", "data_parallel", "evaluate",
          "profile", "pmap", "query_search")


def _median_seconds(fn: Callable[[], Any], reps: int) -> float:
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _tokens(space: SearchSpace, batch: int, seq: int, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, space.vocab_size, (batch, seq)), jnp.int32)


def check_masked_dense(space: SearchSpace, plan: dict[str, int]) -> dict[str, Any]:
    supernet = model.Supernet(space, rngs=nnx.Rngs(0))
    graph, state = nnx.split(supernet)
    tokens = _tokens(space, plan["batch"], plan["seq"])
    masked = jax.jit(lambda s, t, a: nnx.merge(graph, s)(t, a))
    row: dict[str, Any] = {}
    for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        dense_graph, dense_state = nnx.split(supernet.extract(arch))
        dense = jax.jit(lambda s, t, g=dense_graph: nnx.merge(g, s)(t))
        with jax.default_matmul_precision("highest"):  # TF32 would hide a real difference
            diff = float(jnp.abs(masked(state, tokens, arch) - dense(dense_state, tokens)).max())
        masked_s = _median_seconds(lambda a=arch: masked(state, tokens, a), plan["reps"])
        dense_s = _median_seconds(lambda s=dense_state, f=dense: f(s, tokens), plan["reps"])
        row |= {f"{name}_max_abs_diff": diff, f"{name}_masked_s": masked_s,
                f"{name}_dense_s": dense_s, f"{name}_masked_over_dense": masked_s / dense_s}
    row["ok"] = max(row["largest_max_abs_diff"], row["smallest_max_abs_diff"]) <= TOLERANCE
    return row | {"batch": plan["batch"], "seq": plan["seq"], "tolerance": TOLERANCE}


def _train_config(space: SearchSpace, plan: dict[str, int], dtype: str, data_dir: str) -> Any:
    """The training checks' config: the plan's batch (a multiple of the local devices)."""
    from hwgpt_jax.base.config import config_from_mapping
    from hwgpt_jax.stages.train_config import TrainConfig

    batch = -(-plan["train_batch"] // jax.local_device_count()) * jax.local_device_count()
    return config_from_mapping(TrainConfig, {
        "model": {"scale": space.scale, "compute_dtype": dtype},
        "train": {"steps": 100, "batch_size": batch, "seq_len": plan["train_seq"],
                  "eval_every": 0, "checkpoint_every": 100}, "optim": {"warmup_steps": 1},
        "data": {"data_dir": data_dir}})  # tokenized once, shared by every training check


def check_train(space: SearchSpace, plan: dict[str, int], dtype: str,
                data_dir: str) -> dict[str, Any]:
    from hwgpt_jax.stages.train import Trainer

    n_dev = jax.local_device_count()
    cfg = _train_config(space, plan, dtype, data_dir)
    batch = cfg.train.batch_size
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out)
        try:
            start = time.perf_counter()
            first = trainer.step()
            first_s = time.perf_counter() - start
            steps, losses = [], [first["loss"]]
            for _ in range(plan["train_steps"]):
                start = time.perf_counter()
                losses.append(trainer.step()["loss"])
                steps.append(time.perf_counter() - start)
            programs = trainer.gradient_programs
        finally:
            trainer.close()
    step_s = float(np.median(steps))
    return {"ok": all(math.isfinite(x) for x in losses), "dtype": dtype, "devices": n_dev,
            "batch": batch, "seq": plan["train_seq"], "first_step_s": first_s,
            "step_s": step_s, "tokens_per_s": batch * plan["train_seq"] / step_s,
            "losses": losses, "gradient_programs": programs,
            "gradient_programs_max": len(space.embed_dims)}


def check_data_parallel(space: SearchSpace, plan: dict[str, int],
                        data_dir: str) -> dict[str, Any]:
    """The same global batch and fixed sandwich on one device and on all local devices."""
    from hwgpt_jax.model.step import Member
    from hwgpt_jax.stages.train import Trainer

    devices = jax.local_devices()
    if len(devices) < 2:
        return {"ok": True, "skipped": "one local device: nothing to compare"}
    cfg = _train_config(space, plan, "float32", data_dir)
    # A sampled sub-network at the smallest width: the programs of the largest and smallest
    # widths serve all three members (the all-device ones were compiled by `train_float32`).
    genes = space.genes(space.sample(jax.random.key(5), 1).to_numpy())
    genes[:, 0] = 0
    fixed = space.from_genes(genes).to_numpy()

    def members(n: int) -> list[Member]:
        def tile(arch: Arch) -> Arch:
            return jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], n, axis=0), arch)
        return [Member("largest", tile(space.largest()), max(space.embed_dims)),
                Member("smallest", tile(space.smallest()), min(space.embed_dims)),
                Member("random0", tile(fixed[0]), min(space.embed_dims))]

    worst_loss, params_close, params_diff = 0.0, True, 0.0
    # TF32 would make the two runs round differently. CPUs compute float32 products as asked,
    # and keeping the default there lets a compilation cache serve `train_float32`'s programs.
    precise = (contextlib.nullcontext() if jax.default_backend() == "cpu"
               else jax.default_matmul_precision("highest"))
    with tempfile.TemporaryDirectory() as out, precise:
        one = Trainer(cfg, f"{out}/one", devices=devices[:1])
        every = Trainer(cfg, f"{out}/every", devices=devices)
        try:
            for _ in range(plan["parallel_steps"]):
                a, b = one.step(members(1)), every.step(members(len(devices)))
                for k in ("loss/largest", "loss/smallest", "loss/random0"):
                    worst_loss = max(worst_loss, abs(a[k] - b[k]) / abs(a[k]))
            first = jax.tree.map(lambda x: np.asarray(x[0]), (one.params, every.params))
            for x, y in zip(*map(jax.tree.leaves, first), strict=True):
                params_close &= bool(np.all(np.abs(x - y) <= 1e-6 + 1e-4 * np.abs(y)))
                params_diff = max(params_diff, float(np.max(np.abs(x - y))))
        finally:
            one.close()
            every.close()
    return {"ok": worst_loss <= 1e-5 and params_close, "devices": len(devices),
            "steps": plan["parallel_steps"], "max_rel_loss_diff": worst_loss,
            "max_abs_param_diff": params_diff}


def check_evaluate(space: SearchSpace, plan: dict[str, int]) -> dict[str, Any]:
    from hwgpt_jax.measure.quality import Evaluator

    params = model.Supernet(space, rngs=nnx.Rngs(0)).params()
    windows = np.asarray(_tokens(space, plan["eval_windows"], plan["eval_seq"] + 1, seed=1))
    archs = space.sample_unique(jax.random.key(0), plan["eval_archs"])
    evaluator = Evaluator(params, space, windows)
    start = time.perf_counter()
    evaluator.evaluate(archs)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluator.evaluate(archs)
    steady_s = time.perf_counter() - start
    dims = len(set(np.asarray(archs.embed_dim).tolist()))
    return {"ok": bool(np.all(np.isfinite(result.perplexity))) and evaluator.compiles == dims,
            "archs": len(archs), "windows": plan["eval_windows"], "seq": plan["eval_seq"],
            "compiles": evaluator.compiles, "embed_dims": dims, "first_pass_s": first_s,
            "archs_per_s": len(archs) / steady_s,
            "tokens_per_s": len(archs) * result.tokens / steady_s}


def check_profile(space: SearchSpace, plan: dict[str, int]) -> dict[str, Any]:
    from hwgpt_jax.measure.profiler import Profiler
    from hwgpt_jax.measure.profiler import ProfileSettings as ProfileConfig

    device = jax.devices()[0]
    dtype = "float32" if device.platform == "cpu" else "bfloat16"
    profiler = Profiler(space, ProfileConfig(seq=plan["profile_seq"], reps=plan["profile_reps"],
                                             warmup=2, dtype=dtype))
    archs = space.sample_unique(jax.random.key(2), 5)
    medians: dict[str, list[float]] = {}
    for i in range(len(archs)):
        table = profiler.measure(archs[i])
        for metric, values in table.groupby("metric")["value"]:
            medians.setdefault(metric, []).append(float(np.nanmedian(values))
                                                  if values.notna().any() else float("nan"))
    gpu = device.platform == "gpu"
    energy_ok = not gpu or all(math.isfinite(v) and v > 0 for v in medians.get("energy", []))
    memory_ok = not gpu or "memory_allocator_peak" in medians
    latency_ok = all(math.isfinite(v) and v > 0 for v in medians["latency"])
    return {"ok": latency_ok and energy_ok and memory_ok, "dtype": dtype,
            "seq": plan["profile_seq"], "energy_source": profiler.energy.source
            if profiler.energy.available else profiler.energy.reason,
            "latency_ms": medians["latency"], "energy_j": medians.get("energy"),
            "memory_allocator_peak_mb": medians.get("memory_allocator_peak"),
            "memory_xla_mb": medians.get("memory"), "compiles": profiler.compiles}


def check_pmap(space: SearchSpace, plan: dict[str, int]) -> dict[str, Any]:
    from hwgpt_jax.model.step import replicate

    n_dev = jax.local_device_count()
    params = model.Supernet(space, rngs=nnx.Rngs(0)).params()
    tokens = _tokens(space, 1, plan["seq"], seed=3)
    archs = space.sample(jax.random.key(4), n_dev)

    def forward(p: Any, a: Arch) -> tuple[jax.Array, jax.Array]:
        return model.masked_forward(p, tokens, a, space), jax.lax.psum(1, "devices")

    with jax.default_matmul_precision("highest"):
        replicated = replicate(params, jax.local_devices())
        logits, count = jax.pmap(forward, "devices")(replicated, archs)
        # params as an argument, not a closure: captured, they would become HLO constants
        single = jax.jit(lambda p, a: model.masked_forward(p, tokens, a, space))
        diff = max(float(jnp.abs(logits[i] - single(params, archs[i])).max())
                   for i in range(n_dev))
    return {"ok": diff <= TOLERANCE and int(count[0]) == n_dev, "devices": n_dev,
            "max_abs_diff": diff}


def check_query_search(space: SearchSpace, plan: dict[str, int]) -> dict[str, Any]:
    from hwgpt_jax.search.nsga2 import NSGA2
    from hwgpt_jax.search.objectives import build_problem
    from hwgpt_jax.search.runner import run_compiled
    from hwgpt_jax.surrogates.benchmark import Benchmark  # heavy imports, only for this check

    bench = Benchmark.published("s")  # the published surrogates exist for s, m and l
    keys = ["perplexity", f"latency:{bench.devices('latency')[0]}"]
    archs = bench.space.sample(jax.random.key(0), plan["query_n"])
    objective = jax.jit(bench.objective_fn(keys))
    query_s = _median_seconds(lambda: objective(archs, jax.random.key(1)), 3)
    problem = build_problem(bench.space, keys, bench=bench)
    algorithm = NSGA2(bench.space, 2, population_size=plan["population"])
    budget = plan["population"] * plan["generations"]
    run_compiled(algorithm, problem, budget, jax.random.key(0))  # compile
    start = time.perf_counter()
    run_compiled(algorithm, problem, budget, jax.random.key(1))  # results come back as NumPy
    search_s = time.perf_counter() - start
    values = np.asarray(objective(archs, jax.random.key(1)))
    return {"ok": bool(np.all(np.isfinite(values))), "metrics": keys,
            "query_archs_per_s": plan["query_n"] / query_s,
            "search_evaluations_per_s": budget / search_s, "population": plan["population"],
            "generations": plan["generations"]}


def _finite(value: Any) -> Any:
    """JSON-ready: NaN and infinities (no sensor, a failed figure) become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for accelerator_check.jsonl")
    parser.add_argument("--scale", choices=sorted(PLANS), default=None,
                        help="default: s on an accelerator, tiny on CPU")
    parser.add_argument("--skip", action="append", default=[], choices=CHECKS, metavar="CHECK",
                        help=f"leave this check out (repeatable): one of {', '.join(CHECKS)}")
    args = parser.parse_args()
    platform = jax.default_backend()
    scale = args.scale or ("tiny" if platform == "cpu" else "s")
    space, plan = get_space(scale), PLANS[scale]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "accelerator_check.jsonl"
    device = jax.devices()[0]
    base = {"scale": scale, "platform": platform, "device_kind": device.device_kind,
            "devices": jax.local_device_count(), "jax": jax.__version__}
    checks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("masked_dense", lambda: check_masked_dense(space, plan)),
        ("train_float32", lambda: check_train(space, plan, "float32", data_dir)),
        ("train_bfloat16", lambda: check_train(space, plan, "bfloat16", data_dir)),
        ("data_parallel", lambda: check_data_parallel(space, plan, data_dir)),
        ("evaluate", lambda: check_evaluate(space, plan)),
        ("profile", lambda: check_profile(space, plan)),
        ("pmap", lambda: check_pmap(space, plan)),
        ("query_search", lambda: check_query_search(space, plan)),
    ]
    data_dir = tempfile.mkdtemp(prefix="accelerator_check_data")
    lines, started = [], time.perf_counter()
    assert [name for name, _ in checks] == list(CHECKS)
    for name, check in checks:
        start = time.perf_counter()
        try:
            row = {"ok": True, "skipped": "--skip"} if name in args.skip else check()
        except Exception as err:  # a failed check is recorded, the others still run
            last = traceback.format_exception_only(err)[-1].strip()
            row = {"ok": False, "error": last[:300]}
        row = {"check": name, **row, "seconds": time.perf_counter() - start, **base}
        lines.append(json.dumps(_finite(row)))
        print(lines[-1], flush=True)
        write_text_atomic(path, "".join(line + "\n" for line in lines))
    failed = [json.loads(line)["check"] for line in lines if not json.loads(line)["ok"]]
    summary = {"check": "summary", "ok": not failed, "failed": failed,
               "seconds": time.perf_counter() - started, **base}
    lines.append(json.dumps(summary))
    print(lines[-1], flush=True)
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
