"""A search experiment: several algorithms x seeds on one problem, written as tables and plots.

Outputs in one folder (every file written atomically, parquet files carry the run's metadata
as JSON under the key b"hwgpt"): `trajectory.parquet` (every evaluation: algorithm, seed,
evaluation index, arch id and fields, every metric, feasibility), `hypervolume.parquet`
(hypervolume after every batch), `pareto.parquet` (each run's feasible Pareto set with all
metrics), `summary.json`, `pareto_front.png` and `hypervolume.png` (mean and min-max over
seeds). Hypervolume uses objectives normalized as in HW-GPT-Bench (arXiv 2405.10299):
min-max between the smallest and the largest architecture's values, reference point
`ref_point` in every normalized objective.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import write_parquet_atomic, write_text_atomic
from hwgpt_jax.search.base import Problem
from hwgpt_jax.search.pareto import non_dominated_mask, normalization_bounds
from hwgpt_jax.search.registry import (
    ALGORITHMS,
    EVOSAX_PREFIX,
    MODEL_BASED,
    check_algorithm_name,
    make_algorithm,
)
from hwgpt_jax.search.runner import (
    SearchResult,
    hypervolume_curve,
    infeasibility_message,
    run_search,
)
from hwgpt_jax.search.shaping import get_shaping


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What to run: algorithms (names or 'all'), budget per run, seeds, sizes, HV reference."""

    algorithms: tuple[str, ...]
    budget: int
    seeds: int = 1
    population_size: int = 256
    model_batch_size: int = 8  # candidates per ask of the GP-based methods
    ref_point: float = 1.0
    shaping: str = "nsga2"  # multi-objective fitness shaping of the evosax:<Strategy> methods

    def __post_init__(self):
        if self.algorithms == ("all",):
            object.__setattr__(self, "algorithms", tuple(ALGORITHMS))
        unknown = [a for a in self.algorithms
                   if a not in ALGORITHMS and not a.startswith(EVOSAX_PREFIX)]
        if unknown:
            raise ValueError(f"unknown algorithm(s) {unknown}; expected names in "
                             f"{sorted(ALGORITHMS)}, '{EVOSAX_PREFIX}<Strategy>' or 'all'")
        for name in self.algorithms:
            check_algorithm_name(name)  # an unknown evosax strategy lists the strategies
        get_shaping(self.shaping)
        if self.seeds < 1 or self.budget < 1:
            raise ValueError(f"seeds and budget must be >= 1; got {self.seeds}, {self.budget}")


def algorithm_options(name: str, config: ExperimentConfig) -> dict[str, Any]:
    """Constructor options of algorithm `name` under `config` (equal budgets for all)."""
    if name in MODEL_BASED:
        return {"batch_size": config.model_batch_size, "max_evaluations": config.budget,
                "n_initial": max(2 * config.model_batch_size, min(32, config.budget // 4))}
    if name == "local_search":
        return {"batch_size": min(64, config.population_size),
                "archive_size": max(config.population_size, 64)}
    if name.startswith(EVOSAX_PREFIX):
        return {"population_size": config.population_size, "shaping": config.shaping,
                "archive_size": max(config.population_size, 64)}
    if name == "random_search":
        return {"batch_size": config.population_size}
    if name == "mo_regularized_evolution":
        batch = max(1, config.population_size // 8)
        return {"population_size": batch * 8, "batch_size": batch}
    return {"population_size": config.population_size}


@dataclasses.dataclass
class Experiment:
    config: ExperimentConfig
    problem: Problem
    lower: np.ndarray
    upper: np.ndarray
    results: list[SearchResult]
    curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # caveats per algorithm


def run_experiment(config: ExperimentConfig, problem: Problem,
                   progress: Callable[[str, int, int], None] | None = None) -> Experiment:
    """Run every algorithm for every seed (seed s uses PRNG key s).

    Args:
      progress: called with (algorithm, seed, evaluations done) after every batch.
    """
    objective_fn = lambda arch, key: problem.metrics_fn(arch, key)[:, : problem.n_objectives]  # noqa: E731
    lower, upper = normalization_bounds(objective_fn, problem.space)
    algorithms = {name: make_algorithm(name, problem.space, problem.n_objectives,
                                       problem.n_constraints, **algorithm_options(name, config))
                  for name in config.algorithms}
    for algorithm in algorithms.values():  # fail before running anything
        if config.budget < algorithm.min_budget:
            raise ValueError(f"budget {config.budget} is smaller than what {algorithm.name} "
                             f"needs for one population/batch ({algorithm.min_budget})")
    results, curves = [], {}
    for name, algorithm in algorithms.items():
        for seed in range(config.seeds):
            report = None if progress is None else (
                lambda done, name=name, seed=seed: progress(name, seed, done))
            result = run_search(algorithm, problem, config.budget, jax.random.key(seed),
                                seed=seed, progress=report)
            results.append(result)
            curves[(name, seed)] = hypervolume_curve(
                result, lower, upper, np.full(problem.n_objectives, config.ref_point))
    notes = {name: note for name, algorithm in algorithms.items()
             if (note := getattr(algorithm, "shaping_note", None))}
    return Experiment(config, problem, lower, upper, results, curves, notes)


def _frame(result: SearchResult, problem: Problem, rows: np.ndarray) -> pd.DataFrame:
    space = problem.space
    arch = jax.tree.map(np.asarray, space.from_genes(result.genes[rows])).to_numpy()
    frame = pd.DataFrame({
        "algorithm": result.algorithm, "seed": result.seed, "evaluation": rows,
        "step": result.step[rows], "arch_id": space.arch_ids(arch) if len(rows) else [],
    })
    for field, values in dataclasses.asdict(arch).items():
        frame[field] = list(values) if np.ndim(values) > 1 else values
    values = np.concatenate([result.objectives, _constraint_values(result, problem)], axis=1)
    for i, name in enumerate(problem.metric_names):
        if name not in frame.columns:  # a constrained objective keeps its exact objective value
            frame[name] = values[rows, i]
    frame["feasible"] = result.feasible[rows]
    return frame


def _constraint_values(result: SearchResult, problem: Problem) -> np.ndarray:
    """Undo the margin scaling of `Problem.evaluate`: the constraint metrics' raw values."""
    upper = np.asarray(problem.constraint_upper, np.float64)
    signed = result.constraints * np.maximum(np.abs(upper), 1.0) + upper
    signs = np.asarray(problem.constraint_signs or (1.0,) * len(upper), np.float64)
    return signed * signs  # '>=' constraints were negated to become '<='


def summary(experiment: Experiment) -> dict[str, Any]:
    """Final hypervolume per algorithm: mean, std, min, max over seeds, and per seed."""
    out = {}
    for name in experiment.config.algorithms:
        finals = [experiment.curves[(name, s)][1][-1] for s in range(experiment.config.seeds)]
        out[name] = {"final_hypervolume_mean": float(np.mean(finals)),
                     "final_hypervolume_std": float(np.std(finals)),
                     "final_hypervolume_min": float(np.min(finals)),
                     "final_hypervolume_max": float(np.max(finals)),
                     "per_seed": [float(v) for v in finals]}
        if name in experiment.notes:
            out[name]["note"] = experiment.notes[name]
    return out


def write_experiment(experiment: Experiment, out_dir: str | Path,
                     metadata: dict[str, Any], extra_metrics: Callable | None = None
                     ) -> list[Path]:
    """Write the experiment's tables, summary and plots into `out_dir` (created if needed).

    Args:
      metadata: stored with every file (scale, objectives, constraints, versions, ...).
      extra_metrics: optional fn(Arch) -> DataFrame of more metrics for the Pareto sets
        (e.g. every surrogate metric of the benchmark).
    """
    from hwgpt_jax.stages.plots import hypervolume_plot, pareto_front_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problem, config = experiment.problem, experiment.config
    meta = {**metadata, "config": dataclasses.asdict(config),
            "normalization": {"lower": experiment.lower.tolist(),
                              "upper": experiment.upper.tolist(),
                              "ref_point": config.ref_point,
                              "rule": "min-max between the smallest and largest arch"},
            "device": f"{jax.devices()[0].platform} ({platform.machine()})",
            "versions": {"jax": jax.__version__, "numpy": np.__version__}}
    trajectory = [_frame(r, problem, np.arange(len(r.genes))) for r in experiment.results]
    pareto = [_frame(r, problem, np.flatnonzero(r.pareto_mask())) for r in experiment.results]
    pareto_table = pd.concat(pareto, ignore_index=True)
    if extra_metrics is not None and len(pareto_table):
        space = problem.space
        archs = space.from_ids(pareto_table["arch_id"].tolist())
        more = extra_metrics(archs)
        for column in more.columns:
            if column not in pareto_table.columns:
                pareto_table[column] = more[column].to_numpy()
    hv_rows = [pd.DataFrame({"algorithm": name, "seed": seed, "evaluations": counts,
                             "hypervolume": values})
               for (name, seed), (counts, values) in experiment.curves.items()]
    paths = [
        write_parquet_atomic(pd.concat(trajectory, ignore_index=True),
                             out / "trajectory.parquet", meta),
        write_parquet_atomic(pd.concat(hv_rows, ignore_index=True), out / "hypervolume.parquet",
                             meta),
        write_parquet_atomic(pareto_table, out / "pareto.parquet", meta),
    ]
    messages = [m for r in experiment.results if (m := infeasibility_message(r, problem))]
    record = {**meta, "hypervolume": summary(experiment), "infeasible_runs": messages}
    paths.append(write_text_atomic(out / "summary.json", json.dumps(record, indent=2, default=str)))
    labels = problem.metric_names[:2]
    if problem.n_objectives >= 2:
        pooled = {name: np.concatenate([r.objectives[r.pareto_mask(), :2]
                                        for r in experiment.results if r.algorithm == name])
                  for name in config.algorithms}
        # One staircase per algorithm: the non-dominated points of its seeds pooled together.
        fronts = {k: v[np.asarray(non_dominated_mask(v))] for k, v in pooled.items() if len(v)}
        if fronts:  # no plot when nothing was feasible
            paths.append(pareto_front_plot(fronts, out / "pareto_front.png", labels=labels,
                                           title="Pareto fronts (all seeds)"))
    curves = {name: np.stack([experiment.curves[(name, s)][1] for s in range(config.seeds)])
              for name in config.algorithms}
    first = experiment.curves[(config.algorithms[0], 0)][0]
    same_x = all(len(experiment.curves[(n, 0)][0]) == len(first) for n in config.algorithms)
    if same_x:
        paths.append(hypervolume_plot(curves, out / "hypervolume.png", evaluations=first))
    else:  # different batch sizes: one curve per algorithm on its own x values
        paths.append(_hypervolume_plot_ragged(experiment, out / "hypervolume.png"))
    return paths


def _hypervolume_plot_ragged(experiment: Experiment, path: Path) -> Path:
    from hwgpt_jax.stages.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in experiment.config.algorithms:
        x = experiment.curves[(name, 0)][0]
        ys = np.stack([experiment.curves[(name, s)][1] for s in range(experiment.config.seeds)])
        line, = ax.plot(x, ys.mean(0), label=name)
        ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (normalized objectives)")
    ax.set_title("hypervolume over evaluations (mean, min-max over seeds)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


__all__ = ["Experiment", "ExperimentConfig", "algorithm_options", "run_experiment", "summary",
           "write_experiment"]
