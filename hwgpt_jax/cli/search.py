"""`hwgpt search`: multi-objective architecture search on surrogate or analytic objectives.

    hwgpt search --surrogates DIR --algorithm nsga2 --objectives perplexity,latency:a100 \
        --budget 10000 --seeds 5 --constraint latency:a100<=20 --out runs/nsga2
    hwgpt search --preset search/paper_2obj_energy_a100.toml --surrogates DIR --out runs/x

`--algorithm all` runs every registered algorithm at the same budget. Without
`--surrogates` only the analytic objectives `params` and `flops` exist (on `--scale`).
A preset is a TOML file whose keys are these options (with underscores); options given on
the command line win.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from hwgpt_jax.cli import CliError

DEFAULTS = {"algorithm": "nsga2", "budget": 2048, "seeds": 1, "scale": "tiny",
            "population": 256, "model_batch": 8, "mode": "median", "ref_point": 1.0,
            "constraint": []}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="multi-objective architecture search")
    parser.add_argument("--preset", help="TOML file of option defaults (see search/)")
    parser.add_argument("--surrogates", help="benchmark folder written by `hwgpt fit`")
    parser.add_argument("--algorithm", help="an algorithm name, a comma list, or 'all' "
                                            f"(default {DEFAULTS['algorithm']})")
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
    parser.add_argument("--out", help="output folder")
    parser.set_defaults(func=_search)


def _options(args: argparse.Namespace) -> dict:
    options = dict(DEFAULTS)
    if args.preset:
        path = Path(args.preset)
        if not path.is_file():
            raise CliError(f"--preset {args.preset!r} does not exist")
        with path.open("rb") as handle:
            preset = tomllib.load(handle)
        known = set(DEFAULTS) | {"objectives", "surrogates", "out"}
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
    return options


def _search(args: argparse.Namespace) -> int:
    import jax
    import pandas as pd
    from tqdm import tqdm

    from hwgpt_jax.search.experiment import ExperimentConfig, run_experiment, write_experiment
    from hwgpt_jax.search.objectives import build_problem
    from hwgpt_jax.space import get_space

    options = _options(args)
    objectives = [o.strip() for o in str(options["objectives"]).split(",") if o.strip()]
    constraints = list(options["constraint"])
    bench = None
    if options.get("surrogates"):
        from hwgpt_jax.bench import Benchmark

        bench = Benchmark.load(options["surrogates"])
        space = bench.space
    else:
        space = get_space(options["scale"])
    problem = build_problem(space, objectives, constraints, bench=bench, mode=options["mode"])
    algorithms = tuple(a.strip() for a in str(options["algorithm"]).split(",") if a.strip())
    config = ExperimentConfig(algorithms=algorithms, budget=int(options["budget"]),
                              seeds=int(options["seeds"]),
                              population_size=int(options["population"]),
                              model_batch_size=int(options["model_batch"]),
                              ref_point=float(options["ref_point"]))
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
                "surrogates": options.get("surrogates"), "mode": options["mode"],
                "units": _units(bench, problem.metric_names)}
    paths = write_experiment(experiment, options["out"], metadata, extra_metrics=extra)
    from hwgpt_jax.search.experiment import summary

    for name, row in summary(experiment).items():
        print(f"{name:>26s}: final hypervolume {row['final_hypervolume_mean']:.4f} "
              f"+- {row['final_hypervolume_std']:.4f} over {config.seeds} seed(s)")
    print(f"wrote {len(paths)} files to {options['out']}")
    from hwgpt_jax.search.runner import infeasibility_message

    messages = [m for r in experiment.results if (m := infeasibility_message(r, problem))]
    if len(messages) == len(experiment.results) and messages:
        raise CliError(messages[0])
    return 0


def _units(bench, names) -> dict[str, str]:
    units = {"params": "count", "flops": "FLOPs (batch 1, block size)"}
    if bench is not None:
        for name in names:
            if name not in units:
                units[name] = bench.spec(name).unit
    return {n: units.get(n, "") for n in names}
