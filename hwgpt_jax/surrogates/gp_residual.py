"""A Gaussian process on the ridge model's residual: the small-data candidate of selection.

For keys with few archs (the published l perplexity: 429 archs, about 170 of them in the
training part) a network has too little data, while a GP (Rasmussen & Williams 2006, ch. 2)
interpolates smoothly between measured archs. The kernel math is the search's
(`hwgpt_jax.search.gp`: Matern-5/2 with one lengthscale, signal and noise variance fitted by
Adam on the marginal likelihood); here its inputs are the cost-summary features standardized
on the training archs, and its target the ridge residual of the per-arch median. Only the
posterior mean is used (it moves the median; the quantile gaps stay those of the linear
part, and conformal calibration sizes the intervals).

State (`GP_FIELDS`): x (n, d) standardized training inputs, alpha (n,) = K^-1 r scaled to the
target, offset (), log_hypers (3,), mean and scale (d,) of the input standardization.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hwgpt_jax.search.gp import fit_gp, matern52

GP_STEPS = 100
GP_FIELDS = ("x", "alpha", "offset", "log_hypers", "mean", "scale")


def fit_residual_gp(x: jax.Array, residual: jax.Array, steps: int = GP_STEPS
                    ) -> dict[str, jax.Array]:
    """Fit the GP to (n, d) inputs and (n,) residuals; returns its state (module docstring)."""
    mean, scale = x.mean(0), x.std(0)
    scale = jnp.where(scale > 1e-8, scale, 1.0)
    xs = (x - mean) / scale
    gp = fit_gp(xs, jnp.ones(x.shape[0], bool), residual[:, None], n_steps=steps)
    return {"x": xs, "alpha": gp.alpha[:, 0] * gp.y_std[0], "offset": gp.y_mean[0],
            "log_hypers": gp.log_hypers, "mean": mean, "scale": scale}


def gp_mean(state: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Posterior mean (N,) of the residual at (N, d) inputs."""
    xs = (x - state["mean"]) / state["scale"]
    cross = matern52(xs, state["x"], state["log_hypers"][0], state["log_hypers"][1])
    return cross @ state["alpha"] + state["offset"]


def gp_shapes(n: int, d: int) -> dict[str, tuple[int, ...]]:
    return {"x": (n, d), "alpha": (n,), "offset": (), "log_hypers": (3,), "mean": (d,),
            "scale": (d,)}


class ResidualGP(nnx.Module):
    """The fitted GP as an NNX module: (N, d) inputs -> (N,) posterior mean of the residual."""

    def __init__(self, state: dict[str, jax.Array]):
        self.state = nnx.data({k: nnx.Variable(state[k]) for k in GP_FIELDS})

    def __call__(self, x: jax.Array) -> jax.Array:
        return gp_mean({k: v[...] for k, v in self.state.items()}, x)
