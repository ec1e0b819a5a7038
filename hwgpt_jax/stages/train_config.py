"""Training experiment configuration: frozen dataclasses, one per component, read from TOML.

A preset (`hwgpt_jax/presets/train/tiny.toml`, ...) has the sections `[model]`, `[data]`,
`[optim]`, `[train]`; any key left out takes the default below (the HW-GPT-Bench / DESIGN.md
hyper-parameters).
Unknown sections or keys are errors, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

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
class OptimConfig:
    lr: float = 3.16e-4
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
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
                     "checkpoint_every",
                     "keep_checkpoints", "log_every", "eval_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name}={value!r}; expected a positive integer")
        if self.num_random_archs < 0 or self.eval_every < 0:
            raise ValueError(f"train.num_random_archs={self.num_random_archs}, train.eval_every="
                             f"{self.eval_every}; expected non-negative integers")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        block = get_space(self.model.scale).block_size
        if self.train.seq_len > block:
            raise ValueError(f"train.seq_len={self.train.seq_len} exceeds the {self.model.scale} "
                             f"block size {block}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected "
                             f"{sorted(sections)}")
        parts = {}
        for field in dataclasses.fields(cls):
            section_cls = type(field.default)
            values = data.get(field.name, {})
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - known
            if bad:
                raise ValueError(f"unknown config key(s) {sorted(bad)} in [{field.name}]; "
                                 f"expected some of {sorted(known)}")
            parts[field.name] = section_cls(**values)
        return cls(**parts)

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {path} is not valid TOML: {err}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict[str, Any]) -> ExperimentConfig:
        """A copy with some keys of some sections changed, e.g. replace(train={"steps": 5})."""
        data = self.to_dict()
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return ExperimentConfig.from_dict(data)
