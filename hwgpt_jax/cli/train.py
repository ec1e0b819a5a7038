"""`hwgpt train`: sandwich-rule supernet training from a TOML preset."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from hwgpt_jax.base.files import check_output
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.stages.train import Trainer
from hwgpt_jax.stages.train_config import ExperimentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a supernet (sandwich rule, pmap)")
    parser.add_argument("--config", required=True, help="TOML file or preset name (tiny, s, m, l)")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--out", default="runs/train", help="run folder (checkpoints, logs)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--corpus", help="override data.corpus: 'bbc', a path or a dataset name")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    cfg = ExperimentConfig.from_toml(resolve_preset("train", args.config))
    if args.steps is not None:
        cfg = cfg.replace(train={"steps": args.steps})
    if args.corpus is not None:
        cfg = cfg.replace(data={"corpus": args.corpus})
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    # an existing run is refused by the Trainer unless --resume; check writability first
    out = check_output(args.out, resume=True, folder=True)
    bars: list[tqdm] = []  # the tokenizing bar appears only if the corpus is tokenized

    def on_prepare(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="tokenizing", unit="doc", leave=False))
        bars[0].update(done)

    try:
        trainer = Trainer(cfg, out, resume=args.resume, on_prepare=on_prepare)
    finally:
        for bar in bars:
            bar.close()
    if trainer.step_count >= cfg.train.steps:
        trainer.close()
        print(f"{out}: the checkpoint is already at step {trainer.step_count} = train.steps; "
              f"nothing to train (pass a larger --steps to continue)")
        return 0
    with tqdm(total=cfg.train.steps, initial=trainer.step_count, desc="training",
              unit="step") as bar:
        def on_metrics(metrics: dict) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}",
                            tok_s=f"{metrics['tokens_per_s']:.0f}")
            if "val_ppl/largest" in metrics:
                bar.write(json.dumps({k: round(v, 2) for k, v in metrics.items()
                                      if k.startswith("val_ppl") or k == "step"}))
        try:
            last = trainer.run(on_metrics=on_metrics)
        finally:  # Ctrl-C included: let a checkpoint being written finish
            trainer.close()
    summary = {k: v for k, v in last.items() if k.startswith(("step", "val_ppl", "loss"))}
    print(json.dumps({"out": str(out), **summary}))
    return 0
