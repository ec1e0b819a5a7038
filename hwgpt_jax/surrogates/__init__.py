"""Surrogate models of HW-GPT-Bench metrics: per key, a ridge model, a residual MLP or a deep
ensemble chosen by k-fold cross-validation (the networks are Flax NNX modules); point models for
quality, quantile heads trained with the pinball loss for hardware cost, conformalized (CQR)
on held-out archs."""

from hwgpt_jax.surrogates.conformal import (
    CENTRAL_LEVELS,
    calibrate,
    calibrated_quantiles,
    conformal_quantile,
    cqr_scores,
)
from hwgpt_jax.surrogates.data import MetricData, from_table, metric_key, split_key
from hwgpt_jax.surrogates.fit import (
    DEFAULT_LEVELS,
    SurrogateConfig,
    default_config,
    fit_surrogate,
    load_presets,
    split_archs,
)
from hwgpt_jax.surrogates.linear import kendall_tau, kfold_indices, ridge_fit
from hwgpt_jax.surrogates.losses import pinball_loss, squared_error
from hwgpt_jax.surrogates.mlp import MLP, QuantileMLP, apply_mlp, init_mlp, monotone_quantiles
from hwgpt_jax.surrogates.model import MODES, Surrogate, SurrogateNet, SurrogateSpec, predict
from hwgpt_jax.surrogates.select import Selection, SelectionConfig, select_model

__all__ = [
    "CENTRAL_LEVELS", "DEFAULT_LEVELS", "MLP", "MODES", "MetricData", "QuantileMLP", "Selection",
    "SelectionConfig", "Surrogate", "SurrogateConfig", "SurrogateNet", "SurrogateSpec",
    "apply_mlp", "calibrate",
    "calibrated_quantiles", "conformal_quantile", "cqr_scores", "default_config",
    "fit_surrogate", "from_table", "init_mlp", "kendall_tau", "kfold_indices", "load_presets",
    "metric_key", "monotone_quantiles", "pinball_loss", "predict", "ridge_fit", "select_model",
    "split_archs", "split_key", "squared_error",
]
