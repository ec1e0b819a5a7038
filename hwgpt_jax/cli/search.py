"""`hwgpt search`: multi-objective architecture search on surrogate or analytic objectives.

    hwgpt search --surrogates DIR --algorithm nsga2 --objectives perplexity,latency:a100 \
        --budget 10000 --seeds 5 --constraint latency:a100<=20 --out runs/nsga2
    hwgpt search --preset paper_2obj_energy --published s --out runs/x

    hwgpt search --checkpoint runs/demo/train --objectives supernet_perplexity,params \
        --val-windows 8 --export 4 --out runs/supernet

`--algorithm all` runs every registered algorithm at the same budget. `--published s|m|l`
searches the packaged published HW-GPT-Bench benchmark instead of a `hwgpt fit` folder.
Without either, only the analytic objectives `params` and `flops` exist (on `--scale`).
`--checkpoint RUN` (a `hwgpt train` run folder) adds `supernet_perplexity`: the supernet's
own perplexity on `--val-windows` validation windows of the run, computed in the search's jit
call; its scale must be the space's. `--export K` then writes K archs of the Pareto set as
standalone dense checkpoints into <out>/export/ (see `hwgpt export`).
A preset is a TOML file whose keys are these options (with underscores); options given on
the command line win.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from hwgpt_jax.cli import CliError
from hwgpt_jax.presets import resolve_preset

DEFAULTS = {"algorithm": "nsga2", "budget": 2048, "seeds": 1, "scale": None,
            "population": 256, "model_batch": 8, "mode": "median", "ref_point": 1.0,
            "constraint": [], "checkpoint": None, "val_windows": 8, "export": 0,
            "overwrite": False, "shaping": "nsga2"}
DEFAULT_SCALE = "tiny"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="multi-objective architecture search")
    parser.add_argument("--preset", help="TOML file of option defaults, or a preset name "
                        "(paper_2obj_energy, paper_3obj, smoke_analytic)")
    parser.add_argument("--surrogates", help="benchmark folder written by `hwgpt fit`")
    parser.add_argument("--published", choices=("s", "m", "l"),
                        help="the published HW-GPT-Bench benchmark of this scale (packaged)")
    parser.add_argument("--algorithm", help="an algorithm name, a comma list, or 'all' "
                                            f"(default {DEFAULTS['algorithm']}); "
                                            "evosax:<Strategy> runs any evosax strategy, "
                                            "e.g. evosax:CMA_ES")
    parser.add_argument("--shaping",
                        help="multi-objective fitness shaping of evosax:<Strategy> algorithms: "
                             "nsga2, hv or chebyshev (default nsga2)")
    parser.add_argument("--objectives", help="comma list, e.g. perplexity,latency:a100")
    parser.add_argument("--budget", type=int, help="evaluations per run")
    parser.add_argument("--seeds", type=int, help="runs per algorithm (seeds 0..K-1)")
    parser.add_argument("--constraint", action="append",
                        help="METRIC<=VALUE or METRIC>=VALUE; repeatable")
    parser.add_argument("--scale", help="search space without --surrogates (default tiny)")
    parser.add_argument("--population", type=int,
                        help="population / batch size of the population-based algorithms")
    parser.add_argument("--model-batch", type=int,
                        help="candidates per step of RSBO/LSBO/EHVI (default 8)")
    parser.add_argument("--mode", choices=("median", "sample"),
                        help="surrogate predictions: median, or sampled (noisy hardware)")
    parser.add_argument("--ref-point", type=float,
                        help="hypervolume reference in normalized objectives (default 1.0)")
    parser.add_argument("--checkpoint",
                        help="`hwgpt train` run folder: enables the supernet_perplexity "
                             "objective and --export")
    parser.add_argument("--val-windows", type=int,
                        help="validation windows of the run for supernet_perplexity "
                             f"(default {DEFAULTS['val_windows']})")
    parser.add_argument("--export", type=int, metavar="K",
                        help="export K Pareto archs as dense checkpoints into <out>/export "
                             "(needs --checkpoint)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the files of an existing --out")
    parser.set_defaults(func=_search)


def _options(args: argparse.Namespace) -> dict:
    options = dict(DEFAULTS)
    if args.preset:
        path = resolve_preset("search", args.preset)
        with path.open("rb") as handle:
            preset = tomllib.load(handle)
        known = set(DEFAULTS) | {"objectives", "surrogates", "published", "out"}
        unknown = sorted(set(preset) - known)
        if unknown:
            raise CliError(f"preset {args.preset} has unknown key(s) {unknown}; expected "
                           f"{sorted(known)}")
        options.update(preset)
    for key, value in vars(args).items():
        if value is not None and key not in ("func", "command", "preset"):
            options[key] = value
    for required in ("objectives", "out"):
        if not options.get(required):
            raise CliError(f"--{required} is required (on the command line or in a preset)")
    for name in ("val_windows", "export"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < (
                1 if name == "val_windows" else 0):
            raise CliError(f"--{name.replace('_', '-')} {value!r}: expected a "
                           f"{'positive' if name == 'val_windows' else 'non-negative'} integer")
    if options["export"] and not options["checkpoint"]:
        raise CliError("--export needs --checkpoint (the supernet whose weights are exported)")
    from hwgpt_jax.base.files import check_output

    check_output(options["out"], overwrite=bool(options["overwrite"]), folder=True)
    return options


def _space_and_supernet(options: dict, objectives: list[str], constraints: list[str]):
    """(space, surrogate Benchmark or None, supernet_perplexity objective or None, metadata).

    The space comes from --surrogates or --published, else from the checkpoint, else --scale;
    every source given must agree on the scale.
    """
    import jax

    from hwgpt_jax.space.arch import get_space

    bench, supernet, info = None, None, {}
    scales = {}
    if options.get("surrogates") and options.get("published"):
        raise CliError("--surrogates and --published both name a benchmark; give one")
    if options.get("published"):
        from hwgpt_jax.surrogates.benchmark import Benchmark

        bench = Benchmark.published(options["published"])
        scales["--published"] = bench.space.scale
    if options.get("surrogates"):
        from hwgpt_jax.surrogates.benchmark import Benchmark

        bench = Benchmark.load(options["surrogates"])
        scales["--surrogates"] = bench.space.scale
    if options.get("scale"):
        scales["--scale"] = get_space(options["scale"]).scale
    params = meta = None
    if options.get("checkpoint"):
        from hwgpt_jax.model.checkpoints import load_trained_params

        params, meta = load_trained_params(options["checkpoint"])
        scales["--checkpoint"] = meta["scale"]
    if len(set(scales.values())) > 1:
        given = ", ".join(f"{k} is {v!r}" for k, v in scales.items())
        raise CliError(f"scales disagree ({given}); they must name the same search space")
    space = get_space(next(iter(scales.values()), DEFAULT_SCALE))
    from hwgpt_jax.search.objectives import (
        SUPERNET_METRIC,
        parse_constraint,
        supernet_perplexity,
    )

    named = objectives + [parse_constraint(c)[0] for c in constraints]
    if params is not None and SUPERNET_METRIC in named:
        from hwgpt_jax.stages.evaluate import run_validation_windows

        windows = run_validation_windows(options["checkpoint"], meta, options["val_windows"])
        supernet = supernet_perplexity(jax.device_get(params), windows, space)
        info = {"checkpoint": str(options["checkpoint"]), "checkpoint_step": int(meta["step"]),
                "val_windows": int(len(windows)), "val_seq": int(windows.shape[1] - 1)}
    elif params is not None:
        info = {"checkpoint": str(options["checkpoint"]), "checkpoint_step": int(meta["step"])}
    return space, bench, supernet, info


def _search(args: argparse.Namespace) -> int:
    import jax
    import pandas as pd
    from tqdm import tqdm

    from hwgpt_jax.search.experiment import ExperimentConfig, run_experiment, write_experiment
    from hwgpt_jax.search.objectives import build_problem

    options = _options(args)
    objectives = [o.strip() for o in str(options["objectives"]).split(",") if o.strip()]
    constraints = list(options["constraint"])
    space, bench, supernet, supernet_info = _space_and_supernet(options, objectives,
                                                                constraints)
    problem = build_problem(space, objectives, constraints, bench=bench, mode=options["mode"],
                            supernet=supernet)
    algorithms = tuple(a.strip() for a in str(options["algorithm"]).split(",") if a.strip())
    config = ExperimentConfig(algorithms=algorithms, budget=int(options["budget"]),
                              seeds=int(options["seeds"]),
                              population_size=int(options["population"]),
                              model_batch_size=int(options["model_batch"]),
                              ref_point=float(options["ref_point"]),
                              shaping=str(options["shaping"]))
    current: dict = {}  # one bar at a time: (algorithm, seed) -> tqdm

    def progress(name: str, seed: int, done: int) -> None:
        if (name, seed) not in current:
            for bar in current.values():
                bar.close()
            current.clear()
            current[(name, seed)] = tqdm(total=config.budget, desc=f"{name} seed {seed}",
                                         file=sys.stderr)
        bar = current[(name, seed)]
        bar.update(done - bar.n)

    experiment = run_experiment(config, problem, progress=progress)
    for bar in current.values():
        bar.close()
    extra = None
    if bench is not None:
        def extra(archs):
            values = bench.query(jax.tree.map(jax.numpy.asarray, archs), bench.keys())
            return pd.DataFrame({k: jax.numpy.asarray(v) for k, v in values.items()})
    metadata = {"scale": space.scale, "objectives": objectives, "constraints": constraints,
                "surrogates": options.get("surrogates") or (
                    f"published:{options['published']}" if options.get("published") else None),
                "mode": options["mode"],
                "units": _units(bench, problem.metric_names, supernet_info),
                **supernet_info}
    paths = write_experiment(experiment, options["out"], metadata, extra_metrics=extra)
    from hwgpt_jax.search.experiment import summary

    for name, row in summary(experiment).items():
        print(f"{name:>26s}: final hypervolume {row['final_hypervolume_mean']:.4f} "
              f"+- {row['final_hypervolume_std']:.4f} over {config.seeds} seed(s)"
              + (f" (note: {row['note']})" if "note" in row else ""))
    print(f"wrote {len(paths)} files to {options['out']}")
    from hwgpt_jax.search.runner import infeasibility_message

    messages = [m for r in experiment.results if (m := infeasibility_message(r, problem))]
    if len(messages) == len(experiment.results) and messages:
        raise CliError(messages[0])
    if options["export"]:
        _export(options, Path(options["out"]) / "pareto.parquet", objectives)
    return 0


def _export(options: dict, pareto: Path, objectives: list[str]) -> None:
    from tqdm import tqdm

    from hwgpt_jax.stages.export import export_pareto

    out = Path(options["out"]) / "export"
    with tqdm(total=options["export"], desc="exporting", unit="model",
              file=sys.stderr) as bar:
        # A rerun into the same --out replaces its exports, as it replaces its tables.
        folders = export_pareto(options["checkpoint"], pareto, out, limit=options["export"],
                                objectives=objectives, overwrite=True,
                                on_export=lambda _: bar.update(1))
    print(f"exported {len(folders)} dense model(s) to {out} (index: {out / 'index.json'})")


def _units(bench, names, supernet_info=None) -> dict[str, str]:
    units = {"params": "count", "flops": "FLOPs (batch 1, block size)"}
    if supernet_info and "val_windows" in supernet_info:
        units["supernet_perplexity"] = (
            f"perplexity (exp mean next-token cross-entropy, nats) on "
            f"{supernet_info['val_windows']} validation windows of {supernet_info['val_seq']} "
            f"tokens")
    if bench is not None:
        for name in names:
            if name not in units:
                units[name] = bench.spec(name).unit
    return {n: units.get(n, "") for n in names}
