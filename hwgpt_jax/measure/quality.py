"""Quality of sub-networks with inherited supernet weights: perplexity and next-token accuracy.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299, Sec. 3) scores every architecture of a
search space by the perplexity of the trained supernet's sub-network on held-out text, without
retraining (weight inheritance, as in one-shot NAS: Bender et al. 2018; AutoFormer, Chen et
al., arXiv 2107.00651). Here the text is a fixed, ordered set of validation windows (the run's
`val` split, `data.windows.validation_windows`), and:

    perplexity = exp(mean next-token cross-entropy over every target token of the windows)
    accuracy   = fraction of target tokens that are the argmax of the logits

with softmax and argmax over the padded vocabulary (50304 entries, as in training's `lm_loss`).

Compiled once per embedding dimension: archs are grouped by embed dim, the supernet
parameters are sliced to that dim (`params.slice_embed_dim`, as the trainer does), and one
jitted program evaluates a chunk of K archs (`lax.scan` over the windows). By default the
archs of a chunk run one after another (`lax.map`) through the masked forward's real
conditionals (`model.masked_hidden(conditional=True)`: inactive blocks skipped, attention and
MLP on the smallest weight slice that covers the layer's heads and width), so an arch costs
about as much as its dense model; the last chunk of a group is padded and the padding archs
are skipped. `conditional=False` vectorizes the chunk with `vmap` instead, where every arch
costs as much as the largest member of its embed dim (masks do not remove work). Results are
deterministic: the same checkpoint, windows and archs give the same numbers on the same
device, in either mode (to float32 round-off).

These are the kernels; reading a run's checkpoint and windows and writing quality tables is
the evaluate stage's (`hwgpt_jax.stages.evaluate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hwgpt_jax.model.supernet import Params, masked_hidden, slice_embed_dim, vocab_chunks
from hwgpt_jax.space.arch import Arch, SearchSpace


@dataclasses.dataclass(frozen=True)
class QualityResult:
    """Per-arch sums over the evaluated tokens (arrays of shape (N,))."""

    nll_sum: np.ndarray  # float64, summed next-token cross-entropy (nats)
    correct: np.ndarray  # int64, target tokens predicted by the argmax
    tokens: int  # target tokens per arch

    @property
    def loss(self) -> np.ndarray:
        return self.nll_sum / self.tokens

    @property
    def perplexity(self) -> np.ndarray:
        return np.exp(self.loss)

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.tokens


def head_sums(hidden: jax.Array, embedding: jax.Array, targets: jax.Array,
               weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted NLL sum and correct-prediction count of the tied head over tokens (N, D).

    The (N, V) logits are never held: a `lax.scan` over vocabulary chunks
    (`model.vocab_chunks`) makes each chunk's (V_c, N) logits while they are in cache and
    folds them into a running log-sum-exp and a running first argmax (a later chunk wins only
    with a strictly larger logit, as `argmax` takes the first maximum): faster than the full
    logits followed by log-sum-exp and argmax passes over them (docs/performance.md), and the
    head is most of an evaluation's cost.

    Args:
        hidden: (N, D) final hidden states; embedding: (V, D) tied embedding; targets: (N,)
        ids; weights: (N,) per-token weights (0 for padding). Returns (nll_sum, correct)."""
    chunks, offsets = vocab_chunks(embedding)
    hidden_t = hidden.T  # (D, N)
    n_tokens = targets.shape[0]

    def chunk(carry: tuple[jax.Array, ...], part: tuple[jax.Array, jax.Array]):
        top, total, best, best_index = carry
        rows, offset = part
        logits = (rows @ hidden_t).astype(jnp.float32)  # (V_c, N)
        chunk_top = logits.max(axis=0)
        index = jnp.arange(rows.shape[0], dtype=jnp.int32)[:, None]
        chunk_index = jnp.where(logits == chunk_top, index, rows.shape[0]).min(axis=0) + offset
        new_top = jnp.maximum(top, chunk_top)
        total = total * jnp.exp(top - new_top) + jnp.exp(logits - new_top).sum(axis=0)
        better = chunk_top > best
        return (new_top, total, jnp.where(better, chunk_top, best),
                jnp.where(better, chunk_index, best_index)), None

    start = (jnp.full((n_tokens,), -jnp.inf), jnp.zeros((n_tokens,)),
             jnp.full((n_tokens,), -jnp.inf), jnp.zeros((n_tokens,), jnp.int32))
    (top, total, _, first_top), _ = lax.scan(chunk, start, (chunks, offsets))
    target_logit = jnp.sum(hidden.astype(jnp.float32) * embedding[targets], axis=-1)
    nll = top + jnp.log(total) - target_logit
    return (nll * weights).sum(), ((first_top == targets) * weights.astype(jnp.int32)).sum()


def window_sums(params: Params, windows: jax.Array, weights: jax.Array, arch: Arch,
                 space: SearchSpace, conditional: bool = False) -> tuple[jax.Array, jax.Array]:
    """Summed NLL and correct predictions of one arch over windows (NB, B, T + 1), each window
    counted with its weight (NB, B) (0 for padding windows)."""
    embedding = params["token_embedding"]

    def step(carry: tuple[jax.Array, jax.Array], batch: tuple[jax.Array, jax.Array]):
        window, weight = batch
        hidden = masked_hidden(params, window[:, :-1], arch, space,
                               conditional=conditional)  # (B, T, D)
        targets = window[:, 1:]
        sums = head_sums(hidden.reshape(-1, hidden.shape[-1]), embedding, targets.reshape(-1),
                          jnp.broadcast_to(weight[:, None], targets.shape).reshape(-1))
        return (carry[0] + sums[0], carry[1] + sums[1]), None

    zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    sums, _ = lax.scan(step, zero, (windows, weights))
    return sums


def check_windows(windows: Any, space: SearchSpace) -> np.ndarray:
    """Validation windows (n, seq + 1) as int32, or ValueError naming what is wrong."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise ValueError(f"windows have shape {windows.shape}; expected (n >= 1, seq + 1 >= 2)")
    if not np.issubdtype(windows.dtype, np.integer):
        raise ValueError(f"windows have dtype {windows.dtype}; expected integer token ids")
    if windows.shape[1] - 1 > space.block_size:
        raise ValueError(f"window length {windows.shape[1] - 1} exceeds the {space.scale} block "
                         f"size {space.block_size}")
    if windows.min() < 0 or windows.max() >= space.vocab_size:
        bad = windows.min() if windows.min() < 0 else windows.max()
        raise ValueError(f"token id {bad} in windows is outside [0, {space.vocab_size})")
    return windows.astype(np.int32)


EVAL_TOKENS = 1024  # tokens per forward when windows are short: the head's products stay large


def batch_windows(windows: np.ndarray, batch: int) -> tuple[jax.Array, jax.Array]:
    """Windows (n, T + 1) as (ceil(n / batch), batch, T + 1) batches and their weights (1 for a
    real window, 0 for the copies of window 0 that pad the last batch)."""
    n, length = windows.shape
    n_batches = -(-n // batch)
    padded = np.zeros((n_batches * batch, length), np.int32)
    padded[:n] = windows
    padded[n:] = windows[0]
    weights = (np.arange(len(padded)) < n).astype(np.float32)
    return (jnp.asarray(padded.reshape(n_batches, batch, length)),
            jnp.asarray(weights.reshape(n_batches, batch)))


@partial(jax.jit, static_argnames=("space", "conditional"))
def _chunk_sums(params: Params, windows: jax.Array, weights: jax.Array, archs: Arch,
                valid: jax.Array, space: SearchSpace, conditional: bool = False
                ) -> tuple[jax.Array, jax.Array]:
    """(K,) NLL sums and (K,) correct counts of a chunk of K archs (batch shape (K,)); `valid`
    (K,) marks the real archs of a padded chunk.

    Vectorized over the archs (`vmap`: every arch costs its embed dim's largest member), or,
    with `conditional`, one arch after another (`lax.map`) with the masked forward's real
    conditionals, so each arch costs about its dense model and padding archs cost nothing."""
    if conditional:
        def one(item: tuple[Arch, jax.Array]) -> tuple[jax.Array, jax.Array]:
            arch, is_real = item
            zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
            return lax.cond(is_real, lambda: window_sums(params, windows, weights, arch, space,
                                                          True), lambda: zero)
        return lax.map(one, (archs, valid))
    return jax.vmap(window_sums, in_axes=(None, None, None, 0, None))(
        params, windows, weights, archs, space)


class Evaluator:
    """Evaluates archs of one space on fixed validation windows with one set of parameters.

    Keeps one compiled program per embed dim (`compiles` counts them); with
    `per_embed_dim=False`, one program on the full-width supernet serves every arch.
    `window_batch` windows go through each forward (default: about `EVAL_TOKENS` tokens).
    """

    def __init__(self, params: Params, space: SearchSpace, windows: np.ndarray, *,
                 batch_archs: int = 8, window_batch: int | None = None,
                 per_embed_dim: bool = True, conditional: bool = True) -> None:
        windows = check_windows(windows, space)
        if window_batch is None:  # about EVAL_TOKENS per forward, batches of equal size
            n_batches = -(-len(windows) // max(1, EVAL_TOKENS // (windows.shape[1] - 1)))
            window_batch = -(-len(windows) // n_batches)
        for name, value in (("batch_archs", batch_archs), ("window_batch", window_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        self.space, self.params, self.batch_archs = space, params, batch_archs
        self.per_embed_dim, self.conditional = per_embed_dim, conditional
        n, length = windows.shape
        self.windows, self.weights = batch_windows(windows, window_batch)
        self.tokens = n * (length - 1)
        self.seq = length - 1
        self._compiled: dict[int, Any] = {}
        self._sliced: dict[int, Params] = {}

    @property
    def compiles(self) -> int:
        return len(self._compiled)

    def _program(self, dim: int, archs: Arch) -> tuple[Any, Params]:
        if dim not in self._compiled:
            self._sliced[dim] = (slice_embed_dim(self.params, dim, max(self.space.mlp_ratios))
                                 if self.per_embed_dim else self.params)
            self._compiled[dim] = _chunk_sums.lower(
                self._sliced[dim], self.windows, self.weights, archs,
                np.ones(len(archs), bool), self.space, self.conditional).compile()
        return self._compiled[dim], self._sliced[dim]

    def evaluate(self, archs: Arch,
                 on_chunk: Callable[[int], None] | None = None) -> QualityResult:
        """Quality of archs (batch shape (N,)); `on_chunk(n_archs_done)` reports progress."""
        archs = self.space.validate(archs)
        if len(archs.batch_shape) != 1:
            raise ValueError(f"evaluate takes archs of batch shape (N,), got "
                             f"{archs.batch_shape}")
        nll = np.zeros(len(archs), np.float64)
        correct = np.zeros(len(archs), np.int64)
        k = self.batch_archs
        # Without per-embed-dim programs, every arch runs through the full-width supernet.
        group = archs.embed_dim if self.per_embed_dim else np.zeros(len(archs), np.int32)
        for dim in sorted(set(group.tolist())):
            members = np.flatnonzero(group == dim)
            for start in range(0, len(members), k):
                index = members[start:start + k]
                chunk = archs[np.concatenate([index, np.repeat(index[:1], k - len(index))])]
                program, params = self._program(dim, chunk)
                sums = program(params, self.windows, self.weights, chunk,
                               np.arange(k) < len(index))
                nll_chunk, correct_chunk = jax.device_get(sums)
                nll[index] = nll_chunk[: len(index)]
                correct[index] = correct_chunk[: len(index)]
                if on_chunk is not None:
                    on_chunk(len(index))
        return QualityResult(nll, correct, self.tokens)


__all__ = ["EVAL_TOKENS", "Evaluator", "QualityResult", "batch_windows", "check_windows",
           "head_sums", "window_sums"]
