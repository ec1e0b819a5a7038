"""The supernet's optimizer: AdamW (Loshchilov & Hutter, arXiv 1711.05101) on a linear-warmup
cosine schedule with global-norm clipping, as HW-GPT-Bench trains its supernets. Its own module
so that training and checkpoint loading (which rebuilds the optimizer state's shapes) share it
without importing each other."""

from __future__ import annotations

import optax

from hwgpt_jax.model.params import weight_decay_mask
from hwgpt_jax.stages.train_config import ExperimentConfig


def make_schedule(cfg: ExperimentConfig) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    opt = cfg.optim
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=opt.lr, warmup_steps=opt.warmup_steps,
        decay_steps=max(cfg.train.steps, opt.warmup_steps + 1),
        end_value=opt.min_lr_ratio * opt.lr)


def make_optimizer(cfg: ExperimentConfig) -> optax.GradientTransformation:
    """AdamW on `make_schedule`, global-norm clipping, and no weight decay on biases and
    LayerNorm parameters."""
    opt = cfg.optim
    return optax.chain(
        optax.clip_by_global_norm(opt.grad_clip),
        optax.adamw(make_schedule(cfg), b1=opt.beta1, b2=opt.beta2,
                    weight_decay=opt.weight_decay, mask=weight_decay_mask),
    )
