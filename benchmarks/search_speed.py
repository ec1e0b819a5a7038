"""NSGA-II speed: hwgpt_jax (whole run in one jit) against pymoo's NSGA-II, same objectives.

Objectives: `random_mlp_objective` (a fixed random-init MLP on the one-hot encoding of the s
space, two conflicting outputs standing in for perplexity and latency), jit-compiled and
called by both. Same population and generations for both. Reports wall time (ours: first
call including compilation, and a second call with a different seed), evaluations/s, and the
hypervolume of each final population's non-dominated set, normalized by the per-objective
min/max over everything both runs evaluated (reference point 1, 1).

    .venv/bin/python benchmarks/search_speed.py [--population 4096] [--generations 100]
        [--surrogates DIR [--device a100]]   # the fitted Benchmark's perplexity and latency
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import pymoo
from pymoo.algorithms.moo import nsga2 as pymoo_nsga2
from pymoo.core.problem import Problem as PymooProblem
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.search.base import Problem
from hwgpt_jax.search.nsga2 import NSGA2
from hwgpt_jax.search.objectives import random_mlp_objective
from hwgpt_jax.search.pareto import hypervolume, non_dominated_mask, normalize_objectives
from hwgpt_jax.search.runner import run_compiled
from hwgpt_jax.space.arch import get_space


class _PymooArchProblem(PymooProblem):
    def __init__(self, space, evaluate):
        card = np.asarray(space.gene_cardinality)
        super().__init__(n_var=len(card), n_obj=2, xl=np.zeros(len(card)), xu=card - 1,
                         vtype=int)
        self.evaluate_genes = evaluate

    def _evaluate(self, x, out, *args, **kwargs):
        out["F"] = np.asarray(self.evaluate_genes(jnp.asarray(np.rint(x).astype(np.int32))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=4096)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pymoo", action="store_true")
    parser.add_argument("--surrogates", help="a `hwgpt fit` folder: optimize its perplexity and "
                        "latency on --device (median) instead of the synthetic MLP")
    parser.add_argument("--ours-seeds", type=int, default=1,
                        help="also report our final HV over this many seeds (mean, min, max)")
    parser.add_argument("--device", help="latency device of --surrogates (default: its first)")
    args = parser.parse_args()
    if args.surrogates:
        from hwgpt_jax.surrogates.benchmark import Benchmark

        bench = Benchmark.load(args.surrogates)
        space = bench.space
        device = args.device or bench.devices("latency")[0]
        metrics = ["perplexity", f"latency:{device}"]
        objective = bench.objective_fn(metrics)
        objective_name = (f"surrogate Benchmark {args.surrogates}: {', '.join(metrics)} "
                          f"(median), {space.scale} space")
    else:
        space = get_space("s")
        objective = random_mlp_objective(space, seed=args.seed)
        objective_name = ("random_mlp_objective (synthetic stand-in: fixed random-init MLP on "
                          "the one-hot encoding, s space; the surrogate Benchmark was not used)")
    problem = Problem(space, objective, 2)
    budget = args.population * args.generations
    algorithm = NSGA2(space, 2, population_size=args.population)

    start = time.perf_counter()
    state, _ = run_compiled(algorithm, problem, budget, jax.random.key(args.seed))
    jax.block_until_ready(state)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    state, ours_all = run_compiled(algorithm, problem, budget, jax.random.key(args.seed + 1))
    jax.block_until_ready(state)
    ours_s = time.perf_counter() - start
    ours_final = np.asarray(state.member_objectives)
    extra_finals, extra_all = [], []
    for extra_seed in range(args.seed + 2, args.seed + 1 + args.ours_seeds):
        extra_state, extra = run_compiled(algorithm, problem, budget, jax.random.key(extra_seed))
        extra_finals.append(np.asarray(extra_state.member_objectives))
        extra_all.append(np.asarray(extra.objectives))

    record = {
        "figure": "nsga2_search_speed",
        "objective": objective_name,
        "population": args.population, "generations": args.generations,
        "evaluations": budget,
        "ours_wall_s": round(ours_s, 3), "ours_first_call_with_compile_s": round(first_s, 3),
        "ours_evaluations_per_s": round(budget / ours_s),
        "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()})",
        "versions": {"jax": jax.__version__, "pymoo": pymoo.__version__},
        "seed": args.seed,
    }
    finals = [ours_final]
    if not args.skip_pymoo:
        evaluate = jax.jit(lambda genes: objective(space.from_genes(genes),
                                                   jax.random.key(0)))
        pymoo_problem = _PymooArchProblem(space, evaluate)
        pymoo_algorithm = pymoo_nsga2.NSGA2(
            pop_size=args.population, sampling=IntegerRandomSampling(),
            crossover=UniformCrossover(), mutation=PM(eta=3.0, vtype=float,
                                                      repair=RoundingRepair()))
        evaluate(jnp.zeros((args.population, len(space.gene_cardinality)), jnp.int32))  # compile
        start = time.perf_counter()
        res = minimize(pymoo_problem, pymoo_algorithm, ("n_gen", args.generations),
                       seed=args.seed, verbose=False)
        pymoo_s = time.perf_counter() - start
        pymoo_final = np.asarray(res.pop.get("F"))
        finals.append(pymoo_final)
        record.update({
            "pymoo_wall_s": round(pymoo_s, 3),
            "pymoo_evaluations": int(res.algorithm.evaluator.n_eval),
            "pymoo_evaluations_per_s": round(res.algorithm.evaluator.n_eval / pymoo_s),
            "speedup": round(pymoo_s / ours_s, 1),
            "pymoo_operators": "IntegerRandomSampling, UniformCrossover, PM(eta=3)+rounding",
        })
    everything = np.concatenate([ours_all.objectives] + finals + extra_all)
    lower, upper = everything.min(0), everything.max(0)

    def final_hypervolume(final: np.ndarray) -> float:
        front = final[np.asarray(non_dominated_mask(jnp.asarray(final)))]
        normalized = normalize_objectives(front.astype(np.float64), lower, upper)
        return round(hypervolume(normalized, np.ones(2)), 6)

    for label, final in zip(["ours", "pymoo"], finals):
        record[f"{label}_final_hypervolume"] = final_hypervolume(final)
    if extra_finals:
        values = [final_hypervolume(f) for f in [ours_final] + extra_finals]
        record["ours_final_hypervolume_over_seeds"] = {
            "seeds": len(values), "mean": round(float(np.mean(values)), 6),
            "min": min(values), "max": max(values)}
    print(json.dumps(record))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
