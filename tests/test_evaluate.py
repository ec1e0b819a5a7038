import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.base.config import config_from_mapping
from hwgpt_jax.base.files import read_table_metadata
from hwgpt_jax.cli import main
from hwgpt_jax.measure.quality import Evaluator, head_sums
from hwgpt_jax.model import supernet as model
from hwgpt_jax.model.checkpoints import load_trained_params
from hwgpt_jax.space.arch import Arch, get_space
from hwgpt_jax.stages.evaluate import quality_observations, run_validation_windows
from hwgpt_jax.stages.train import Trainer
from hwgpt_jax.stages.train_config import TrainConfig

SPACE = get_space("tiny")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-step tiny training run (seq 16) on a small local corpus."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "model", "token", "layer", "head", "news",
             "market", "game", "vote", "energy", "chip", "latency", "search"]
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(words, size=300)) for _ in range(40)))
    cfg = config_from_mapping(TrainConfig, {
        "model": {"scale": "tiny"}, "data": {"corpus": str(corpus)},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"steps": 2, "batch_size": 2, "seq_len": 16, "eval_every": 0,
                  "eval_windows": 2, "checkpoint_every": 2, "log_every": 1,
                  "num_random_archs": 0}})
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(cfg, out)
    trainer.run()
    trainer.close()
    return out


@pytest.fixture(scope="module")
def trained(run_dir):
    params, meta = load_trained_params(run_dir)
    return params, meta, run_validation_windows(run_dir, meta, 5)


def direct_quality(params, windows, arch):
    """NumPy reference: float64 log-softmax of the masked forward's logits, window by window."""
    nll, correct, tokens = 0.0, 0, 0
    for window in windows:
        logits = np.asarray(model.forward(params, jnp.asarray(window[None, :-1]), arch, SPACE),
                            np.float64)[0]
        targets = window[1:]
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        nll -= log_probs[np.arange(len(targets)), targets].sum()
        correct += int((logits.argmax(-1) == targets).sum())
        tokens += len(targets)
    return np.exp(nll / tokens), correct / tokens


def test_largest_arch_matches_a_direct_masked_forward(trained):
    params, _, windows = trained
    assert windows.shape == (5, 17)
    archs = Arch.concatenate([SPACE.largest(), SPACE.smallest(), SPACE.mid(),
                              SPACE.sample_unique(jax.random.key(1), 3)])
    # window_batch 2 pads the 5 windows to 6; batch_archs 2 pads chunks of odd-sized groups
    evaluator = Evaluator(params, SPACE, windows, batch_archs=2, window_batch=2)
    result = evaluator.evaluate(archs)
    assert result.tokens == 5 * 16
    assert evaluator.compiles == len(set(archs.embed_dim.tolist())) <= 3
    for i in range(len(archs)):
        perplexity, accuracy = direct_quality(params, windows, archs[i])
        assert result.perplexity[i] == pytest.approx(perplexity, rel=1e-5)
        assert result.accuracy[i] == accuracy
    # one program on the full-width supernet gives the same numbers
    single = Evaluator(params, SPACE, windows, batch_archs=4, per_embed_dim=False)
    np.testing.assert_allclose(single.evaluate(archs[:3]).perplexity, result.perplexity[:3],
                               rtol=1e-5)
    assert single.compiles == 1
    # trained for 2 steps on a 16-word vocabulary: far better than uniform over 50304 ids
    assert result.perplexity[0] < 0.5 * SPACE.padded_vocab_size


def test_cli_writes_one_row_per_arch(run_dir, trained, tmp_path, capsys):
    params, meta, windows = trained
    out = tmp_path / "quality.parquet"
    assert main(["evaluate", "--checkpoint", str(run_dir), "-n", "5", "--seed", "2",
                 "--windows", "5", "--batch-archs", "3", "--out", str(out)]) == 0
    assert "evaluated 5 archs" in capsys.readouterr().out
    table = pd.read_parquet(out)
    archs = SPACE.sample_unique(jax.random.key(2), 5)
    assert table["arch_id"].tolist() == SPACE.arch_ids(archs)
    assert SPACE.from_records(table[["embed_dim", "n_layer", "n_head", "mlp_ratio", "bias"]]
                              .to_dict("records")).embed_dim.tolist() == archs.embed_dim.tolist()
    assert (table["checkpoint_step"] == 2).all() and (table["scale"] == "tiny").all()
    assert (table["tokens"] == 5 * 16).all() and (table["seq"] == 16).all()
    assert (table["arch_seed"] == 2).all()
    assert read_table_metadata(out)["versions"]["jax"] == jax.__version__
    # the CLI's chunks of 3 (padded) give the numbers of the one-arch direct computation
    for i in range(len(archs)):
        perplexity, accuracy = direct_quality(params, windows, archs[i])
        assert table["perplexity"][i] == pytest.approx(perplexity, rel=1e-5)
        assert table["accuracy"][i] == accuracy
    assert read_table_metadata(out)["compiles"] <= 3
    long = quality_observations(table)
    assert len(long) == 10 and set(long["metric"]) == {"perplexity", "accuracy"}


def test_cli_rejects_archs_of_another_scale(run_dir, tmp_path, capsys):
    space = get_space("s")
    path = tmp_path / "s.json"
    path.write_text(space.to_json(space.sample_unique(jax.random.key(0), 2)))
    out = tmp_path / "q.parquet"
    assert main(["evaluate", "--checkpoint", str(run_dir), "--archs", str(path),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "archs are of scale 's'" in err and "'tiny'" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "2", "--out", "/dev/null/q.parquet"], "/dev/null is not a folder"),
    (["-n", "0", "--out", "q.parquet"], "-n 0: expected a positive integer"),
    (["-n", "2", "--windows", "0", "--out", "q.parquet"], "--windows 0"),
])
def test_cli_bad_input(run_dir, args, message, capsys):
    assert main(["evaluate", "--checkpoint", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nothing"), "-n", "1",
                 "--out", str(tmp_path / "q.parquet")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("vocab", [50304, 1000])  # chunks of 384; of 250 (largest divisor)
def test_vocab_chunked_head_equals_full_logits(vocab):
    """The vocabulary-chunked head's NLL sum and accuracy equal log-sum-exp and argmax over the
    full logits, with tied maxima (duplicated embedding rows, across and within chunks) going
    to the first index as in `argmax`."""

    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(vocab, 16)).astype(np.float32)
    embedding[vocab - 5] = embedding[3] * 4.0  # same maximum in the first and last chunk
    embedding[7] = embedding[3] * 4.0  # and twice in the first chunk
    hidden = rng.normal(size=(40, 16)).astype(np.float32)
    hidden[:10] = embedding[3]  # rows whose maximum is the tie
    targets = rng.integers(0, vocab, 40)
    targets[:5], targets[5:10] = 7, vocab - 5  # ties: 7 is the first maximum, vocab-5 is not
    targets[10:15] = np.argmax(hidden[10:15] @ embedding.T, axis=-1)  # untied correct ones
    weights = (rng.random(40) < 0.8).astype(np.float32)
    nll, correct = jax.jit(head_sums)(jnp.asarray(hidden), jnp.asarray(embedding),
                                        jnp.asarray(targets), jnp.asarray(weights))
    logits = hidden.astype(np.float64) @ embedding.T.astype(np.float64)
    top = logits.max(-1)
    want_nll = top + np.log(np.exp(logits - top[:, None]).sum(-1)) - logits[np.arange(40), targets]
    assert abs(float(nll) - float((want_nll * weights).sum())) < 1e-4 * float(want_nll.sum())
    want_correct = int(((np.argmax(logits, -1) == targets) * weights).sum())
    assert int(correct) == want_correct and want_correct >= 5
