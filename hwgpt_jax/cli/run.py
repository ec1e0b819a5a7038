"""`hwgpt run`: the whole pipeline (`hwgpt_jax.stages.run`), one progress bar per stage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hwgpt_jax.base.files import check_output
from hwgpt_jax.cli import CliError
from hwgpt_jax.stages.run import Pipeline, RunConfig

STAGES = ("train", "evaluate", "profile", "fit", "search", "verify", "report")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="train, evaluate, profile, fit, search, report")
    parser.add_argument("--out", default="runs/demo", help="report folder")
    parser.add_argument("--scale", default="tiny", help="search space (presets must exist)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="smaller stages (a quick look)")
    size.add_argument("--micro", action="store_true", help="tiny stages (smoke test, CI)")
    parser.add_argument("--fresh", action="store_true", help="redo stages whose outputs exist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithms", help="comma-separated search algorithms, or 'all' "
                        "(default: random_search,nsga2,mo_regularized_evolution,local_search)")
    parser.set_defaults(func=run)


class _Bars:
    """One tqdm bar per stage, created when the stage starts."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, stage: str, info: dict[str, Any]) -> None:
        if info.get("skipped"):
            tqdm.write(f"{stage}: outputs match the configuration, skipped")
            return
        if info.get("started"):
            self.close()
            self.stage, self.bar = stage, tqdm(desc=stage, unit="")
            return
        if info.get("finished"):
            self.close()
            tqdm.write(f"{stage}: done in {info['seconds']:.1f} s")
            return
        if self.bar is None:
            return
        if "total" in info:
            self.bar.total = info["total"]
        if "step" in info:
            self.bar.n = info["step"]
            self.bar.set_postfix(loss=f"{info['loss']:.3f}", refresh=False)
        elif "done" in info:
            self.bar.n = info["done"]
            postfix = {k: v for k, v in info.items() if k in ("latency_ms", "algorithm", "study")}
            if postfix.get("latency_ms") is not None:
                postfix["latency_ms"] = f"{postfix['latency_ms']:.2f}"
            self.bar.set_postfix(postfix, refresh=False)
        elif "key" in info:
            self.bar.n += 1
            self.bar.set_postfix(fitted=info["key"], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    factory = RunConfig.micro if args.micro else RunConfig.fast if args.fast else RunConfig
    changes = {"scale": args.scale, "seed": args.seed}
    if args.algorithms:  # checked (and 'all' expanded) as the search stage does
        from hwgpt_jax.stages.search import SearchConfig

        changes["algorithms"] = SearchConfig(algorithms=args.algorithms).algorithms
    config = factory(**changes)
    out = Path(args.out)
    # A run folder (it has stages/) is resumed stage by stage; any other existing, non-empty
    # folder belongs to something else and is left alone.
    if out.is_dir() and any(out.iterdir()) and not (out / "stages").is_dir():
        raise CliError(f"--out {out} exists and is not a `hwgpt run` folder (no stages/); "
                       f"choose another folder")
    check_output(out, resume=True, folder=True)
    bars = _Bars()
    try:
        pipeline = Pipeline(config, args.out, fresh=args.fresh, progress=bars)
        report = pipeline.run()
    finally:
        bars.close()
    total = sum(pipeline.timings.values())
    print(f"report: {report}  (stages run: {', '.join(pipeline.timings) or 'none'}; "
          f"skipped: {', '.join(pipeline.skipped) or 'none'}; {total:.0f} s)")
    return 0
