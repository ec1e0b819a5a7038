"""Sandwich-rule supernet training, data parallel with `jax.pmap`, with exact resume.

Each step trains the largest, the smallest and K random architectures on the same batch
(the sandwich rule of BigNAS/OFA, Yu et al. 2020, arXiv 2003.11142, as used by HW-GPT-Bench)
and applies the sum of their gradients once. Every local device gets its own batch shard and
its own random archs; gradients are averaged over devices.

Why one compiled gradient function per embedding dimension: a masked supernet costs as much as
the largest arch whatever the arch, because masks do not remove work. Slicing the parameters to
a member's embed dim (a static, at most 3 values) removes most of that waste while heads, MLP
ratios, depth and bias stay traced data, so at most 3 gradient programs serve every
architecture, plus one for the largest arch and one update. Within one step a random member's
embed dim is shared by all devices (pmap runs one program); its other choices differ per
device. Finer buckets (per head count or MLP ratio) would multiply the programs (compile time):
instead, inactive blocks are skipped at run time by `lax.cond`, and each layer's attention and
MLP run the branch of `lax.switch` sliced to the smallest head count / hidden width covering
the layer's choice (`model.masked_hidden(conditional=True)`; pmap runs each device's program on
its own archs, so the conditionals are real, not selects). The largest arch has nothing to
skip, so it runs the plain masked program without conditionals, which saves its residuals
instead of recomputing the branches (`Member.conditional`).

Where the time goes: the tied LM head over 50,304 tokens is matmul bound (three
(tokens x D x V) matmuls), about 20% of the largest s arch's gradient and most of a small one's.
`tied_head_cross_entropy` computes the loss and both head gradients in one pass per token
chunk, so the (tokens, V) logits and softmax never exist whole (memory O(chunk x V) instead of
several (tokens, V) buffers) at no extra FLOPs. The gradient is taken with respect to the
sliced parameters and added into the leading slice of a donated accumulator, so a member
allocates no full-size zero gradient.

Resume is exact: the checkpoint holds parameters, optimizer state, step and the grain iterator
state, and each step's archs come from `fold_in(seed key, step)`, so a run stopped at step k
and resumed ends bit-identical (on the same device count) to an uninterrupted one. A resume
is checked first (`hwgpt_jax.model.checkpoints`): the same configuration (bar the run's length and
logging cadence) and the same corpus, before the run's token shards are touched; every
checkpoint is verified against the sha256 recorded when it was saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax import lax

from hwgpt_jax.base.files import write_text_atomic
from hwgpt_jax.data import corpus as data_lib
from hwgpt_jax.measure.quality import batch_windows, window_sums
from hwgpt_jax.model import checkpoints
from hwgpt_jax.model.optim import make_optimizer, make_schedule
from hwgpt_jax.model.supernet import (
    Params,
    init_params,
    masked_forward,
    masked_hidden,
    slice_embed_dim,
)
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space
from hwgpt_jax.stages.train_config import ExperimentConfig

AXIS = "devices"


class TrainingDivergedError(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------- pure pieces
def lm_loss(params: Params, windows: jax.Array, arch: Arch, space: SearchSpace,
            compute_dtype: Any = None) -> jax.Array:
    """Mean next-token cross-entropy of one arch on windows (B, T + 1); padded vocab ids
    beyond the real vocabulary never occur as targets. The plain reference that the fast
    paths (`train_loss`, `evaluate.window_sums`) are tested against."""
    logits = masked_forward(params, windows[:, :-1], arch, space, compute_dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()


# ---------------------------------------------------------------------------- fast training loss
@partial(jax.custom_vjp, nondiff_argnums=(3,))
def tied_head_cross_entropy(hidden: jax.Array, embedding: jax.Array, targets: jax.Array,
                            n_chunks: int = 1) -> jax.Array:
    """Mean cross-entropy of the tied LM head `hidden @ embedding.T` against integer targets.

    Equals `softmax_cross_entropy_with_integer_labels(hidden @ embedding.T, targets).mean()`
    but never holds the (N, V) logits and their softmax more than one token chunk at a time.
    Its forward under `grad` computes the loss and both input gradients in the same pass over
    each chunk (one logits matmul, then `dlogits @ E` and `dlogits.T @ h`), so the head costs
    three matmuls and one softmax instead of autodiff's saved logits, log-softmax and a second
    softmax pass over (N, V).

    Args:
        hidden: (N, D) final hidden states (after the last LayerNorm).
        embedding: (V, D) the tied token embedding.
        targets: (N,) int target ids.
        n_chunks: static number of token chunks; must divide N.
    """
    def body(total: jax.Array, chunk: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        logits = (chunk[0] @ embedding.T).astype(jnp.float32)  # (N/c, V)
        nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(
            logits, chunk[1][:, None], -1)[:, 0]
        return total + nll.sum(), None

    total, _ = lax.scan(body, jnp.zeros((), jnp.float32), _token_chunks(hidden, targets,
                                                                          n_chunks))
    return total / targets.shape[0]


def _token_chunks(hidden: jax.Array, targets: jax.Array, n_chunks: int
                  ) -> tuple[jax.Array, jax.Array]:
    if hidden.shape[0] % n_chunks:
        raise ValueError(f"n_chunks={n_chunks} does not divide the {hidden.shape[0]} tokens")
    return (hidden.reshape(n_chunks, -1, hidden.shape[-1]), targets.reshape(n_chunks, -1))


def _tied_head_fwd(hidden: jax.Array, embedding: jax.Array, targets: jax.Array,
                   n_chunks: int) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    # d mean-CE / d logits = (softmax - onehot) / N. Per chunk, the softmax's numerator
    # exp(logits - max) is the only (N/c, V) array written; its row sums come from a product
    # with ones, and its normalization moves onto the (N/c, D) side of both gradient products.
    # The one-hot part is a gather and a scatter of N rows, done once after the scan.
    n_tokens = targets.shape[0]
    ones = jnp.ones((embedding.shape[0],), jnp.float32)

    def body(d_embedding: jax.Array, chunk: tuple[jax.Array, jax.Array]):
        h, t = chunk
        logits = (h @ embedding.T).astype(jnp.float32)  # (N/c, V)
        top = logits.max(-1)
        numerator = jnp.exp(logits - top[:, None])
        row_sums = numerator @ ones
        target_logits = jnp.einsum("nd,nd->n", h, embedding[t],
                                   preferred_element_type=jnp.float32)
        nll = top + jnp.log(row_sums) - target_logits
        scale = (1.0 / (row_sums * n_tokens))[:, None]
        numerator = numerator.astype(h.dtype)
        # Partial sums of the embedding gradient stay float32 under a bf16 compute dtype.
        d_embedding = d_embedding + jnp.matmul(numerator.T, (h * scale).astype(h.dtype),
                                               preferred_element_type=jnp.float32)
        return d_embedding, (nll.sum(), (numerator @ embedding) * scale)

    d_embedding, (nll, d_hidden) = lax.scan(
        body, jnp.zeros(embedding.shape, jnp.float32), _token_chunks(hidden, targets, n_chunks))
    d_hidden = d_hidden.reshape(hidden.shape) - embedding[targets] / n_tokens
    d_embedding = d_embedding.at[targets].add(-hidden.astype(jnp.float32) / n_tokens)
    return nll.sum() / n_tokens, (d_hidden.astype(hidden.dtype),
                                  d_embedding.astype(embedding.dtype))


def _tied_head_bwd(n_chunks: int, residuals: tuple[jax.Array, jax.Array],
                   g: jax.Array) -> tuple[jax.Array, jax.Array, None]:
    d_hidden, d_embedding = residuals
    return (g * d_hidden).astype(d_hidden.dtype), (g * d_embedding).astype(d_embedding.dtype), None


tied_head_cross_entropy.defvjp(_tied_head_fwd, _tied_head_bwd)


def train_loss(params: Params, windows: jax.Array, arch: Arch, space: SearchSpace,
               compute_dtype: Any = None, head_chunks: int = 1,
               conditional: bool = True) -> jax.Array:
    """`lm_loss` computed the fast way for training: with `conditional`, inactive blocks and
    unused head / hidden widths skipped (`masked_hidden`); the tied head fused with the
    cross-entropy (`tied_head_cross_entropy`). Same value and gradient as `lm_loss` up to
    float32 round-off."""
    hidden = masked_hidden(params, windows[:, :-1], arch, space, compute_dtype,
                           conditional=conditional)
    embedding = params["token_embedding"].astype(compute_dtype or jnp.float32)
    return tied_head_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), embedding,
                                   windows[:, 1:].reshape(-1), head_chunks)


def _add_leading_slice(full: jax.Array, part: jax.Array) -> jax.Array:
    """full with `part` added to its leading slice (part's shape), updated in place."""
    return full.at[tuple(slice(0, n) for n in part.shape)].add(part)


def _member_grads(params: Params, acc: Params | None, windows: jax.Array, arch: Arch,
                  space: SearchSpace, dim: int, compute_dtype: Any, head_chunks: int,
                  conditional: bool) -> tuple[Params, jax.Array]:
    """acc + gradient of one member's loss, accumulated over micro-batches (A, B, T + 1).

    The gradient is taken with respect to the parameters sliced to `dim` and added into the
    leading slice of `acc` (donated, so in place): no full-size zero gradient per member.
    `acc=None` (the step's first member) starts the accumulator inside the program, where the
    zeros fuse with the first gradient instead of being written and read back.
    """
    sliced = slice_embed_dim(params, dim, max(space.mlp_ratios))
    grad_fn = jax.value_and_grad(train_loss)

    def micro_step(carry: tuple[Params, jax.Array], micro: jax.Array):
        grads, total = carry
        loss, g = grad_fn(sliced, micro, arch, space, compute_dtype, head_chunks, conditional)
        return (jax.tree.map(jnp.add, grads, g), total + loss), None

    n_micro = windows.shape[0]
    if n_micro == 1:
        total, grads = grad_fn(sliced, windows[0], arch, space, compute_dtype, head_chunks,
                               conditional)
    else:
        zeros = jax.tree.map(jnp.zeros_like, sliced)
        (grads, total), _ = jax.lax.scan(micro_step, (zeros, jnp.zeros(())), windows)
    if acc is None:
        acc = jax.tree.map(jnp.zeros_like, params)
    acc = jax.tree.map(lambda a, g: _add_leading_slice(a, g / n_micro), acc, grads)
    return acc, jax.lax.pmean(total / n_micro, AXIS)


def _apply_update(params: Params, opt_state: Any, grads: Params,
                  tx: optax.GradientTransformation) -> tuple[Params, Any, jax.Array]:
    grads = jax.lax.pmean(grads, AXIS)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def replicate(tree: Any, devices: list[Any]) -> Any:
    """Copies of every leaf along a leading device axis, one per device (pmap's layout)."""
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
    return jax.tree.map(
        lambda x: jax.device_put(jnp.broadcast_to(x, (len(devices),) + jnp.shape(x)), sharding),
        tree)


@dataclasses.dataclass(frozen=True)
class Member:
    """One sandwich member: an arch per device (batch shape (n_devices,)) and its embed dim.

    `conditional=False` trains it with the plain masked program, with no conditionals: meant
    for the largest arch, where nothing is inactive, so skipping saves nothing. It paid off
    while the conditional branches recomputed their whole forward (s, batch 8 x 256: about
    11.5 s this way, 13 s with conditionals); since they save their padded product outputs
    (see `model.masked_hidden`) both take the same time within noise (12.39 vs 12.45 s,
    interleaved in one process), so this extra program is a candidate for removal.
    """

    name: str
    arch: Arch
    embed_dim: int
    conditional: bool = True


def sandwich_members(space: SearchSpace, key: jax.Array, n_devices: int,
                     num_random: int) -> list[Member]:
    """Largest, smallest and `num_random` random archs, each laid out per device.

    A random member's embed dim is one draw shared by all devices; its other choices are
    drawn independently per device, so marginally every choice is still uniform.
    """
    def tile(arch: Arch) -> Arch:
        return jax.tree.map(lambda x: np.broadcast_to(x, (n_devices,) + np.shape(x)),
                            arch.to_numpy())

    members = [Member("largest", tile(space.largest()), max(space.embed_dims), False),
               Member("smallest", tile(space.smallest()), min(space.embed_dims))]
    for i in range(num_random):
        k_dim, k_arch = jax.random.split(jax.random.fold_in(key, i))
        genes = space.genes(space.sample(k_arch, n_devices).to_numpy())
        genes[:, 0] = int(jax.random.randint(k_dim, (), 0, len(space.embed_dims)))
        arch = space.from_genes(genes).to_numpy()
        members.append(Member(f"random{i}", arch, int(arch.embed_dim[0])))
    return members


def training_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """The parameter-init key and the arch key (folded with the step number for each
    step's sandwich) of a run with this seed."""
    init_key, arch_key = jax.random.split(jax.random.key(seed))
    return init_key, arch_key


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Owns the replicated state, the compiled step functions, the data stream and checkpoints.

    `run()` trains to `cfg.train.steps`; `step()` does one sandwich step and returns its
    metrics. State lives on the devices replicated along a leading device axis.
    """

    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path, *, resume: bool = False,
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
        data_key = data_lib.corpus_fingerprint(cfg.data.corpus, seed=cfg.data.seed,
                                               val_fraction=cfg.data.val_fraction)
        # checked before the shards are prepared: a refused resume leaves the run's data as is
        resume_step, resume_meta = self._check_resumable(data_key) if resume else (None, None)
        self.tx, self.schedule = make_optimizer(cfg), make_schedule(cfg)
        self.shards = data_lib.prepare_corpus(
            cfg.data.corpus, cfg.data.data_dir or self.out_dir / "data", seed=cfg.data.seed,
            val_fraction=cfg.data.val_fraction, progress=on_prepare)
        self.data_fingerprint = {"key": data_key,
                                 "shards_sha256": checkpoints.shards_sha256(self.shards)}
        if resume_meta is not None and (resume_meta["data_fingerprint"]["shards_sha256"]
                                        != self.data_fingerprint["shards_sha256"]):
            raise ValueError(f"--resume: the token shards in {self.shards.directory} differ "
                             f"from those the checkpoint was trained on")
        self.val_windows = data_lib.validation_windows(
            self.shards, cfg.train.seq_len, max_windows=cfg.train.eval_windows)
        self._val_batches = batch_windows(self.val_windows, 8)  # fixed: batched once
        self.iterator = data_lib.train_iterator(
            self.shards, cfg.train.batch_size, cfg.train.seq_len, seed=cfg.train.seed,
            process_index=jax.process_index(), process_count=jax.process_count())
        init_key, self.key = training_keys(cfg.train.seed)
        self._grad_fns: dict[tuple[int, bool], Callable] = {}
        self._update = jax.pmap(_apply_update, AXIS, static_broadcasted_argnums=(3,),
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

    def _grad_fn(self, member: Member) -> Callable:
        key = (member.embed_dim, member.conditional)
        if key not in self._grad_fns:
            self._grad_fns[key] = jax.pmap(
                _member_grads, AXIS, static_broadcasted_argnums=(4, 5, 6, 7, 8),
                donate_argnums=(1,), devices=self.devices)
        return self._grad_fns[key]

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
        acc, losses, seconds = None, {}, {}
        for member in members:
            start = time.perf_counter()
            acc, loss = self._grad_fn(member)(
                self.params, acc, windows, member.arch, self.space, member.embed_dim,
                self.compute_dtype, head_chunks, member.conditional)
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
    def host_params(self) -> Params:
        return jax.device_get(jax.tree.map(lambda x: x[0], self.params))

    def save(self) -> None:
        state = jax.device_get(jax.tree.map(lambda x: x[0], (self.params, self.opt_state)))
        tree = {"params": state[0], "opt_state": state[1]}
        data_state = self.iterator.get_state()
        meta = {"scale": self.space.scale, "step": self.step_count,
                "config": self.cfg.to_dict(), "space": self.space.choices(),
                "devices": len(self.devices), "jax": jax.__version__,
                "data_fingerprint": self.data_fingerprint,
                "format_version": checkpoints.FORMAT_VERSION}
        meta = json.loads(json.dumps(meta))  # as it reads back (tuples become lists)
        meta["sha256"] = checkpoints.state_digest(tree, data_state, meta)
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
        checkpoints.check_resume(meta, self.cfg.to_dict(), data_key, self.out_dir)
        if self.cfg.train.steps < step:
            raise ValueError(f"--resume: the checkpoint in {folder} is at step {step}, past "
                             f"train.steps={self.cfg.train.steps}; pass --steps above {step} "
                             f"to train on")
        return step, meta

    def _restore(self, step: int, state: tuple[Params, Any],
                 meta: dict[str, Any]) -> tuple[Params, Any]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                                {"params": state[0], "opt_state": state[1]})
        restored, data_state = checkpoints.restore_verified(
            self.manager, self.out_dir / "checkpoints", step, abstract, meta)
        self.iterator.set_state(data_state)
        self.step_count = step
        return restored["params"], restored["opt_state"]

    def close(self) -> None:
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
