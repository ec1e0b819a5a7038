"""Sandwich-step throughput of supernet training (prints JSON lines).

For each scale: compile time of the step programs (one gradient program per embed dim, one
for the largest arch, and the update), the time of a step with the largest arch alone, and of
full sandwich steps (largest + smallest + K random, gradients accumulated, one AdamW update),
median over steps.

Usage: python benchmarks/train_throughput.py [--scales tiny s] [--batch 8] [--seq 256]
       [--steps 8]
Reference (PyTorch HW-GPT-Bench supernet, this machine, 2 threads, fp32, batch 8 x seq 256,
GPT-S, glibc's default allocator): largest alone 10.6 s per step; sandwich step 20.8 s. The
script restarts itself with the allocator settings that `hwgpt` uses (`hwgpt_jax.cli.runtime`;
`HWGPT_SYSTEM_MALLOC=1` keeps glibc's defaults); the row records them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import jax

from hwgpt_jax.base.config import config_from_mapping
from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.model.step import Member, sandwich_members
from hwgpt_jax.space.costs import training_flops
from hwgpt_jax.stages.train import Trainer
from hwgpt_jax.stages.train_config import TrainConfig

PYTORCH_S_SANDWICH_SECONDS = 20.8
PYTORCH_S_LARGEST_SECONDS = 10.6


def measure(scale: str, batch: int, seq: int, steps: int) -> dict:
    cfg = config_from_mapping(TrainConfig, {
        "model": {"scale": scale},
        "train": {"steps": 1000, "batch_size": batch, "seq_len": seq, "eval_every": 0,
                  "checkpoint_every": 1000}})
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out)
        space, n_dev = trainer.space, len(trainer.devices)
        # Compile: one sandwich of the largest arch (its own unconditional program) and members
        # covering every embed dim, so every gradient program exists before timing.
        largest = sandwich_members(space, jax.random.key(0), n_dev, 0)[:1]
        every_dim = [Member(f"dim{d}", m.arch, d) for d, m in zip(
            space.embed_dims, [_with_dim(space, d, n_dev) for d in space.embed_dims],
            strict=True)]
        start = time.perf_counter()
        trainer.step(largest + every_dim)
        compile_seconds = time.perf_counter() - start
        largest_runs = [_timed(trainer, largest)[:3] for _ in range(max(2, steps // 2))]
        sandwich_runs, draws = [], []
        for _ in range(steps):
            members = trainer.draw_members()  # what `step()` would draw; recorded below
            *run, metrics = _timed(trainer, members)
            sandwich_runs.append(run)
            draws.append({"archs": {m.name: space.arch_ids(m.arch[0])[0] for m in members},
                          "seconds": {k.removeprefix("seconds/"): round(v, 2) for k, v in
                                      metrics.items() if k.startswith("seconds/")}})
        trainer.close()
    if n_dev == 1:  # one device: the recorded archs are the whole step's work
        for draw, (wall, *_) in zip(draws, sandwich_runs, strict=True):
            draw["matmul_gflops_per_s"] = round(
                step_matmul_flops(space, draw["archs"], batch, seq) / wall / 1e9, 1)
    device = jax.devices()[0]
    tokens = batch * seq
    largest_times, sandwich_times = [w for w, *_ in largest_runs], [w for w, *_ in sandwich_runs]
    row = {
        "benchmark": "train_throughput", "scale": scale, "batch": batch, "seq": seq,
        "dtype": "float32", "devices": n_dev, "device": device.device_kind,
        "platform": device.platform, "jax": jax.__version__,
        "members": 2 + cfg.train.num_random_archs,
        "compile_plus_first_step_s": compile_seconds,
        "largest_step_s": statistics.median(largest_times),
        "sandwich_step_s": statistics.median(sandwich_times),
        "sandwich_step_s_all": sandwich_times,
        "tokens_per_s_sandwich": tokens / statistics.median(sandwich_times),
        "tokens_per_s_largest": tokens / statistics.median(largest_times),
        "largest_step_cpu_s": statistics.median(c for _, c, _ in largest_runs),
        "sandwich_step_cpu_s": statistics.median(c for _, c, _ in sandwich_runs),
        "sandwich_step_cpu_s_all": [round(c, 2) for _, c, _ in sandwich_runs],
        "sandwich_step_minor_page_faults": statistics.median(f for *_, f in sandwich_runs),
        # Per step: each member's arch (device 0) and seconds, and the update's seconds. The
        # random draws weigh on the step time (a width-768 member costs several narrow ones);
        # `pytorch_reference.py --sandwich-from` replays exactly these archs.
        # `matmul_gflops_per_s`: the step's matrix-product FLOPs over its seconds, to set
        # beside `gemm_rates.py`'s rates of the products alone.
        "sandwich_steps": draws,
        "cpu_threads": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    if scale == "s" and (batch, seq) == (8, 256):
        row["speedup_vs_pytorch_sandwich"] = PYTORCH_S_SANDWICH_SECONDS / row["sandwich_step_s"]
        row["speedup_vs_pytorch_largest"] = PYTORCH_S_LARGEST_SECONDS / row["largest_step_s"]
        # On a loaded machine: the speed-up this process would have alone on its 2 threads
        # (CPU seconds / threads), an estimate next to the measured wall-clock ratio.
        threads = min(2, os.cpu_count() or 1)
        row["speedup_vs_pytorch_sandwich_cpu_time_estimate"] = (
            PYTORCH_S_SANDWICH_SECONDS / (row["sandwich_step_cpu_s"] / threads))
    return row


def step_matmul_flops(space, archs: dict[str, str], batch: int, seq: int) -> float:
    """Matrix-product FLOPs of the members' forward + backward passes, members by arch id."""
    return sum(float(training_flops(space.from_ids([arch_id])[0], space, batch, seq))
               for arch_id in archs.values())


def _with_dim(space, dim, n_dev):
    arch = space.largest().to_numpy()
    arch = type(arch)(embed_dim=arch.embed_dim * 0 + dim, n_layer=arch.n_layer,
                      n_head=arch.n_head, mlp_ratio=arch.mlp_ratio, bias=arch.bias)
    return Member(str(dim), jax.tree.map(lambda x: x[None].repeat(n_dev, 0), arch), dim)


def _timed(trainer: Trainer, members) -> tuple[float, float, int, dict]:
    """Wall and process-CPU seconds of one step (CPU time is the steadier figure on a shared
    machine: other processes inflate wall time, not this process's CPU time), the minor
    page faults it took (see `hwgpt_jax.cli.runtime`) and the step's metrics."""
    start, cpu, faults = time.perf_counter(), time.process_time(), _minor_faults()
    metrics = trainer.step(members)  # blocks: reads the losses
    return (time.perf_counter() - start, time.process_time() - cpu, _minor_faults() - faults,
            metrics)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "s"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    for scale in args.scales:
        print(json.dumps(measure(scale, args.batch, args.seq, args.steps)), flush=True)


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
