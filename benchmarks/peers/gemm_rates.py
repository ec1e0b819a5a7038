"""Float32 matrix-product rates of XLA:CPU and its CPU peers on a training step's products.

Prints one JSON line. Libraries: `xla` (what our programs run: XLA:CPU's default, YNNPACK
for most products), `xla-eigen` (XLA with its YNNPACK products off: Eigen), `numpy`
(NumPy's BLAS, OpenBLAS in the wheels) and `torch` (PyTorch's, MKL in the x86 wheels) when a
Python with torch is given or importable. Each library runs in a process of its own (PyTorch's
OpenMP threads slow XLA down when both live in one process), the processes alternate over
rounds and each shape's rate is the median over rounds (this machine's speed drifts by tens of
percent within minutes).

Shapes: the products of one forward + backward of the space's largest arch on batch x seq
tokens T: per layer the qkv, attention-output, MLP-in and MLP-out projections (forward
`x @ W`, input gradient `dy @ W.T`, weight gradient `x.T @ dy`) and the tied head (logits
`h @ E.T`, input gradient `dlogits @ E`, embedding gradient `dlogits.T @ h`). Attention's own
batched products are left out (the row says which share of the FLOPs the shapes cover).

`largest_step_gemm_s`: the seconds these products take at a library's rates for one
forward + backward of the largest arch (each product's count times its time): the step's
floor with that library's products. `train_throughput.py` measures our whole step, and
`pytorch_reference.py --train` PyTorch's.

    .venv/bin/python benchmarks/peers/gemm_rates.py --scale s [--rounds 5]
        [--torch-python /path/to/python-with-torch]
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import statistics
import subprocess
import sys
import time
from functools import partial

LIBRARIES = ("xla", "xla-eigen", "numpy", "torch")


def step_products(scale: str, batch: int, seq: int) -> tuple[list[dict], float]:
    """The largest arch's products per training step: name, (m, k, n), layout, count; and
    the step's matrix-product FLOPs (`costs.training_flops`)."""
    import numpy as np

    from hwgpt_jax.space.arch import get_space
    from hwgpt_jax.space.costs import training_flops

    space = get_space(scale)
    largest = space.largest()
    d, layers = max(space.embed_dims), int(largest.n_layer)
    qkv = 3 * max(space.n_heads) * space.head_size
    attn = qkv // 3
    hidden, vocab, tokens = d * max(space.mlp_ratios), space.padded_vocab_size, batch * seq
    products = []
    for name, fan_in, fan_out in (("qkv", d, qkv), ("attn_out", attn, d), ("mlp_in", d, hidden),
                                  ("mlp_out", hidden, d)):
        products += [
            {"name": f"{name}_forward", "mkn": (tokens, fan_in, fan_out), "layout": "NN",
             "count": layers},
            {"name": f"{name}_input_grad", "mkn": (tokens, fan_out, fan_in), "layout": "NT",
             "count": layers},
            {"name": f"{name}_weight_grad", "mkn": (fan_in, tokens, fan_out), "layout": "TN",
             "count": layers}]
    products += [
        {"name": "head_forward", "mkn": (tokens, d, vocab), "layout": "NT", "count": 1},
        {"name": "head_input_grad", "mkn": (tokens, vocab, d), "layout": "NN", "count": 1},
        {"name": "head_embedding_grad", "mkn": (vocab, tokens, d), "layout": "TN", "count": 1}]
    step_flops = float(np.asarray(training_flops(largest, space, batch, seq)))
    return products, step_flops


def _operands(m: int, k: int, n: int, layout: str, make):
    """Operands stored as autodiff hands them to the library, and their views for `a @ b`
    (transposed where the layout says so)."""
    a = make((k, m) if layout[0] == "T" else (m, k))
    b = make((n, k) if layout[1] == "T" else (k, n))
    return (a, b), _oriented(a, b, layout)


def _oriented(a, b, layout: str):
    return (a.T if layout[0] == "T" else a), (b.T if layout[1] == "T" else b)


def _views_product(stored, views, layout: str):
    """NumPy's and PyTorch's timed call: the product of the (transposed) views."""
    return partial(operator.matmul, *views)


def _rate(run, flops: float, min_seconds: float) -> float:
    run()  # warm up (and compile)
    reps, elapsed = 0, 0.0
    start = time.perf_counter()
    while elapsed < min_seconds or reps < 2:
        run()
        reps += 1
        elapsed = time.perf_counter() - start
    return flops * reps / elapsed / 1e9


def worker(library: str, products: list[dict], min_seconds: float) -> list[float]:
    """GFLOP/s of each product with one library, in this process."""
    call = _views_product
    if library.startswith("xla"):
        import jax
        import jax.numpy as jnp

        options = {"xla_cpu_experimental_ynn_fusion_type": ""} if library == "xla-eigen" else {}
        make = partial(jnp.ones, dtype=jnp.float32)

        def call(stored, views, layout):  # the transposes go inside the compiled program
            fn = jax.jit(lambda a, b: operator.matmul(*_oriented(a, b, layout)))
            compiled = fn.lower(*stored).compile(compiler_options=options)
            return lambda: compiled(*stored).block_until_ready()
    elif library == "numpy":
        import numpy as np

        make = partial(np.ones, dtype=np.float32)
    elif library == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        make = partial(torch.ones, dtype=torch.float32)
    else:
        raise ValueError(f"unknown library {library!r}, expected one of {LIBRARIES}")
    rates = []
    for p in products:
        (m, k, n), layout = p["mkn"], p["layout"]
        stored, views = _operands(m, k, n, layout, make)
        rates.append(_rate(call(stored, views, layout), 2.0 * m * k * n, min_seconds))
    return rates


def _run_worker(python: str, library: str, products: list[dict], min_seconds: float
                ) -> list[float]:
    command = [python, os.path.abspath(__file__), "--worker", library,
               "--min-seconds", str(min_seconds)]
    done = subprocess.run(command, input=json.dumps(products), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{library} worker failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _has_torch(python: str) -> bool:
    return subprocess.run([python, "-c", "import torch"], capture_output=True,
                          check=False).returncode == 0


def measure(scale: str, batch: int, seq: int, rounds: int, min_seconds: float,
            torch_python: str | None) -> dict:
    import jax

    from hwgpt_jax.measure.profiler import host_cpu_model

    products, step_flops = step_products(scale, batch, seq)
    pythons = {"xla": sys.executable, "xla-eigen": sys.executable, "numpy": sys.executable}
    torch_python = torch_python or sys.executable
    torch_note = None
    if _has_torch(torch_python):
        pythons["torch"] = torch_python
    else:
        torch_note = f"torch is not importable by {torch_python} (--torch-python)"
    rates = {library: [] for library in pythons}
    for round_ in range(rounds):
        order = list(pythons) if round_ % 2 == 0 else list(pythons)[::-1]
        for library in order:
            rates[library].append(_run_worker(pythons[library], library, products,
                                              min_seconds))
            print(f"round {round_ + 1}/{rounds}: {library} done", file=sys.stderr, flush=True)
    covered = sum(p["count"] * 2.0 * math.prod(p["mkn"]) for p in products)
    row = {"benchmark": "gemm_rates", "scale": scale, "batch": batch, "seq": seq,
           "dtype": "float32", "rounds": rounds, "cpu": host_cpu_model(),
           "cpu_threads": os.cpu_count(), "jax": jax.__version__,
           "step_flops_covered": covered / step_flops, "gflops": {}, "largest_step_gemm_s": {}}
    for library, runs in rates.items():
        medians = [statistics.median(run[i] for run in runs) for i in range(len(products))]
        row["gflops"][library] = {p["name"]: round(r, 1) for p, r in zip(products, medians,
                                                                         strict=True)}
        row["largest_step_gemm_s"][library] = round(sum(
            p["count"] * 2.0 * math.prod(p["mkn"]) / (r * 1e9)
            for p, r in zip(products, medians, strict=True)), 3)
    if torch_note:
        row["torch"] = torch_note
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="s")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="time each product for at least this long per round")
    parser.add_argument("--torch-python", help="a Python with torch (default: this one)")
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # internal: one library, products as JSON on stdin
        print(json.dumps(worker(args.worker, json.loads(sys.stdin.read()), args.min_seconds)))
        return
    for name in ("rounds", "batch", "seq"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: expected a positive integer")
    try:
        row = measure(args.scale, args.batch, args.seq, args.rounds, args.min_seconds,
                      args.torch_python)
    except (ValueError, RuntimeError) as error:  # unknown scale, a failed worker
        sys.exit(f"gemm_rates.py: {error}")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if "--worker" not in sys.argv:
        from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator

        reexec_with_tuned_allocator()  # the workers inherit the allocator settings
    main()
