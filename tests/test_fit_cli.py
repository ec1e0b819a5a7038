"""`hwgpt fit` on bad tables and the --max-steps override (hwgpt_jax/cli/fit.py)."""

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
