"""Multi-host launcher for `hwgpt train`: run one copy per host (TPU pod slice, GPU cluster).

Each process joins the JAX distributed runtime, then runs the same `hwgpt train` command.
Data: every process reads its own shard of the train windows (grain ShardOptions with
`jax.process_index()` / `jax.process_count()`), so `train.batch_size` is per process. Prepare
the token shards once (e.g. `hwgpt train ... --steps 0` is not needed: the first process to
write them wins atomically; give every host the same `data.data_dir` on shared storage or
its own local copy). Checkpoints go through orbax, which coordinates multi-host saves.

    # on TPU pods and SLURM clusters, jax.distributed.initialize() detects everything:
    python train/launch_multihost.py -- --config s --out /shared/runs/s
    # elsewhere, name the coordinator and this process explicitly, on every host:
    python train/launch_multihost.py --coordinator 10.0.0.1:1234 --num-processes 4 \\
        --process-id $RANK -- --config s --out /shared/runs/s

Single-process mode (`--num-processes 1`) runs the same code path on one machine.
"""

from __future__ import annotations

import argparse
import sys

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="host:port of process 0 (auto-detected if unset)")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="arguments of `hwgpt train`, after --")
    args = parser.parse_args(argv)
    import jax  # here, not at the top: the allocator restart would import it twice

    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    from hwgpt_jax.cli import main as hwgpt_main  # after initialize(): it must come first

    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    try:
        return hwgpt_main(["train", *train_args])
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # as `hwgpt` does; before initialize(): the process is replaced
    sys.exit(main())
