"""Throughput of the data stage: BBC tokenization (tokens/s per thread count) and the grain
training window pipeline (windows/s). Prints one JSON line per measurement.

    .venv/bin/python benchmarks/tokenize_throughput.py [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.data import shards as shards_lib
from hwgpt_jax.data import sources
from hwgpt_jax.data import windows as windows_lib


def _best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=500)
    args = parser.parse_args()
    machine = {"cpu_count": os.cpu_count(), "machine": platform.machine()}

    documents = sources.bbc_documents()
    num_tokens = shards_lib.tokenize_documents(documents).size
    for threads in args.threads:
        seconds = _best_of(args.repeats, lambda t=threads: shards_lib.tokenize_documents(
            documents, num_threads=t))
        print(json.dumps({"benchmark": "tokenize_bbc", "threads": threads,
                          "documents": len(documents), "tokens": int(num_tokens),
                          "seconds": round(seconds, 4), "tokens_per_s": round(num_tokens / seconds),
                          **machine}))

    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        shards = shards_lib.prepare_corpus("bbc", out_dir, seed=0)
        prepare_seconds = time.perf_counter() - start
        print(json.dumps({"benchmark": "prepare_corpus_bbc", "seconds": round(prepare_seconds, 4),
                          "train_tokens": shards.train_tokens, "val_tokens": shards.val_tokens,
                          **machine}))
        iterator = windows_lib.train_iterator(shards, args.batch_size, args.block_size, seed=0)
        next(iterator)  # start the prefetch threads outside the timing
        start = time.perf_counter()
        checksum = 0
        for _ in range(args.batches):
            checksum += int(np.asarray(next(iterator))[0, 0])
        seconds = time.perf_counter() - start
        print(json.dumps({"benchmark": "train_iterator", "batch_size": args.batch_size,
                          "block_size": args.block_size, "batches": args.batches,
                          "batches_per_s": round(args.batches / seconds, 1),
                          "tokens_per_s": round(args.batches * args.batch_size
                                                * args.block_size / seconds), **machine}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
