"""The human-readable report of `hwgpt run`: plots and a `report.md` read top to bottom.

Every number in the report is read from the files the stages wrote (tables, stamps with the
stage configurations, logs), so the report can be regenerated from the run folder alone,
without re-running anything, and it names every file it shows.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import write_text_atomic
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.stages import plots

REPORT_VERSION = 1


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    header = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(r.get(h, "-")) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _stamp(out: Path, stage: str) -> dict[str, Any]:
    path = out / "stages" / f"{stage}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def per_arch_table(out: Path, device: str) -> pd.DataFrame:
    """Quality and hardware per arch (archs that were both evaluated and profiled)."""
    quality = pd.read_parquet(out / "quality.parquet")
    hardware = pd.read_parquet(out / "profile.parquet")
    wide = hardware.pivot_table(index="arch_id", columns="metric", values="value",
                                aggfunc="median")
    wide.columns = [f"{c}:{device}" if c == "latency" else c for c in wide.columns]
    return quality.merge(wide, left_on="arch_id", right_index=True, how="inner")


def write_report(out: str | Path) -> Path:
    """Draw the plots and write `report.md` of the run folder `out`; returns its path."""
    out = Path(out)
    profile = _stamp(out, "profile")["config"]
    device, space = profile["device"], get_space(profile["scale"])
    sections = [f"# hwgpt-jax report: scale `{space.scale}` on `{device}`\n",
                f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC with "
                f"jax {jax.__version__} on {jax.devices()[0].platform} "
                f"({jax.devices()[0].device_kind}). Every figure below is read from the files "
                f"named beside it.\n"]
    sections += _training(out)
    sections += _quality(out)
    sections += _hardware(out, device, space, profile["profile"])
    sections += _surrogates(out)
    sections += _search(out)
    sections += _chosen(out, f"latency:{device}")
    return write_text_atomic(out / "report.md", "\n".join(sections))


def _training(out: Path) -> list[str]:
    log = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text()
           .splitlines() if line.strip()]
    evals = [row for row in log if "val_ppl/largest" in row]
    cfg = _stamp(out, "train")["config"]["train"]
    sections = ["## 1. Supernet training\n",
                f"Sandwich rule (largest, smallest and {cfg['train']['num_random_archs']} random "
                f"archs per step) on corpus `{cfg['data']['corpus']}`: {log[-1]['step']} steps "
                f"of {cfg['train']['batch_size']} x {cfg['train']['seq_len']} tokens "
                f"({log[-1]['tokens']:,} tokens), in "
                f"{_stamp(out, 'train').get('seconds', 0):.0f} s. Log: `train/metrics.jsonl`; "
                f"checkpoints: `train/checkpoints/`.\n"]
    if evals:
        members = ("smallest", "mid", "largest")
        picked = [evals[0], evals[-1]] if len(evals) > 1 else [evals[-1]]
        rows = [{"step": row["step"], **{m: row[f"val_ppl/{m}"] for m in members}}
                for row in picked]
        sections.append("Validation perplexity (masked supernet, inherited weights):\n\n"
                        + _table(rows))
    curve = plots.training_curve_plot(log, out / "plots" / "training.png")
    return sections + [f"\n![training curve]({curve.relative_to(out)})\n"]


def _quality(out: Path) -> list[str]:
    quality = pd.read_parquet(out / "quality.parquet")
    ecdf = plots.ecdf_by_choice(quality, "perplexity", out / "plots" / "ecdf_perplexity.png")
    return ["## 2. Sub-network quality (`quality.parquet`)\n",
            f"{len(quality)} unique archs sampled uniformly, evaluated with inherited weights on "
            f"{int(quality['tokens'].iloc[0]):,} validation tokens each: perplexity from "
            f"{quality['perplexity'].min():.1f} to {quality['perplexity'].max():.1f} "
            f"(median {quality['perplexity'].median():.1f}).\n",
            f"\n![ECDF of perplexity]({ecdf.relative_to(out)})\n"]


def _energy_note(hardware: pd.DataFrame) -> str:
    energy = hardware[hardware["metric"] == "energy"]
    if not len(energy):
        return "not recorded"
    if energy["value"].notna().any():
        return f"measured, median {energy['value'].median():.3g} J per forward"
    return "missing (" + str(energy["note"].dropna().iloc[0]) + ")"


def _hardware(out: Path, device: str, space: Any, cfg: dict[str, Any]) -> list[str]:
    lat = f"latency:{device}"
    hardware = pd.read_parquet(out / "profile.parquet")
    latency = hardware[hardware["metric"] == "latency"]
    per_arch = latency.groupby("arch_id")["value"]
    cv = (per_arch.std() / per_arch.mean()).median()
    sections = ["## 3. Hardware profile (`profile.parquet`)\n",
                f"{per_arch.ngroups} archs, dense extracted sub-networks (random weights), batch "
                f"{cfg['batch']} x seq {cfg['seq']}, {cfg['dtype']}, {cfg['reps']} timed "
                f"repetitions after {cfg['warmup']} warm-ups each: median latency from "
                f"{per_arch.median().min():.3g} to {per_arch.median().max():.3g} ms; median "
                f"coefficient of variation across repetitions {cv:.3f}. Energy: "
                f"{_energy_note(hardware)}.\n"]
    merged = per_arch_table(out, device)
    if len(merged) >= 3:
        columns = [c for c in ("perplexity", lat, "params", "flops_xla", "memory")
                   if c in merged.columns and merged[c].notna().sum() >= 3]
        heat = plots.correlation_heatmap(merged, columns, out / "plots" / "correlation.png")
        sections.append(f"\nKendall rank correlation over the {len(merged)} archs both "
                        f"evaluated and profiled:\n\n![correlation]({heat.relative_to(out)})\n")
    table = per_arch.median().rename(lat).reset_index()
    table = table.merge(pd.DataFrame(space.to_records(space.from_ids(
        table["arch_id"].tolist()))).assign(arch_id=table["arch_id"]), on="arch_id")
    ecdf = plots.ecdf_by_choice(table, lat, out / "plots" / "ecdf_latency.png")
    return sections + [f"\n![ECDF of latency]({ecdf.relative_to(out)})\n"]


def _surrogates(out: Path) -> list[str]:
    validation = json.loads((out / "surrogates" / "validation.json").read_text())
    sections = ["## 4. Surrogates (`surrogates/`, `surrogates/validation.json`)\n",
                "Fitted on the archs above minus a held-out test split; scores on the "
                "held-out archs (coverage: fraction of held-out *observations* inside the "
                "conformal interval):\n\n",
                _table([{"metric": key, **values} for key, values in validation.items()])]
    if (out / "surrogates" / "calibration_latency.png").exists():
        sections.append("\n![calibration](surrogates/calibration_latency.png)\n")
    return sections


def _search(out: Path) -> list[str]:
    sections = ["## 5. Multi-objective search (`search/`)\n"]
    stamp = _stamp(out, "search")
    for study in stamp["hypervolume"]:
        summary = json.loads((out / "search" / study / "summary.json").read_text())
        objectives = summary["objectives"]
        rows = [{"algorithm": name, "HV mean": v["final_hypervolume_mean"],
                 "HV std": v["final_hypervolume_std"], "seeds": len(v["per_seed"])}
                for name, v in summary["hypervolume"].items()]
        sections.append(f"### {objectives[0]} vs {objectives[1]}\n\n"
                        f"Budget {stamp['config']['budget']} surrogate evaluations per run; "
                        f"hypervolume of the normalized objectives (min-max between the smallest "
                        f"and largest arch, reference point 1):\n\n{_table(rows)}\n"
                        f"![front](search/{study}/pareto_front.png) "
                        f"![hypervolume](search/{study}/hypervolume.png)\n")
    return sections


def _chosen(out: Path, lat: str) -> list[str]:
    chosen = pd.read_parquet(out / "chosen.parquet")
    timings = {stage: _stamp(out, stage).get("seconds") for stage in
               ("train", "evaluate", "profile", "fit", "search", "verify")}
    return ["## 6. Chosen architectures (`chosen.parquet`)\n",
            "From the perplexity-latency Pareto set: the best of each objective and the "
            "arch nearest the ideal point, then measured for real (supernet perplexity "
            "and dense latency on this device):\n\n",
            _table([{"arch": r["arch_id"], "predicted ppl": r["perplexity"],
                     "measured ppl": r["measured_perplexity"],
                     "predicted ms": r[lat], "measured ms": r["measured_latency_ms"]}
                    for _, r in chosen.iterrows()]),
            "\n## Stage times (seconds, from `stages/*.json`)\n\n"
            + _table([{k: (v if v is not None else "-") for k, v in timings.items()}])]
