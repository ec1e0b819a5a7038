"""A tiny supernet checkpoint, shared by test_export.py and test_search_supernet.py.

A real `hwgpt train` run folder (token shards, orbax checkpoint with config and space) saved
at step 0: export and the supernet objective do not depend on training, and a training step
compiles for a minute on a loaded 2-core CPU. It is made once per test session
(module-level cache keyed by the session's temp root) instead of once per test module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwgpt_jax.base.config import config_from_mapping
from hwgpt_jax.stages.train_config import TrainConfig

_RUNS: dict[Path, Path] = {}

WORDS = ["alpha", "beta", "gamma", "delta", "model", "token", "layer", "head", "news",
         "market", "game", "vote", "energy", "chip", "latency", "search"]


def supernet_run(tmp_path_factory) -> Path:
    """Run folder of an untrained tiny supernet (seq 16) on a 16-word local corpus."""
    from hwgpt_jax.stages.train import Trainer

    root = tmp_path_factory.getbasetemp()
    if root not in _RUNS:
        rng = np.random.default_rng(0)
        corpus = tmp_path_factory.mktemp("supernet_corpus") / "corpus.txt"
        corpus.write_text("\n\n".join(" ".join(rng.choice(WORDS, size=300))
                                      for _ in range(40)))
        cfg = config_from_mapping(TrainConfig, {
            "model": {"scale": "tiny"}, "data": {"corpus": str(corpus)},
            "train": {"steps": 1, "batch_size": 2, "seq_len": 16, "eval_every": 0,
                      "eval_windows": 2, "num_random_archs": 0}})
        out = tmp_path_factory.mktemp("supernet_run")
        trainer = Trainer(cfg, out)
        trainer.save()  # step 0
        trainer.close()
        _RUNS[root] = out
    return _RUNS[root]
