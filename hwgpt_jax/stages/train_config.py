"""The train stage's config (`TrainConfig`): frozen sections `[model]`, `[data]`, `[optim]`,
`[train]`, read from TOML with the one loader (`hwgpt_jax.base.config`).

A preset (`hwgpt_jax/presets/train/tiny.toml`, ...) sets some keys; the rest take the
defaults below (the HW-GPT-Bench / DESIGN.md hyper-parameters). Unknown sections or keys are
errors, so a typo never silently trains the default. The same section and key names are
recorded in every checkpoint's meta, which resume compares.
"""

from __future__ import annotations

import dataclasses

from hwgpt_jax.model.optim import OptimConfig
from hwgpt_jax.space.arch import get_space


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    scale: str = "tiny"
    compute_dtype: str = "float32"  # "bfloat16" on accelerators; parameters stay float32

    def __post_init__(self) -> None:
        get_space(self.scale)
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"compute_dtype={self.compute_dtype!r}; expected float32, "
                             f"bfloat16 or float16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    corpus: str = "bbc"  # "bbc", a local .txt/.jsonl/.parquet path, or a Hugging Face name
    data_dir: str | None = None  # token shards; default: <out>/data
    val_fraction: float = 0.05
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The `[train]` section: length, batch and cadence of the training loop."""

    steps: int = 1000
    batch_size: int = 8  # windows per step for this process, split over its devices
    seq_len: int = 256
    grad_accum: int = 1
    num_random_archs: int = 2
    # Token chunks of the fused LM-head cross-entropy (the gcd with the tokens per
    # micro-batch is used): fewer (V, D)-sized partial sums vs smaller (tokens, V) buffers.
    head_chunks: int = 8
    seed: int = 0
    eval_every: int = 100
    eval_windows: int = 32
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "head_chunks",
                     "checkpoint_every", "keep_checkpoints", "log_every", "eval_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name}={value!r}; expected a positive integer")
        if self.num_random_archs < 0 or self.eval_every < 0:
            raise ValueError(f"train.num_random_archs={self.num_random_archs}, train.eval_every="
                             f"{self.eval_every}; expected non-negative integers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The whole train stage: the model, its corpus, the optimizer and the loop."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: LoopConfig = LoopConfig()

    def __post_init__(self) -> None:
        block = get_space(self.model.scale).block_size
        if self.train.seq_len > block:
            raise ValueError(f"train.seq_len={self.train.seq_len} exceeds the {self.model.scale} "
                             f"block size {block}")


__all__ = ["DataConfig", "LoopConfig", "ModelConfig", "OptimConfig", "TrainConfig"]
