"""The supernet-perplexity search objective (hwgpt_jax.search.objectives) and its CLI checks.

The end-to-end `hwgpt search --checkpoint ... --export` run is in test_export.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from supernet_run import supernet_run

from hwgpt_jax.cli import main
from hwgpt_jax.model import supernet as model
from hwgpt_jax.model.checkpoints import load_trained_params
from hwgpt_jax.search.objectives import (
    SUPERNET_METRIC,
    build_problem,
    supernet_perplexity,
)
from hwgpt_jax.space.arch import Arch, get_space
from hwgpt_jax.stages.evaluate import run_validation_windows

SPACE = get_space("tiny")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run_dir = supernet_run(tmp_path_factory)
    params, meta = load_trained_params(run_dir)
    return run_dir, jax.device_get(params), run_validation_windows(run_dir, meta, 3)


def direct_perplexity(params, windows, arch):
    """exp(mean CE) from the masked supernet's logits, float64 log-softmax, window by window."""
    nll, tokens = 0.0, 0
    for window in windows:
        logits = np.asarray(model.forward(params, jnp.asarray(window[None, :-1]), arch, SPACE),
                            np.float64)[0]
        top = logits.max(-1, keepdims=True)
        log_z = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[:, 0]
        nll += (log_z - logits[np.arange(len(window) - 1), window[1:]]).sum()
        tokens += len(window) - 1
    return np.exp(nll / tokens)


@pytest.fixture(scope="module")
def archs_and_oracle(checkpoint):
    _, params, windows = checkpoint
    # every embed dim, depth 2..4, with and without biases
    archs = Arch.concatenate([SPACE.largest(), SPACE.smallest(), SPACE.mid(),
                              SPACE.sample_unique(jax.random.key(1), 2)])
    return archs, np.array([direct_perplexity(params, windows, archs[i])
                            for i in range(len(archs))])


@pytest.mark.parametrize(("arch_batch", "window_batch"), [(1, 1), (2, 2)])
def test_objective_equals_exp_mean_cross_entropy(checkpoint, archs_and_oracle, arch_batch,
                                                 window_batch):
    _, params, windows = checkpoint
    archs, expected = archs_and_oracle
    # (2, 2): 5 archs leave a remainder chunk, 3 windows a zero-weight padding window
    objective = supernet_perplexity(params, windows, SPACE, arch_batch=arch_batch,
                                    window_batch=window_batch)
    if arch_batch == 1:  # inside a jit, as the search calls it
        objective = jax.jit(objective)
    values = np.asarray(objective(jax.tree.map(jnp.asarray, archs), jax.random.key(0)))
    assert values.shape == (len(archs),) and values.dtype == np.float32
    np.testing.assert_allclose(values, expected, rtol=1e-4)
    # the archs' perplexities differ by far more than the tolerance, so a mix-up would show
    assert np.ptp(np.log(expected)) > 1e-2


def test_bad_inputs_raise_one_line_errors(checkpoint):
    _, params, windows = checkpoint
    with pytest.raises(ValueError, match="do not fit the s space"):
        supernet_perplexity(params, windows, get_space("s"))
    with pytest.raises(ValueError, match=r"windows have shape \(17,\)"):
        supernet_perplexity(params, windows[0], SPACE)
    with pytest.raises(ValueError, match="token id 50257"):
        supernet_perplexity(params, np.full((1, 5), 50257), SPACE)
    with pytest.raises(ValueError, match="arch_batch=0"):
        supernet_perplexity(params, windows, SPACE, arch_batch=0)
    with pytest.raises(ValueError, match="supernet_perplexity needs a trained supernet"):
        build_problem(SPACE, [SUPERNET_METRIC, "params"])


def test_build_problem_puts_the_supernet_column_where_named():
    # A stand-in objective with known values: the wiring, not the supernet, is under test.
    fake = lambda arch, key: 1000.0 + arch.embed_dim.astype(jnp.float32)  # noqa: E731
    problem = build_problem(SPACE, ["params", SUPERNET_METRIC], [f"{SUPERNET_METRIC}<=1100"],
                            supernet=fake)
    assert problem.metric_names == ("params", SUPERNET_METRIC, SUPERNET_METRIC)
    archs = SPACE.sample(jax.random.key(0), 6)
    values = np.asarray(problem.metrics_fn(archs, jax.random.key(0)))
    np.testing.assert_allclose(values[:, 1], 1000.0 + np.asarray(archs.embed_dim))
    np.testing.assert_allclose(values[:, 2], values[:, 1])
    _, margins = problem.evaluate(SPACE.genes(archs), jax.random.key(0))
    assert np.array_equal(np.asarray(margins[:, 0]) <= 0, np.asarray(archs.embed_dim) <= 100)


@pytest.mark.parametrize(("extra", "message"), [
    (["--objectives", "supernet_perplexity,params"], "needs a trained supernet"),
    (["--objectives", "params,flops", "--export", "2"], "--export needs --checkpoint"),
    (["--objectives", "params,flops", "--val-windows", "0"], "--val-windows 0"),
])
def test_cli_errors_without_a_checkpoint(tmp_path, capsys, extra, message):
    code = main(["search", "--algorithm", "random_search", "--budget", "8", "--population",
                 "8", "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0


def test_cli_rejects_a_checkpoint_of_another_scale(checkpoint, tmp_path, capsys):
    run_dir, _, _ = checkpoint
    code = main(["search", "--checkpoint", str(run_dir), "--scale", "s", "--objectives",
                 "supernet_perplexity,params", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "scales disagree" in err and "'tiny'" in err and "'s'" in err
