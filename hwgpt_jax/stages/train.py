"""The train stage: sandwich-rule supernet training, data parallel with `jax.pmap`, with
exact resume. `run(config, out)` trains a `TrainConfig` into a run folder.

The step's pure functions (losses, member gradients, the update) live in
`hwgpt_jax.model.step`; this module owns the run: the replicated state, the compiled step
programs (one gradient program per embed dim, one update), the data stream,
validation, logging (`metrics.jsonl`) and orbax checkpoints (`checkpoints/`).

Resume is exact: the checkpoint holds parameters, optimizer state, step and the grain iterator
state, and each step's archs come from `fold_in(seed key, step)`, so a run stopped at step k
and resumed ends bit-identical (on the same device count) to an uninterrupted one. A resume
is checked first (`hwgpt_jax.model.checkpoints`): the same configuration (bar the run's length
and logging cadence) and the same corpus, before the run's token shards are touched; every
checkpoint is verified against the sha256 recorded when it was saved.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from hwgpt_jax.base.config import config_to_dict
from hwgpt_jax.base.files import write_text_atomic
from hwgpt_jax.base.metadata import versions
from hwgpt_jax.data.shards import corpus_fingerprint, prepare_corpus
from hwgpt_jax.data.windows import train_iterator, validation_windows
from hwgpt_jax.measure.quality import batch_windows, window_sums
from hwgpt_jax.model import checkpoints
from hwgpt_jax.model.optim import make_optimizer, make_schedule
from hwgpt_jax.model.step import (
    AXIS,
    Member,
    apply_update,
    member_grads,
    replicate,
    sandwich_members,
    training_keys,
    zero_grads,
)
from hwgpt_jax.model.supernet import init_params
from hwgpt_jax.space.arch import Arch, get_space
from hwgpt_jax.stages.train_config import TrainConfig


class TrainingDivergedError(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Owns the replicated state, the compiled step functions, the data stream and checkpoints.

    `run()` trains to `cfg.train.steps`; `step()` does one sandwich step and returns its
    metrics. State lives on the devices replicated along a leading device axis.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 devices: list[Any] | None = None,
                 on_prepare: Callable[[int, int], None] | None = None) -> None:
        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.space = get_space(cfg.model.scale)
        self.devices = devices or jax.local_devices()
        n_dev = len(self.devices)
        if cfg.train.batch_size % (n_dev * cfg.train.grad_accum):
            raise ValueError(f"batch_size {cfg.train.batch_size} must be divisible by "
                             f"devices x grad_accum = {n_dev} x {cfg.train.grad_accum}")
        self.compute_dtype = None if cfg.model.compute_dtype == "float32" else jnp.dtype(
            cfg.model.compute_dtype)
        self.manager = ocp.CheckpointManager(
            (self.out_dir / "checkpoints").resolve(),
            options=ocp.CheckpointManagerOptions(max_to_keep=cfg.train.keep_checkpoints,
                                                 create=True),
            item_names=("state", "data", "meta"))
        try:
            self._setup(resume, on_prepare)
        except BaseException:  # no checkpointer threads left behind a refused run
            self.manager.close()
            raise

    def _setup(self, resume: bool, on_prepare: Callable[[int, int], None] | None) -> None:
        """Check a resume, prepare the data, compile the steps, init or restore the state."""
        cfg = self.cfg
        earlier = sorted(self.manager.all_steps())
        if earlier and not resume:
            raise FileExistsError(
                f"{self.out_dir / 'checkpoints'} already holds checkpoints (steps {earlier}) of "
                f"an earlier run; pass --resume to continue it, or train into another --out")
        data_key = corpus_fingerprint(cfg.data.corpus, seed=cfg.data.seed,
                                               val_fraction=cfg.data.val_fraction)
        # checked before the shards are prepared: a refused resume leaves the run's data as is
        resume_step, resume_meta = self._check_resumable(data_key) if resume else (None, None)
        self.tx = make_optimizer(cfg.optim, cfg.train.steps)
        self.schedule = make_schedule(cfg.optim, cfg.train.steps)
        self.shards = prepare_corpus(
            cfg.data.corpus, cfg.data.data_dir or self.out_dir / "data", seed=cfg.data.seed,
            val_fraction=cfg.data.val_fraction, progress=on_prepare)
        self.data_fingerprint = {"key": data_key,
                                 "shards_sha256": checkpoints.shards_sha256(self.shards)}
        if resume_meta is not None and (resume_meta["data_fingerprint"]["shards_sha256"]
                                        != self.data_fingerprint["shards_sha256"]):
            raise ValueError(f"--resume: the token shards in {self.shards.directory} differ "
                             f"from those the checkpoint was trained on")
        self.val_windows = validation_windows(
            self.shards, cfg.train.seq_len, max_windows=cfg.train.eval_windows)
        self._val_batches = batch_windows(self.val_windows, 8)  # fixed: batched once
        self.iterator = train_iterator(
            self.shards, cfg.train.batch_size, cfg.train.seq_len, seed=cfg.train.seed,
            process_index=jax.process_index(), process_count=jax.process_count())
        init_key, self.key = training_keys(cfg.train.seed)
        self._grad_fns: dict[int, Callable] = {}
        self._zeros = jax.pmap(zero_grads, AXIS, devices=self.devices)
        self._update = jax.pmap(apply_update, AXIS, static_broadcasted_argnums=(3,),
                                donate_argnums=(0, 1), devices=self.devices)
        self._eval = jax.jit(jax.vmap(window_sums, in_axes=(None, None, None, 0, None)),
                             static_argnums=(4,))
        # The supernet's state as a dict, drawn from the init key itself (as `Supernet` does
        # from its rngs), so a seed gives the same run as before the NNX modules.
        params = init_params(init_key, self.space)
        state = (params, self.tx.init(params))
        self.step_count = 0
        if resume_step is not None:
            state = self._restore(resume_step, state, resume_meta)
        self.params, self.opt_state = replicate(state, self.devices)

    # -- one step
    def draw_members(self) -> list[Member]:
        """The sandwich the next `step()` trains when given no members: drawn from the arch key
        folded with the step count, so a resumed run draws the same archs."""
        return sandwich_members(self.space, jax.random.fold_in(self.key, self.step_count),
                                len(self.devices), self.cfg.train.num_random_archs)

    @property
    def gradient_programs(self) -> int:
        """Gradient programs compiled so far (one per embed dim)."""
        return len(self._grad_fns)

    def _grad_fn(self, member: Member) -> Callable:
        if member.embed_dim not in self._grad_fns:
            self._grad_fns[member.embed_dim] = jax.pmap(
                member_grads, AXIS, static_broadcasted_argnums=(4, 5, 6, 7),
                donate_argnums=(1,), devices=self.devices)
        return self._grad_fns[member.embed_dim]

    def step(self, members: list[Member] | None = None) -> dict[str, Any]:
        """One sandwich step on the next batch; `members` overrides the sampled sandwich.

        Returns its metrics: the mean and per-member losses (`loss/<member>`), the wall seconds
        of each member's gradient and of the update (`seconds/<member>`, `seconds/update`: the
        random members' widths weigh on the step time), the gradient norm, the learning rate
        and the tokens seen so far."""
        cfg, n_dev = self.cfg.train, len(self.devices)
        batch = next(self.iterator)  # (batch, seq + 1) for this process
        windows = batch.reshape(n_dev, cfg.grad_accum, -1, batch.shape[-1])
        if members is None:
            members = self.draw_members()
        # The largest divisor-compatible chunking of one micro-batch's tokens.
        head_chunks = math.gcd(cfg.head_chunks, windows.shape[2] * (windows.shape[3] - 1))
        acc, losses, seconds = self._zeros(self.params), {}, {}
        for member in members:
            start = time.perf_counter()
            acc, loss = self._grad_fn(member)(
                self.params, acc, windows, member.arch, self.space, member.embed_dim,
                self.compute_dtype, head_chunks)
            # Reading the loss blocks on the step: CPU collectives deadlock when many pmapped
            # programs are in flight at once (DESIGN.md).
            losses[member.name] = float(loss[0])
            seconds[member.name] = time.perf_counter() - start
        if not all(math.isfinite(v) for v in losses.values()):
            self.manager.wait_until_finished()
            raise TrainingDivergedError(
                f"non-finite loss {losses} at step {self.step_count + 1}; stopped, the last "
                f"good checkpoint (step {self.manager.latest_step()}) is intact")
        start = time.perf_counter()
        self.params, self.opt_state, grad_norm = self._update(
            self.params, self.opt_state, acc, self.tx)
        grad_norm = float(grad_norm[0])
        seconds["update"] = time.perf_counter() - start
        self.step_count += 1
        metrics = {"step": self.step_count, "loss": float(np.mean(list(losses.values()))),
                   **{f"loss/{k}": v for k, v in losses.items()},
                   **{f"seconds/{k}": v for k, v in seconds.items()},
                   "grad_norm": grad_norm,
                   "lr": float(self.schedule(self.step_count - 1)),
                   "tokens": self.step_count * cfg.batch_size * cfg.seq_len}
        return metrics

    # -- validation
    def validate(self) -> dict[str, float]:
        """Validation perplexity of the smallest, mid and largest archs (masked supernet)."""
        named = {"smallest": self.space.smallest(), "mid": self.space.mid(),
                 "largest": self.space.largest()}
        archs = Arch.concatenate(list(named.values()))
        params = jax.tree.map(lambda x: x[0], self.params)
        nll, _ = self._eval(params, *self._val_batches, archs, self.space)
        losses = np.asarray(nll) / self.val_windows[:, 1:].size
        return {f"val_ppl/{name}": float(np.exp(loss)) for name, loss in zip(named, losses,
                                                                              strict=True)}

    # -- checkpoints
    def save(self) -> None:
        """Checkpoint the state, the data iterator and the sealed meta at the current step."""
        state = jax.device_get(jax.tree.map(lambda x: x[0], (self.params, self.opt_state)))
        tree = {"params": state[0], "opt_state": state[1]}
        data_state = self.iterator.get_state()
        meta = {"scale": self.space.scale, "step": self.step_count,
                "config": config_to_dict(self.cfg), "space": self.space.choices(),
                "devices": len(self.devices), "jax": jax.__version__, "versions": versions(),
                "data_fingerprint": self.data_fingerprint,
                "format_version": checkpoints.FORMAT_VERSION}
        meta = checkpoints.seal_meta(tree, data_state, meta)
        self.manager.save(self.step_count, args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)))

    def _check_resumable(self, data_key: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The latest checkpoint's step and meta, after checking that it belongs to this
        configuration and corpus and that the run asks for more steps."""
        folder = self.out_dir / "checkpoints"
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {folder}")
        meta = checkpoints.restore_meta(self.manager, folder, step)
        if meta["scale"] != self.space.scale:
            raise ValueError(f"checkpoint in {self.out_dir} is of scale {meta['scale']!r}, "
                             f"the config asks for {self.space.scale!r}")
        checkpoints.check_resume(meta, config_to_dict(self.cfg), data_key, self.out_dir)
        if self.cfg.train.steps < step:
            raise ValueError(f"--resume: the checkpoint in {folder} is at step {step}, past "
                             f"train.steps={self.cfg.train.steps}; pass --steps above {step} "
                             f"to train on")
        return step, meta

    def _restore(self, step: int, state: tuple[Any, Any],
                 meta: dict[str, Any]) -> tuple[Any, Any]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                                {"params": state[0], "opt_state": state[1]})
        restored, data_state = checkpoints.restore_verified(
            self.manager, self.out_dir / "checkpoints", step, abstract, meta)
        self.iterator.set_state(data_state)
        self.step_count = step
        return restored["params"], restored["opt_state"]

    def close(self) -> None:
        """Wait for a checkpoint being written, then release the checkpoint manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    # -- the loop
    def run(self, until: int | None = None,
            on_metrics: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train to step `until` (default: the configured steps), validating, logging and
        checkpointing on the configured intervals. Returns the last metrics."""
        cfg = self.cfg.train
        until = cfg.steps if until is None else until
        log_path = self.out_dir / "metrics.jsonl"
        _truncate_log(log_path, self.step_count)
        metrics: dict[str, Any] = {}
        with log_path.open("a") as log:
            while self.step_count < until:
                start = time.perf_counter()
                metrics = self.step()
                seconds = time.perf_counter() - start
                metrics["step_seconds"] = seconds
                metrics["tokens_per_s"] = cfg.batch_size * cfg.seq_len / seconds
                last = self.step_count == until
                if cfg.eval_every and (self.step_count % cfg.eval_every == 0 or last):
                    metrics |= self.validate()
                if self.step_count % cfg.checkpoint_every == 0 or last:
                    self.save()
                if self.step_count % cfg.log_every == 0 or last or "val_ppl/largest" in metrics:
                    log.write(json.dumps(metrics) + "\n")
                    log.flush()
                if on_metrics is not None:
                    on_metrics(metrics)
        self.manager.wait_until_finished()
        return metrics


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step` (a resumed run rewrites them)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def run(config: TrainConfig, out: str | Path, *, resume: bool = False,
        on_prepare: Callable[[int, int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_metrics: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `config` into the run folder `out` (continuing its last checkpoint with `resume`)
    and return a summary: the folder, the step reached, the step it started from and the
    last losses and validation perplexities.

    `on_prepare(done, total)` reports tokenizing, `on_start(step)` the step training starts
    from (after a resume is checked), `on_metrics(metrics)` every step."""
    trainer = Trainer(config, out, resume=resume, on_prepare=on_prepare)
    start, last = trainer.step_count, {}
    try:
        if on_start is not None:
            on_start(start)
        if start < config.train.steps:
            last = trainer.run(on_metrics=on_metrics)
    finally:  # Ctrl-C included: let a checkpoint being written finish
        trainer.close()
    return {"out": str(out), "step": trainer.step_count, "start_step": start,
            **{k: v for k, v in last.items() if k.startswith(("loss", "val_ppl"))}}
