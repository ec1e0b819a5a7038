"""Figures of the benchmark (matplotlib, Agg backend, PNG written atomically).

The paper's figures (HW-GPT-Bench, arXiv 2405.10299) this module reproduces from any table:
- Fig. 3: ECDF of a metric stratified by each architectural choice (`ecdf_by_choice`);
- Figs. 8-16: rank correlation between metrics and devices (`correlation_heatmap`);
- Fig. 5: calibration / Q-Q of quantile surrogates (`calibration_plot`);
- search results: Pareto fronts per algorithm (`pareto_front_plot`) and hypervolume over
  evaluations with the spread over seeds (`hypervolume_plot`).
Every function takes plain arrays or DataFrames and a path, and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hwgpt_jax.base.files import write_atomic  # noqa: E402

ARCH_CHOICES = ("embed_dim", "n_layer", "mean_n_head", "mean_mlp_ratio", "bias")


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Write a figure as PNG atomically (temp file in the same folder, then rename)."""
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                                          bbox_inches="tight"))
    finally:
        plt.close(fig)


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values[np.isfinite(values)])
    return x, np.arange(1, len(x) + 1) / max(len(x), 1)


def ecdf_by_choice(table: pd.DataFrame, metric: str, path: str | os.PathLike,
                   choices: Sequence[str] = ARCH_CHOICES, log_x: bool = False,
                   title: str | None = None) -> Path:
    """ECDF of `metric` stratified by each architectural choice (one panel per choice).

    `table` has the metric column and arch columns: `embed_dim`, `n_layer`, `bias`, and either
    `mean_n_head`/`mean_mlp_ratio` or per-layer `n_head`/`mlp_ratio` lists (averaged over
    active layers, then split into three equal-count bins).
    """
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not a column; columns: {list(table.columns)}")
    table = with_layer_means(table)
    fig, axes = plt.subplots(1, len(choices), figsize=(3.2 * len(choices), 2.8), sharey=True)
    for ax, choice in zip(np.atleast_1d(axes), choices, strict=True):
        groups = table[choice]
        if choice.startswith("mean_"):  # three equal-count bins, labelled by their range
            bins = pd.qcut(groups, 3, duplicates="drop")
            groups = bins.map(lambda b, g=groups: f"{g[bins == b].min():.2g}-{b.right:.2g}")
        for label, sub in table.groupby(groups, observed=True, sort=True):
            x, y = _ecdf(sub[metric].to_numpy(float))
            ax.step(x, y, where="post", label=str(label))
        ax.set_title(choice)
        ax.set_xlabel(metric)
        if log_x:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("ECDF")
    fig.suptitle(title or f"ECDF of {metric} by architectural choice", y=1.04)
    return save_figure(fig, path)


def with_layer_means(table: pd.DataFrame) -> pd.DataFrame:
    """Add `mean_n_head` / `mean_mlp_ratio` (over active layers) when per-layer lists exist."""
    table = table.copy()
    for field in ("n_head", "mlp_ratio"):
        if f"mean_{field}" not in table and field in table:
            table[f"mean_{field}"] = [float(np.mean([v for v in row if v > 0]))
                                      for row in table[field]]
    return table


def correlation_heatmap(table: pd.DataFrame, columns: Sequence[str], path: str | os.PathLike,
                        method: str = "kendall", title: str | None = None) -> Path:
    """Rank correlation (Kendall tau by default) between metric columns, annotated."""
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; it has {list(table.columns)}")
    corr = table[list(columns)].corr(method=method).to_numpy()
    size = max(4.0, 0.55 * len(columns) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(columns)), columns, fontsize=8)
    if len(columns) <= 16:
        for i in range(len(columns)):
            for j in range(len(columns)):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"{method} correlation")
    ax.set_title(title or f"{method.capitalize()} correlation between metrics")
    return save_figure(fig, path)


def calibration_plot(levels: np.ndarray, predicted: np.ndarray, observations: np.ndarray,
                     path: str | os.PathLike, title: str = "quantile calibration") -> Path:
    """Observed frequency below each predicted quantile vs its nominal level (Q-Q style).

    Args:
        levels: (Q,) nominal quantile levels.
        predicted: (N, Q) predicted quantiles per arch.
        observations: (N, R) observations per arch, NaN where missing.
    """
    levels = np.asarray(levels, float)
    predicted, observations = np.asarray(predicted, float), np.asarray(observations, float)
    if predicted.shape != (observations.shape[0], levels.size):
        raise ValueError(f"predicted has shape {predicted.shape}, expected "
                         f"({observations.shape[0]}, {levels.size})")
    valid = np.isfinite(observations)
    below = (observations[:, None, :] <= predicted[:, :, None]) & valid[:, None, :]
    empirical = below.sum((0, 2)) / valid.sum()
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="ideal")
    ax.plot(levels, empirical, marker="o", label="surrogate")
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("observed fraction below")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def pareto_front_plot(fronts: Mapping[str, np.ndarray], path: str | os.PathLike,
                      labels: Sequence[str] = ("objective 1", "objective 2"),
                      points: np.ndarray | None = None, title: str = "Pareto fronts") -> Path:
    """2-D Pareto fronts (minimization) per algorithm as staircases, over optional points."""
    fig, ax = plt.subplots(figsize=(5, 4))
    if points is not None and len(points):
        ax.scatter(points[:, 0], points[:, 1], s=4, color="lightgray", label="evaluated")
    for name, front in fronts.items():
        front = np.asarray(front, float)
        front = front[np.argsort(front[:, 0])]
        ax.step(front[:, 0], front[:, 1], where="post", marker="o", markersize=3, label=name)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def hypervolume_plot(curves: Mapping[str, np.ndarray], path: str | os.PathLike,
                     evaluations: np.ndarray | Mapping[str, np.ndarray] | None = None,
                     title: str = "hypervolume over evaluations") -> Path:
    """Mean hypervolume per algorithm over evaluations, shaded min-max over seeds.

    Args:
        curves: name -> (seeds, T) hypervolume after each of T evaluations (or checkpoints).
        evaluations: (T,) x values shared by all curves, or name -> x values (algorithms
          with different batch sizes); default 1..T.
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        curve = np.atleast_2d(np.asarray(curve, float))
        x = evaluations[name] if isinstance(evaluations, Mapping) else evaluations
        x = np.arange(1, curve.shape[1] + 1) if x is None else x
        line, = ax.plot(x, curve.mean(0), label=name)
        ax.fill_between(x, curve.min(0), curve.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def training_curve_plot(log: Sequence[Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Per-member training loss over steps and validation perplexity at the evaluations."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    steps = [row["step"] for row in log]
    members = sorted({k for row in log for k in row if k.startswith("loss/")})
    for name in members:
        left.plot(steps, [row.get(name, np.nan) for row in log], label=name.split("/")[1])
    left.set_xlabel("step")
    left.set_ylabel("training loss (nats/token)")
    left.legend(fontsize=7)
    evals = [row for row in log if "val_ppl/largest" in row]
    for name in ("smallest", "mid", "largest"):
        right.plot([row["step"] for row in evals], [row[f"val_ppl/{name}"] for row in evals],
                   marker="o", label=name)
    right.set_yscale("log")
    # Plain numbers on the (often less than a decade wide) log axis, not 2.2x10^3 labels.
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_formatter(plain)
    right.set_xlabel("step")
    right.set_ylabel("validation perplexity")
    right.legend(fontsize=7)
    fig.suptitle("supernet training (sandwich rule)")
    return save_figure(fig, path)
