"""`hwgpt fit` on bad tables and the --max-steps override (cli/fit.py, stages/fit.py), and the
held-out validation report (surrogates/validation.py)."""

import jax
import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.cli import main
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.costs import param_count
from hwgpt_jax.surrogates.benchmark import Benchmark

SPACE = get_space("tiny")


def table(n=60, values=None):
    archs = SPACE.sample_unique(jax.random.key(0), n)
    if values is None:
        values = 20 + 400 / np.sqrt(param_count(archs, SPACE) / 1e5)
    return pd.DataFrame({"arch_id": SPACE.arch_ids(archs), "scale": "tiny",
                         "metric": "perplexity", "device": "", "value": values, "unit": ""})


@pytest.mark.parametrize(("frame", "message"), [
    (table().iloc[:0], "table has no rows"),
    (table(values=np.full(60, np.nan)), "all 60 values of the table are missing (NaN)"),
    (table(values=np.r_[np.inf, np.ones(59)]), "table has 1 infinite value(s), e.g. inf for "
                                               "perplexity of tiny:"),
])
def test_bad_tables_give_one_clear_line(tmp_path, capsys, frame, message):
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert f"data file {path}: {message}" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_max_steps_is_honoured(tmp_path, capsys):
    path = tmp_path / "t.parquet"
    table().to_parquet(path)
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "bad"),
                 "--max-steps", "150"]) == 2  # default eval_every is 100: not whole chunks
    assert "max_steps 150 (quality): expected at most or a multiple of eval_every 100" in (
        capsys.readouterr().err)
    # the MLP family, so that there are steps to cap (by default this smooth target of the
    # parameter count is fitted best by the ridge model with cost-feature products)
    (tmp_path / "mlp.toml").write_text('[perplexity]\nkind = "mlp"\nfamily = "mlp"\n')
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "s"),
                 "--config", str(tmp_path / "mlp.toml"), "--max-steps", "20"]) == 0
    spec = Benchmark.load(tmp_path / "s").surrogates["perplexity"].spec
    assert spec.fit_report["steps"] == 20


def brute_force_tau(x, y):
    """Kendall tau-a by counting concordant and discordant pairs (no ties in the inputs)."""
    n, score = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            score += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return score / (n * (n - 1) / 2)


def test_validation_report_against_brute_force():
    from hwgpt_jax.surrogates.validation import validation_report

    rng = np.random.default_rng(0)
    observations = rng.lognormal(1.0, 0.3, (12, 5))
    observations[0, 1] = np.nan  # a missing observation counts in neither numerator nor total
    truth = np.nanmedian(observations, axis=1)
    median = truth * rng.uniform(0.8, 1.2, 12)
    lo, hi = np.quantile(observations, 0.2, axis=1), np.nanmax(observations, axis=1)
    report = validation_report(median, observations, {0.8: np.stack([lo, hi], 1)})
    assert report["archs"] == 12
    assert report["kendall_tau"] == pytest.approx(brute_force_tau(median, truth), abs=1e-6)
    assert report["mape"] == pytest.approx(np.mean(np.abs(median - truth) / truth))
    valid = ~np.isnan(observations)
    inside = sum(lo[i] <= v <= hi[i] for i in range(12) for v in observations[i][valid[i]])
    assert report["coverage_80"] == pytest.approx(inside / valid.sum())


def test_held_out_split_is_disjoint_and_seeded():
    from hwgpt_jax.surrogates.data import from_table
    from hwgpt_jax.surrogates.validation import split_held_out

    data = from_table(table(n=20))
    train, test = split_held_out(data, 0.25, seed=1)
    assert len(test[0]) == 5 and len(train[0]) == 15
    assert not set(SPACE.arch_ids(train[0].archs)) & set(SPACE.arch_ids(test[0].archs))
    again = split_held_out(data, 0.25, seed=1)[1][0]
    assert SPACE.arch_ids(again.archs) == SPACE.arch_ids(test[0].archs)
    with pytest.raises(ValueError, match="test fraction 1.5"):
        split_held_out(data, 1.5)
