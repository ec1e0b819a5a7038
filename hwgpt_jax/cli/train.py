"""`hwgpt train`: sandwich-rule supernet training from a TOML preset (`stages.train.run`)."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from hwgpt_jax.base.config import load_config
from hwgpt_jax.base.files import check_output
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.stages import train
from hwgpt_jax.stages.train_config import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a supernet (sandwich rule, pmap)")
    parser.add_argument("--config", required=True, help="TOML file or preset name (tiny, s, m, l)")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--out", default="runs/train", help="run folder (checkpoints, logs)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--corpus", help="override data.corpus: 'bbc', a path or a dataset name")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    changes = {}
    if args.steps is not None:
        changes["train"] = {"steps": args.steps}
    if args.corpus is not None:
        changes["data"] = {"corpus": args.corpus}
    return load_config(TrainConfig, resolve_preset("train", args.config), **changes)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    # an existing run is refused by the Trainer unless --resume; check writability first
    out = check_output(args.out, resume=True, folder=True)
    bars: dict[str, tqdm] = {}  # the tokenizing bar appears only if the corpus is tokenized

    def on_prepare(done: int, total: int) -> None:
        if "tokenizing" not in bars:
            bars["tokenizing"] = tqdm(total=total, desc="tokenizing", unit="doc", leave=False)
        bars["tokenizing"].update(done)

    def on_start(step: int) -> None:
        if "tokenizing" in bars:
            bars.pop("tokenizing").close()
        if step < cfg.train.steps:
            bars["training"] = tqdm(total=cfg.train.steps, initial=step, desc="training",
                                    unit="step")

    def on_metrics(metrics: dict) -> None:
        bar = bars["training"]
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
        if "val_ppl/largest" in metrics:
            bar.write(json.dumps({k: round(v, 2) for k, v in metrics.items()
                                  if k.startswith("val_ppl") or k == "step"}))

    try:
        summary = train.run(cfg, out, resume=args.resume, on_prepare=on_prepare,
                            on_start=on_start, on_metrics=on_metrics)
    finally:
        for bar in bars.values():
            bar.close()
    if summary["start_step"] >= cfg.train.steps:
        print(f"{out}: the checkpoint is already at step {summary['step']} = train.steps; "
              f"nothing to train (pass a larger --steps to continue)")
        return 0
    print(json.dumps(summary))
    return 0
