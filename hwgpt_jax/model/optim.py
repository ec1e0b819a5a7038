"""The supernet's optimizer: AdamW (Loshchilov & Hutter, arXiv 1711.05101) on a linear-warmup
cosine schedule with global-norm clipping, as HW-GPT-Bench trains its supernets.

`OptimConfig` is the `[optim]` section of the train stage's config; the core takes it and the
run's step count, so it needs nothing from the stage above it.
"""

from __future__ import annotations

import dataclasses

import optax

from hwgpt_jax.model.params import weight_decay_mask


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW and schedule hyper-parameters (HW-GPT-Bench / DESIGN.md defaults)."""

    lr: float = 3.16e-4
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


def make_schedule(optim: OptimConfig, steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then cosine decay to `min_lr_ratio * lr` at step `steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=optim.lr, warmup_steps=optim.warmup_steps,
        decay_steps=max(steps, optim.warmup_steps + 1),
        end_value=optim.min_lr_ratio * optim.lr)


def make_optimizer(optim: OptimConfig, steps: int) -> optax.GradientTransformation:
    """AdamW on `make_schedule`, global-norm clipping, and no weight decay on biases and
    LayerNorm parameters."""
    return optax.chain(
        optax.clip_by_global_norm(optim.grad_clip),
        optax.adamw(make_schedule(optim, steps), b1=optim.beta1, b2=optim.beta2,
                    weight_decay=optim.weight_decay, mask=weight_decay_mask),
    )


__all__ = ["OptimConfig", "make_optimizer", "make_schedule"]
