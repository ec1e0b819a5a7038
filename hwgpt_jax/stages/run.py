"""`hwgpt run`: every stage of the benchmark on one machine, into one report folder.

train (sandwich supernet) -> evaluate (perplexity of sampled archs, inherited weights) ->
profile (dense sub-networks on this device) -> fit (surrogates, validated on held-out archs) ->
search (multi-objective, on the surrogates) -> verify (measure the chosen archs for real) ->
report (tables, plots, report.md). Profile, fit and search are the `run` of their stage
modules, so `hwgpt run` and the single-stage commands share one wiring.

Each stage writes its outputs and then a stamp `stages/<name>.json` holding its configuration
(including the configurations of the stages it reads from). A re-run skips a stage whose stamp
matches and whose outputs exist; `fresh=True` redoes everything. Stages only read files
written by earlier stages, so any stage can be re-run alone.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.config import config_to_dict, load_config, replace_config
from hwgpt_jax.base.files import read_parquet_checked, write_parquet_atomic, write_text_atomic
from hwgpt_jax.measure.profiler import device_slug
from hwgpt_jax.presets import find_preset
from hwgpt_jax.space.arch import Arch, get_space
from hwgpt_jax.stages import evaluate as evaluate_stage
from hwgpt_jax.stages import fit as fit_stage
from hwgpt_jax.stages import profile as profile_stage
from hwgpt_jax.stages import report as report_lib
from hwgpt_jax.stages import search as search_stage
from hwgpt_jax.stages import train as train_stage
from hwgpt_jax.stages.train_config import TrainConfig

Progress = Callable[[str, dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Sizes of each stage. `fast()` and `micro()` shrink them for quick looks and CI."""

    scale: str = "tiny"
    seed: int = 0
    train_steps: int | None = None  # None: the preset's steps
    train_overrides: tuple[tuple[str, Any], ...] = ()  # more [train] keys, e.g. (("seq_len", 32),)
    n_evaluate: int = 300
    eval_windows: int = 16
    n_profile: int = 40
    profile_reps: int = 10
    test_fraction: float = 0.2  # archs held out to validate the surrogates
    # The population-based baselines; the GP-based ones (rsbo, lsbo, ehvi) cost seconds per
    # batch of proposals on a CPU, so the demo leaves them to `hwgpt search --algorithm all`.
    algorithms: tuple[str, ...] = ("random_search", "nsga2", "mo_regularized_evolution",
                                   "local_search")
    search_budget: int = 1024
    search_seeds: int = 3
    population_size: int = 128
    n_chosen: int = 3

    @classmethod
    def fast(cls, **changes: Any) -> RunConfig:
        return cls(**({"train_steps": 60, "n_evaluate": 96, "n_profile": 16, "profile_reps": 5,
                       "search_budget": 256, "search_seeds": 2, "population_size": 32}
                      | changes))

    @classmethod
    def micro(cls, **changes: Any) -> RunConfig:
        """CI-sized: seconds per stage, numbers meaningless, every artifact still produced.
        (Batch 2 x 16 tokens, as the tests' other tiny runs: a shared compilation cache serves
        the training programs.)"""
        return cls(**({"train_steps": 2, "n_evaluate": 16, "eval_windows": 2, "n_profile": 5,
                       "train_overrides": (("seq_len", 16), ("batch_size", 2),
                                           ("num_random_archs", 0), ("eval_windows", 2)),
                       "profile_reps": 2, "algorithms": ("random_search", "nsga2"),
                       "search_budget": 64, "search_seeds": 2, "population_size": 16,
                       "n_chosen": 2} | changes))


class Pipeline:
    """Runs the stages in order into `out`, skipping those whose stamp matches."""

    def __init__(self, config: RunConfig, out: str | Path, *, fresh: bool = False,
                 progress: Progress | None = None) -> None:
        self.config, self.out, self.fresh = config, Path(out), fresh
        self.space = get_space(config.scale)
        self.progress = progress or (lambda stage, info: None)
        self.device = device_slug(jax.devices()[0])
        self.train_config = load_config(TrainConfig, find_preset("train", config.scale))
        overrides = dict(config.train_overrides)
        if config.train_steps is not None:
            overrides["steps"] = config.train_steps
        self.train_config = replace_config(self.train_config, train=overrides)
        self.profile_config = profile_stage.ProfileConfig.preset(
            config.scale, scale=config.scale, reps=config.profile_reps,
            archs=str(self.out / "profile_archs.json"))
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ stage machinery
    def stage_config(self, name: str) -> dict[str, Any]:
        c = self.config
        own = {
            "train": {"train": config_to_dict(self.train_config)},
            "evaluate": {"n": c.n_evaluate, "windows": c.eval_windows, "seed": c.seed},
            "profile": {"n": c.n_profile,
                        "profile": dataclasses.asdict(self.profile_config.settings()),
                        "device": self.device, "seed": c.seed},
            "fit": {"test_fraction": c.test_fraction, "seed": c.seed},
            "search": {"algorithms": list(c.algorithms), "budget": c.search_budget,
                       "seeds": c.search_seeds, "population": c.population_size},
            "verify": {"n_chosen": c.n_chosen},
            "report": {"version": report_lib.REPORT_VERSION},
        }[name]
        upstream = {"train": [], "evaluate": ["train"], "profile": ["evaluate"], "fit": ["evaluate",
                    "profile"], "search": ["fit"], "verify": ["search", "train"],
                    "report": ["train", "evaluate", "profile", "fit", "search", "verify"]}[name]
        return {"scale": c.scale, **own, "upstream": {u: self.stage_config(u) for u in upstream}}

    def _stamp(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def is_done(self, name: str, outputs: list[Path]) -> bool:
        """Whether stage `name` can be skipped: its stamp matches and its outputs exist."""
        stamp = self._stamp(name)
        if self.fresh or not stamp.exists() or not all(p.exists() for p in outputs):
            return False
        return json.loads(stamp.read_text()).get("config") == self.stage_config(name)

    def _run_stage(self, name: str, outputs: list[Path], fn: Callable[[], dict]) -> None:
        if self.is_done(name, outputs):
            self.skipped.append(name)
            self.progress(name, {"skipped": True})
            return
        self._stamp(name).unlink(missing_ok=True)  # an interrupted stage must not look done
        self.progress(name, {"started": True})
        start = time.perf_counter()
        info = fn() or {}
        self.timings[name] = time.perf_counter() - start
        record = {"config": self.stage_config(name), "seconds": self.timings[name], **info}
        write_text_atomic(self._stamp(name), json.dumps(record, indent=2, default=str))
        self.progress(name, {"finished": True, "seconds": self.timings[name]})

    def run(self) -> Path:
        """Run (or skip) every stage; returns the path of `report.md`."""
        o = self.out
        (o / "stages").mkdir(parents=True, exist_ok=True)
        self._run_stage("train", [o / "train" / "metrics.jsonl"], self.train)
        self._run_stage("evaluate", [o / "quality.parquet"], self.evaluate)
        self._run_stage("profile", [o / "profile.parquet"], self.profile)
        self._run_stage("fit", [o / "surrogates" / fit_stage.VALIDATION_NAME], self.fit)
        self._run_stage("search", [o / "search" / s / "pareto.parquet" for s in self.studies],
                        self.search)
        self._run_stage("verify", [o / "chosen.parquet"], self.verify)
        self._run_stage("report", [o / "report.md"], self.report)
        return o / "report.md"

    # ------------------------------------------------------------------ stages
    def train(self) -> dict[str, Any]:
        # A re-run trains from scratch: an earlier run's checkpoints (another configuration, or
        # --fresh) must not survive beside the new ones. The token shards are kept (reused when
        # their manifest matches).
        shutil.rmtree(self.out / "train" / "checkpoints", ignore_errors=True)
        total = self.train_config.train.steps
        summary = train_stage.run(self.train_config, self.out / "train", on_metrics=lambda m: (
            self.progress("train", {"step": m["step"], "total": total, "loss": m["loss"]})))
        return {"final": summary}

    def evaluate(self) -> dict[str, Any]:
        done = [0]

        def on_chunk(archs_in_chunk: int) -> None:
            done[0] += archs_in_chunk
            self.progress("evaluate", {"done": done[0], "total": self.config.n_evaluate})

        config = evaluate_stage.EvaluateConfig(
            checkpoint=str(self.out / "train"), n=self.config.n_evaluate, seed=self.config.seed,
            windows=self.config.eval_windows)
        summary = evaluate_stage.run(config, self.out / "quality.parquet", on_chunk=on_chunk)
        return {"archs": summary["archs"]}

    def profile(self) -> dict[str, Any]:
        # The first evaluated archs plus the two extremes, so the surrogates see the whole
        # latency range and the report can correlate quality with hardware cost per arch.
        evaluated = read_parquet_checked(self.out / "quality.parquet")["arch_id"]
        sample = self.space.from_ids(evaluated.iloc[: self.config.n_profile].tolist())
        archs = Arch.concatenate([self.space.largest(), self.space.smallest(), sample])
        write_text_atomic(self.profile_config.archs, self.space.to_json(archs))
        total, done = len(archs), []

        def on_arch(arch_id: str, latency_ms: float | None) -> None:
            done.append(arch_id)
            self.progress("profile", {"done": len(done), "total": total,
                                      "latency_ms": latency_ms})

        summary = profile_stage.run(self.profile_config, self.out / "profile.parquet",
                                    on_arch=on_arch)
        return {"rows": summary["rows"]}

    def fit(self) -> dict[str, Any]:
        config = fit_stage.FitConfig(
            data=(str(self.out / "quality.parquet"), str(self.out / "profile.parquet")),
            metrics=("perplexity", f"latency:{self.device}"),
            test_fraction=self.config.test_fraction, split_seed=self.config.seed)
        summary = fit_stage.run(config, self.out / "surrogates", overwrite=True,
                                progress=lambda key: self.progress("fit", {"key": key}))
        return {"validation": summary["validation"]}

    @property
    def studies(self) -> dict[str, list[str]]:
        return {"latency": ["perplexity", f"latency:{self.device}"],
                "params": ["perplexity", "params"]}

    def search(self) -> dict[str, Any]:
        c = self.config
        results = {}
        for study, objectives in self.studies.items():
            config = search_stage.SearchConfig(
                algorithms=c.algorithms, budget=c.search_budget, seeds=c.search_seeds,
                population_size=c.population_size, objectives=tuple(objectives),
                surrogates=str(self.out / "surrogates"))
            summary = search_stage.run(
                config, self.out / "search" / study,
                progress=lambda name, seed, done, s=study: self.progress(
                    "search", {"study": s, "algorithm": name, "seed": seed, "done": done}))
            results[study] = summary["hypervolume"]
        return {"hypervolume": results}

    def verify(self) -> dict[str, Any]:
        """Measure the chosen Pareto archs for real: supernet perplexity and dense latency."""
        pareto = read_parquet_checked(self.out / "search" / "latency" / "pareto.parquet")
        chosen = choose_archs(pareto, self.studies["latency"], self.config.n_chosen)
        archs = self.space.from_ids(chosen["arch_id"].tolist())
        quality = evaluate_stage.evaluate_checkpoint(
            self.out / "train", archs, self.out / "chosen_quality.parquet",
            windows=self.config.eval_windows)
        hardware = profile_stage.profile_archs(archs, self.space, self.profile_config,
                                               self.out / "chosen_profile.parquet")
        latency = (hardware[hardware["metric"] == "latency"].groupby("arch_id")["value"]
                   .median().rename("measured_latency_ms"))
        table = (chosen.merge(quality[["arch_id", "perplexity"]].rename(
            columns={"perplexity": "measured_perplexity"}), on="arch_id")
            .merge(latency, left_on="arch_id", right_index=True))
        write_parquet_atomic(table, self.out / "chosen.parquet",
                             metadata={"scale": self.config.scale})
        return {"chosen": table["arch_id"].tolist()}

    def report(self) -> dict[str, Any]:
        path = report_lib.write_report(self.out)
        return {"report": str(path)}


def choose_archs(pareto: pd.DataFrame, objectives: list[str], n: int) -> pd.DataFrame:
    """n distinct archs of a 2-objective Pareto table: the best of each objective and the
    ones closest to the ideal point after min-max normalization."""
    front = pareto.drop_duplicates("arch_id").reset_index(drop=True)
    values = front[objectives].to_numpy(float)
    span = np.ptp(values, axis=0)
    norm = (values - values.min(0)) / np.where(span > 0, span, 1)
    order = [int(np.argmin(values[:, 0])), int(np.argmin(values[:, 1]))]
    order += [int(i) for i in np.argsort(np.linalg.norm(norm, axis=1))]
    picked = list(dict.fromkeys(order))[:n]
    return front.iloc[picked].reset_index(drop=True)
