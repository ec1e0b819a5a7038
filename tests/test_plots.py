import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.stages import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 2000


@pytest.fixture(scope="module")
def table():
    import jax

    space = get_space("tiny")
    archs = space.sample(jax.random.key(0), 200)
    records = space.to_records(archs)
    df = pd.DataFrame(records)
    rng = np.random.default_rng(0)
    df["perplexity"] = 100 - df["embed_dim"] / 8 + rng.normal(0, 2, len(df))
    df["latency:cpu"] = df["embed_dim"] * df["n_layer"] * (1 + rng.normal(0, 0.05, len(df)))
    df["params"] = df["embed_dim"] * 1000
    return df


def test_ecdf_by_choice(table, tmp_path):
    path = plots.ecdf_by_choice(table, "perplexity", tmp_path / "ecdf.png")
    assert _is_png(path)
    means = plots.with_layer_means(table)
    assert means["mean_n_head"].between(2, 8).all()
    with pytest.raises(ValueError, match="metric 'energy' is not a column"):
        plots.ecdf_by_choice(table, "energy", tmp_path / "x.png")


def test_correlation_heatmap(table, tmp_path):
    path = plots.correlation_heatmap(table, ["perplexity", "latency:cpu", "params"],
                                     tmp_path / "corr.png")
    assert _is_png(path)
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the table"):
        plots.correlation_heatmap(table, ["nope"], tmp_path / "y.png")


def test_calibration_pareto_and_hypervolume_plots(tmp_path):
    rng = np.random.default_rng(1)
    levels = np.linspace(0.1, 0.9, 9)
    obs = rng.normal(size=(50, 10))
    from scipy.stats import norm

    predicted = np.tile(norm.ppf(levels), (50, 1))
    assert _is_png(plots.calibration_plot(levels, predicted, obs, tmp_path / "cal.png"))
    with pytest.raises(ValueError, match="predicted has shape"):
        plots.calibration_plot(levels, predicted[:, :3], obs, tmp_path / "bad.png")
    front = {"nsga2": np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])}
    assert _is_png(plots.pareto_front_plot(front, tmp_path / "front.png",
                                           points=rng.uniform(1, 4, (30, 2))))
    curves = {"rs": rng.uniform(size=(3, 20)).cumsum(1), "nsga2": np.ones((3, 20))}
    assert _is_png(plots.hypervolume_plot(curves, tmp_path / "hv.png"))
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_plot_cli_on_published_data(published_path, tmp_path, capsys):
    from hwgpt_jax.cli import main

    data = str(published_path("s"))
    out = tmp_path / "corr.png"
    assert main(["plot", "correlation", "--data", data, "--metrics",
                 "perplexity,latency:a100,energy:a100", "--out", str(out)]) == 0
    assert _is_png(out)
    assert main(["plot", "ecdf", "--data", data, "--metric", "latency:h100",
                 "--out", str(tmp_path / "e.png")]) == 0
    assert _is_png(tmp_path / "e.png")
    assert main(["plot", "ecdf", "--data", data, "--metric", "latency:tpu",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown metric(s) ['latency:tpu']" in capsys.readouterr().err
    before = out.read_bytes()
    assert main(["plot", "correlation", "--data", data, "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["plot", "correlation", "--data", data, "--metrics", "perplexity,latency:a100",
                 "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before
