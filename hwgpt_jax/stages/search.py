"""The search stage: several algorithms x seeds on one multi-objective problem, written out.

`run(config, out)` builds the problem (objectives from a fitted `Benchmark` folder, the
packaged published benchmark, the analytic `params`/`flops`, or `supernet_perplexity` of a
trained supernet checkpoint), runs every algorithm for every seed at the same budget and
writes into `out` (every file atomic; parquet files carry the run's metadata as JSON under
b"hwgpt"): `trajectory.parquet` (every evaluation: algorithm, seed, arch id and fields, every
metric, feasibility), `hypervolume.parquet` (after every batch), `pareto.parquet` (each run's
feasible Pareto set with all metrics, plus every surrogate metric of the benchmark),
`summary.json`, `pareto_front.png`, `hypervolume.png`, and with `export = K` the dense
checkpoints of K Pareto archs in `export/`. Hypervolume uses objectives normalized as in
HW-GPT-Bench (arXiv 2405.10299): min-max between the smallest and the largest architecture,
reference point `ref_point` in every normalized objective.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import write_parquet_atomic, write_text_atomic
from hwgpt_jax.base.metadata import provenance
from hwgpt_jax.search.base import Problem
from hwgpt_jax.search.evosax_search import GENOTYPES
from hwgpt_jax.search.objectives import (
    SUPERNET_METRIC,
    build_problem,
    parse_constraint,
    supernet_perplexity,
)
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
    run_compiled,
)
from hwgpt_jax.search.shaping import get_shaping
from hwgpt_jax.space.arch import SearchSpace, get_space
from hwgpt_jax.stages.plots import hypervolume_plot, pareto_front_plot

DEFAULT_SCALE = "tiny"
Progress = Callable[[str, int, int], None]  # (algorithm, seed, evaluations done)


def _names(value: Any) -> tuple[str, ...]:
    """A comma string (CLI, presets) or a sequence of names -> a tuple of stripped names."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(v).strip() for v in items if str(v).strip())


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """What to search: algorithms (names, 'all' or `evosax:<Strategy>`), budget per run,
    seeds, sizes, HV reference; the objectives and constraints and where their values come
    from; how many Pareto archs to export. Names may be given as comma strings."""

    algorithms: tuple[str, ...] = ("nsga2",)
    budget: int = 2048
    seeds: int = 1
    population_size: int = 256
    model_batch_size: int = 8  # candidates per ask of the GP-based methods
    ref_point: float = 1.0
    shaping: str = "nsga2"  # multi-objective fitness shaping of the evosax:<Strategy> methods
    strategy_params: tuple[str, ...] = ()  # 'NAME=VALUE' fields of evosax strategies' Params
    genotype: str = "unit"  # of evosax:<Strategy>: unit (box of choices) or index (choices)
    objectives: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()  # 'METRIC<=VALUE' or 'METRIC>=VALUE'
    scale: str = ""  # "" = that of the benchmark or checkpoint, else tiny
    surrogates: str = ""  # a benchmark folder written by the fit stage
    published: str = ""  # s, m or l: the packaged published HW-GPT-Bench benchmark
    mode: str = "median"  # surrogate predictions: median, or sampled (noisy hardware)
    checkpoint: str = ""  # a train run folder: supernet_perplexity and export
    val_windows: int = 8  # validation windows of the run for supernet_perplexity
    export: int = 0  # Pareto archs exported as dense checkpoints into <out>/export

    def __post_init__(self) -> None:
        for name in ("algorithms", "objectives", "constraints", "strategy_params"):
            object.__setattr__(self, name, _names(getattr(self, name)))
        if self.algorithms == ("all",):
            object.__setattr__(self, "algorithms", tuple(ALGORITHMS))
        unknown = [a for a in self.algorithms
                   if a not in ALGORITHMS and not a.startswith(EVOSAX_PREFIX)]
        if unknown or not self.algorithms:
            raise ValueError(f"unknown algorithm(s) {unknown}; expected names in "
                             f"{sorted(ALGORITHMS)}, '{EVOSAX_PREFIX}<Strategy>' or 'all'")
        for name in self.algorithms:
            check_algorithm_name(name)  # an unknown evosax strategy lists the strategies
        get_shaping(self.shaping)
        if self.genotype not in GENOTYPES:
            raise ValueError(f"genotype={self.genotype!r}; expected one of {GENOTYPES}")
        if self.seeds < 1 or self.budget < 1:
            raise ValueError(f"seeds and budget must be >= 1; got {self.seeds}, {self.budget}")
        for name, low in (("val_windows", 1), ("export", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}; expected an integer >= {low}")
        self._check_sources()

    def _check_sources(self) -> None:
        if self.surrogates and self.published:
            raise ValueError("surrogates and published both name a benchmark; give one")
        if self.published not in ("", "s", "m", "l"):
            raise ValueError(f"published={self.published!r}; expected one of s, m, l")
        if self.mode not in ("median", "sample"):
            raise ValueError(f"mode={self.mode!r}; expected 'median' or 'sample'")
        if self.export and not self.checkpoint:
            raise ValueError("export needs checkpoint (the supernet whose weights are exported)")


def algorithm_options(name: str, config: SearchConfig) -> dict[str, Any]:
    """Constructor options of algorithm `name` under `config` (equal budgets for all)."""
    if name in MODEL_BASED:
        return {"batch_size": config.model_batch_size, "max_evaluations": config.budget,
                "n_initial": max(2 * config.model_batch_size, min(32, config.budget // 4))}
    if name == "local_search":
        return {"batch_size": min(64, config.population_size),
                "archive_size": max(config.population_size, 64)}
    if name.startswith(EVOSAX_PREFIX):
        return {"population_size": config.population_size, "shaping": config.shaping,
                "archive_size": max(config.population_size, 64),
                "strategy_params": config.strategy_params, "genotype": config.genotype}
    if name == "random_search":
        return {"batch_size": config.population_size}
    if name == "mo_regularized_evolution":
        batch = max(1, config.population_size // 8)
        return {"population_size": batch * 8, "batch_size": batch}
    return {"population_size": config.population_size}


@dataclasses.dataclass
class Experiment:
    """The results of every (algorithm, seed) run and their hypervolume curves."""

    config: SearchConfig
    problem: Problem
    lower: np.ndarray
    upper: np.ndarray
    results: list[SearchResult]
    curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # caveats per algorithm


def run_experiment(config: SearchConfig, problem: Problem,
                   progress: Progress | None = None) -> Experiment:
    """Run every algorithm for every seed (seed s uses PRNG key s); `progress(algorithm, seed,
    evaluations done)` after every batch."""
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
            _, result = run_compiled(algorithm, problem, config.budget, jax.random.key(seed),
                                     seed=seed, progress=report)
            results.append(result)
            curves[(name, seed)] = hypervolume_curve(
                result, lower, upper, np.full(problem.n_objectives, config.ref_point))
    notes = {name: note for name, algorithm in algorithms.items()
             if (note := getattr(algorithm, "shaping_note", None))}
    return Experiment(config, problem, lower, upper, results, curves, notes)


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


# ---------------------------------------------------------------------------- writing
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


def write_experiment(experiment: Experiment, out_dir: str | Path, metadata: dict[str, Any],
                     extra_metrics: Callable[[Any], pd.DataFrame] | None = None) -> list[Path]:
    """Write the experiment's tables, summary and plots into `out_dir` (created if needed).
    `metadata` is stored with every file; `extra_metrics(archs)` adds metric columns to the
    Pareto table (e.g. every surrogate metric of the benchmark)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problem, config = experiment.problem, experiment.config
    meta = {**metadata, "config": dataclasses.asdict(config),
            "normalization": {"lower": experiment.lower.tolist(),
                              "upper": experiment.upper.tolist(),
                              "ref_point": config.ref_point,
                              "rule": "min-max between the smallest and largest arch"},
            "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})",
            **provenance()}
    trajectory = [_frame(r, problem, np.arange(len(r.genes))) for r in experiment.results]
    pareto = pd.concat([_frame(r, problem, np.flatnonzero(r.pareto_mask()))
                        for r in experiment.results], ignore_index=True)
    if extra_metrics is not None and len(pareto):
        more = extra_metrics(problem.space.from_ids(pareto["arch_id"].tolist()))
        for column in more.columns:
            if column not in pareto.columns:
                pareto[column] = more[column].to_numpy()
    hv_rows = [pd.DataFrame({"algorithm": name, "seed": seed, "evaluations": counts,
                             "hypervolume": values})
               for (name, seed), (counts, values) in experiment.curves.items()]
    paths = [
        write_parquet_atomic(pd.concat(trajectory, ignore_index=True),
                             out / "trajectory.parquet", meta),
        write_parquet_atomic(pd.concat(hv_rows, ignore_index=True), out / "hypervolume.parquet",
                             meta),
        write_parquet_atomic(pareto, out / "pareto.parquet", meta),
    ]
    messages = [m for r in experiment.results if (m := infeasibility_message(r, problem))]
    record = {**meta, "hypervolume": summary(experiment), "infeasible_runs": messages}
    paths.append(write_text_atomic(out / "summary.json", json.dumps(record, indent=2, default=str)))
    return paths + _plots(experiment, out)


def _plots(experiment: Experiment, out: Path) -> list[Path]:
    problem, config, paths = experiment.problem, experiment.config, []
    if problem.n_objectives >= 2:
        pooled = {name: np.concatenate([r.objectives[r.pareto_mask(), :2]
                                        for r in experiment.results if r.algorithm == name])
                  for name in config.algorithms}
        # One staircase per algorithm: the non-dominated points of its seeds pooled together.
        fronts = {k: v[np.asarray(non_dominated_mask(v))] for k, v in pooled.items() if len(v)}
        if fronts:  # no plot when nothing was feasible
            paths.append(pareto_front_plot(fronts, out / "pareto_front.png",
                                           labels=problem.metric_names[:2],
                                           title="Pareto fronts (all seeds)"))
    curves = {name: np.stack([experiment.curves[(name, s)][1] for s in range(config.seeds)])
              for name in config.algorithms}
    evaluations = {name: experiment.curves[(name, 0)][0] for name in config.algorithms}
    paths.append(hypervolume_plot(curves, out / "hypervolume.png", evaluations=evaluations,
                                  title="hypervolume over evaluations (mean, min-max over seeds)"))
    return paths


# ---------------------------------------------------------------------------- the stage
@dataclasses.dataclass
class Sources:
    """Where the objective values come from: the space, a surrogate benchmark, the supernet
    objective, and what to record about them."""

    space: SearchSpace
    bench: Any = None
    supernet: Callable | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def resolve_sources(config: SearchConfig) -> Sources:
    """The space from the benchmark, else the checkpoint, else `scale`; every source given
    must agree on the scale. Loads the supernet objective only when a metric names it."""
    from hwgpt_jax.surrogates.benchmark import Benchmark

    bench, scales = None, {}
    if config.published:
        bench = Benchmark.published(config.published)
        scales["published"] = bench.space.scale
    if config.surrogates:
        bench = Benchmark.load(config.surrogates)
        scales["surrogates"] = bench.space.scale
    if config.scale:
        scales["scale"] = get_space(config.scale).scale
    params = meta = None
    if config.checkpoint:
        from hwgpt_jax.model.checkpoints import load_trained_params  # imports orbax

        params, meta = load_trained_params(config.checkpoint)
        scales["checkpoint"] = meta["scale"]
    if len(set(scales.values())) > 1:
        given = ", ".join(f"{k} is {v!r}" for k, v in scales.items())
        raise ValueError(f"scales disagree ({given}); they must name the same search space")
    sources = Sources(get_space(next(iter(scales.values()), DEFAULT_SCALE)), bench)
    if params is None:
        return sources
    sources.info = {"checkpoint": config.checkpoint, "checkpoint_step": int(meta["step"])}
    named = list(config.objectives) + [parse_constraint(c)[0] for c in config.constraints]
    if SUPERNET_METRIC in named:
        from hwgpt_jax.stages.evaluate import run_validation_windows

        windows = run_validation_windows(config.checkpoint, meta, config.val_windows)
        sources.supernet = supernet_perplexity(jax.device_get(params), windows, sources.space)
        sources.info |= {"val_windows": int(len(windows)), "val_seq": int(windows.shape[1] - 1)}
    return sources


def units(sources: Sources, names: list[str]) -> dict[str, str]:
    """The unit of every metric name (analytic, supernet, or the surrogate's)."""
    known = {"params": "count", "flops": "FLOPs (batch 1, block size)"}
    if "val_windows" in sources.info:
        known[SUPERNET_METRIC] = (
            f"perplexity (exp mean next-token cross-entropy, nats) on "
            f"{sources.info['val_windows']} validation windows of {sources.info['val_seq']} "
            f"tokens")
    bench = sources.bench
    return {n: known[n] if n in known else bench.spec(n).unit if bench is not None else ""
            for n in names}


def run(config: SearchConfig, out: str | Path, *, progress: Progress | None = None,
        on_export: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Search and write into `out` (module docstring); then export `config.export` Pareto
    archs unless every run was infeasible. Returns {"hypervolume", "files", "infeasible",
    "all_infeasible", "exported"}."""
    if not config.objectives:
        raise ValueError("no objectives; expected metric names, e.g. params,flops")
    sources = resolve_sources(config)
    problem = build_problem(sources.space, config.objectives, config.constraints,
                            bench=sources.bench, mode=config.mode, supernet=sources.supernet)
    experiment = run_experiment(config, problem, progress=progress)
    bench = sources.bench
    extra = None if bench is None else (lambda archs: bench.query_frame(archs))
    metadata = {"scale": sources.space.scale, "objectives": list(config.objectives),
                "constraints": list(config.constraints),
                "surrogates": config.surrogates or (
                    f"published:{config.published}" if config.published else None),
                "mode": config.mode, "units": units(sources, problem.metric_names),
                **sources.info}
    paths = write_experiment(experiment, out, metadata, extra_metrics=extra)
    messages = [m for r in experiment.results if (m := infeasibility_message(r, problem))]
    all_infeasible = bool(messages) and len(messages) == len(experiment.results)
    exported: list[Path] = []
    if config.export and not all_infeasible:
        from hwgpt_jax.stages.export import export_pareto

        # A rerun into the same folder replaces its exports, as it replaces its tables.
        exported = export_pareto(config.checkpoint, Path(out) / "pareto.parquet",
                                 Path(out) / "export", limit=config.export,
                                 objectives=list(config.objectives), overwrite=True,
                                 on_export=on_export)
    return {"hypervolume": summary(experiment), "files": [str(p) for p in paths],
            "infeasible": messages, "all_infeasible": all_infeasible,
            "exported": [str(p) for p in exported]}


__all__ = ["Experiment", "SearchConfig", "Sources", "algorithm_options", "resolve_sources",
           "run", "run_experiment", "summary", "units", "write_experiment"]
