"""The training step's pure functions: losses, one sandwich member's gradient, the update.

Sandwich rule (BigNAS/OFA, Yu et al. 2020, arXiv 2003.11142, as used by HW-GPT-Bench): each
step trains the largest, the smallest and K random archs on the same batch and applies the
sum of their gradients once. The functions here are pmapped over the local devices by
`hwgpt_jax.stages.train.Trainer` (axis `AXIS`); gradients are averaged over devices.

One compiled gradient program per embedding dimension: a masked supernet costs as much as
the largest arch whatever the arch, because masks do not remove work. Slicing the parameters
to a member's embed dim (static, at most 3 values) removes most of that waste while heads,
MLP ratios, depth and bias stay traced data. Within one step a random member's embed dim is
shared by all devices; its other choices differ per device. Inactive blocks and unused
widths are skipped at run time (`lax.cond` / `lax.switch` in
`model.masked_hidden(conditional=True)`); pmap runs each device's program on its own archs,
so the conditionals are real, not selects.

The tied LM head over 50,304 tokens is matmul bound: `tied_head_cross_entropy` computes the
loss and both head gradients in one pass per token chunk, so the (tokens, V) logits never
exist whole, at no extra FLOPs. A member's gradient is taken with respect to the sliced
parameters and added into the leading slice of a donated accumulator, so it allocates no
full-size zero gradient.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from hwgpt_jax.model.supernet import Params, masked_forward, masked_hidden, slice_embed_dim
from hwgpt_jax.space.arch import Arch, SearchSpace

AXIS = "devices"  # the pmap axis name of the local devices


# ---------------------------------------------------------------------------- pure pieces
def lm_loss(params: Params, windows: jax.Array, arch: Arch, space: SearchSpace,
            compute_dtype: Any = None) -> jax.Array:
    """Mean next-token cross-entropy of one arch on windows (B, T + 1); padded vocab ids
    beyond the real vocabulary never occur as targets. The plain reference that the fast
    paths (`train_loss`, `measure.quality.window_sums`) are tested against."""
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


def member_grads(params: Params, acc: Params, windows: jax.Array, arch: Arch,
                  space: SearchSpace, dim: int, compute_dtype: Any,
                  head_chunks: int) -> tuple[Params, jax.Array]:
    """acc + gradient of one member's loss, accumulated over micro-batches (A, B, T + 1).

    The gradient is taken with respect to the parameters sliced to `dim` and added into the
    leading slice of `acc` (donated, so in place): no full-size zero gradient per member.
    Every member, the largest too, runs the conditional program (inactive blocks skipped), so
    a step compiles one program per embed dim.
    """
    sliced = slice_embed_dim(params, dim, max(space.mlp_ratios))
    grad_fn = jax.value_and_grad(train_loss)

    def micro_step(carry: tuple[Params, jax.Array], micro: jax.Array):
        grads, total = carry
        loss, g = grad_fn(sliced, micro, arch, space, compute_dtype, head_chunks)
        return (jax.tree.map(jnp.add, grads, g), total + loss), None

    n_micro = windows.shape[0]
    if n_micro == 1:
        total, grads = grad_fn(sliced, windows[0], arch, space, compute_dtype, head_chunks)
    else:
        zeros = jax.tree.map(jnp.zeros_like, sliced)
        (grads, total), _ = jax.lax.scan(micro_step, (zeros, jnp.zeros(())), windows)
    acc = jax.tree.map(lambda a, g: _add_leading_slice(a, g / n_micro), acc, grads)
    return acc, jax.lax.pmean(total / n_micro, AXIS)


def zero_grads(params: Params) -> Params:
    """The step's gradient accumulator: zeros shaped like the parameters."""
    return jax.tree.map(jnp.zeros_like, params)


def apply_update(params: Params, opt_state: Any, grads: Params,
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
    """One sandwich member: an arch per device (batch shape (n_devices,)) and its embed dim."""

    name: str
    arch: Arch
    embed_dim: int


def sandwich_members(space: SearchSpace, key: jax.Array, n_devices: int,
                     num_random: int) -> list[Member]:
    """Largest, smallest and `num_random` random archs, each laid out per device.

    A random member's embed dim is one draw shared by all devices; its other choices are
    drawn independently per device, so marginally every choice is still uniform.
    """
    def tile(arch: Arch) -> Arch:
        return jax.tree.map(lambda x: np.broadcast_to(x, (n_devices,) + np.shape(x)),
                            arch.to_numpy())

    members = [Member("largest", tile(space.largest()), max(space.embed_dims)),
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


__all__ = ["AXIS", "Member", "apply_update", "lm_loss", "member_grads", "replicate",
           "sandwich_members", "tied_head_cross_entropy", "train_loss", "training_keys",
           "zero_grads"]
