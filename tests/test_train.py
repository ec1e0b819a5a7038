import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hwgpt_jax.base.config import config_from_mapping, load_config, replace_config
from hwgpt_jax.model import checkpoints, optim
from hwgpt_jax.model.checkpoints import load_trained_params
from hwgpt_jax.model.step import lm_loss, sandwich_members, tied_head_cross_entropy, train_loss
from hwgpt_jax.model.supernet import init_params, slice_embed_dim
from hwgpt_jax.presets import find_preset
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.stages.train import Trainer, TrainingDivergedError
from hwgpt_jax.stages.train_config import TrainConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small local corpus: 40 documents of pseudo-random words (fast to tokenize)."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "model", "token", "layer", "head", "news",
             "market", "game", "vote", "energy", "chip", "latency", "search"]
    docs = [" ".join(rng.choice(words, size=300)) for _ in range(40)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(docs))
    return str(path)


def tiny_config(corpus, **train):
    base = {"steps": 4, "batch_size": 2, "seq_len": 16, "eval_every": 0, "eval_windows": 2,
            "checkpoint_every": 2, "log_every": 1, "num_random_archs": 1}
    return config_from_mapping(TrainConfig, {
        "model": {"scale": "tiny"}, "data": {"corpus": corpus},
        "optim": {"lr": 1e-3, "warmup_steps": 1}, "train": base | train})


def host(trainer):
    """The trainer's parameters on the host (device 0's copy), as a list of leaves."""
    return jax.tree.leaves(jax.device_get(jax.tree.map(lambda x: x[0], trainer.params)))


def test_presets_load():
    for scale in ("tiny", "s", "m", "l"):
        cfg = load_config(TrainConfig, find_preset("train", scale))
        assert cfg.model.scale == scale
        assert cfg.optim.beta2 == 0.95 and cfg.optim.grad_clip == 1.0
    assert load_config(TrainConfig, find_preset("train", "s")).optim.lr == 3.16e-4


@pytest.mark.parametrize(("data", "message"), [
    ({"train": {"stepz": 3}}, r"unknown config key\(s\) \['stepz'\] in \[train\]"),
    ({"trainer": {}}, r"unknown config key\(s\) \['trainer'\]"),
    ({"train": {"steps": 0}}, r"train.steps=0; expected a positive integer"),
    ({"model": {"scale": "xl"}}, r"unknown scale 'xl'"),
    ({"train": {"seq_len": 512}}, r"seq_len=512 exceeds the tiny block size 256"),
])
def test_bad_config(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_mapping(TrainConfig, data)


def test_sandwich_members_layout():
    space = get_space("tiny")
    members = sandwich_members(space, jax.random.key(0), n_devices=2, num_random=3)
    assert [m.name for m in members] == ["largest", "smallest", "random0", "random1", "random2"]
    for member in members:
        assert member.arch.embed_dim.shape == (2,)
        assert np.all(member.arch.embed_dim == member.embed_dim)  # one program per member
        space.validate(member.arch)
    assert members[0].embed_dim == 256 and members[1].embed_dim == 64


@pytest.mark.parametrize("n_chunks", [1, 3])
def test_fused_head_loss_and_gradient_equal_optax(n_chunks):
    keys = jax.random.split(jax.random.key(3), 3)
    hidden = jax.random.normal(keys[0], (24, 8))
    embedding = jax.random.normal(keys[1], (37, 8))
    targets = jax.random.randint(keys[2], (24,), 0, 37)

    def reference(h, e):
        return optax.softmax_cross_entropy_with_integer_labels(h @ e.T, targets).mean()

    def fused(h, e):
        return tied_head_cross_entropy(h, e, targets, n_chunks)

    want, want_grads = jax.value_and_grad(reference, (0, 1))(hidden, embedding)
    got, got_grads = jax.jit(jax.value_and_grad(fused, (0, 1)))(hidden, embedding)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(fused(hidden, embedding), want, rtol=1e-6)  # undifferentiated
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="n_chunks=5 does not divide the 24 tokens"):
        tied_head_cross_entropy(hidden, embedding, targets, 5)


def test_fused_head_bfloat16_gradients_close_to_float32():
    keys = jax.random.split(jax.random.key(4), 3)
    hidden = jax.random.normal(keys[0], (32, 16))
    embedding = jax.random.normal(keys[1], (40, 16)) * 0.3
    targets = jax.random.randint(keys[2], (32,), 0, 40)

    def grads(dtype):
        def loss(h, e):
            return tied_head_cross_entropy(h.astype(dtype), e.astype(dtype), targets, 4)
        return jax.grad(loss, (0, 1))(hidden, embedding)

    for low, high in zip(grads(jnp.bfloat16), grads(jnp.float32), strict=True):
        assert low.dtype == jnp.float32
        np.testing.assert_allclose(low, high, atol=0.02 * float(np.abs(high).max()))


def test_train_loss_equals_masked_reference_on_sliced_params():
    """The training loss (inactive blocks skipped by lax.cond, fused head, params sliced to the
    embed dim) has the value and gradient of the plain masked-supernet cross-entropy, for a
    sub-network and for the largest arch (which trains through the conditionals too)."""
    space = get_space("tiny")
    params = init_params(jax.random.key(0), space)
    params["blocks"] = params["blocks"] | {  # non-zero biases so the bias flag matters
        k: v + 0.01 for k, v in params["blocks"].items() if k.endswith("_bias")}
    windows = jax.random.randint(jax.random.key(1), (2, 17), 0, space.vocab_size)
    # Exercises the embed-dim slice (128 of 256), a skipped block (3 of 4), masked heads and
    # hidden units, and biases.
    archs = [(space.from_records([{
        "embed_dim": 128, "n_layer": 3, "n_head": [2, 8, 4], "mlp_ratio": [4, 2, 3],
        "bias": True}])[0], True), (space.largest(), True)]
    for arch, conditional in archs:
        dim = int(arch.embed_dim)
        want, want_grads = jax.jit(jax.value_and_grad(lm_loss), static_argnums=3)(
            params, windows, arch, space)

        def sliced_loss(p, arch=arch, dim=dim, conditional=conditional):
            return train_loss(slice_embed_dim(p, dim, max(space.mlp_ratios)), windows, arch,
                              space, None, 2, conditional)

        got, got_grads = jax.jit(jax.value_and_grad(sliced_loss))(params)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
        assert not np.any(np.asarray(got_grads["token_embedding"][:, dim:]))


@pytest.fixture(scope="module")
def reference_run(corpus, tmp_path_factory):
    """An uninterrupted 4-step run with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("uninterrupted")
    trainer = Trainer(tiny_config(corpus), out)
    trainer.run()
    trainer.close()
    return trainer, out


@pytest.fixture(scope="module")
def diverged_run(corpus, tmp_path_factory):
    """A run stopped by a non-finite loss at step 3, after its step-2 checkpoint: the folder
    and the error's message."""
    out = tmp_path_factory.mktemp("diverged")
    trainer = Trainer(tiny_config(corpus), out)
    trainer.run(until=2)
    trainer.params = jax.tree.map(lambda x: x * np.nan, trainer.params)
    with pytest.raises(TrainingDivergedError) as error:
        trainer.step()
    trainer.close()
    return out, str(error.value)


def test_resume_equals_uninterrupted(corpus, tmp_path, reference_run, diverged_run):
    """A run stopped after its step-2 checkpoint (here by a non-finite loss at step 3) and
    resumed ends where the uninterrupted run does."""
    reference, _ = reference_run
    shutil.copytree(diverged_run[0], tmp_path, dirs_exist_ok=True)  # the original stays as is
    resumed = Trainer(tiny_config(corpus), tmp_path, resume=True)
    assert resumed.step_count == 2
    last = resumed.run()
    resumed.close()
    assert last["step"] == 4
    for a, b in zip(host(reference), host(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    params, meta = load_trained_params(tmp_path)
    assert meta["step"] == 4 and meta["scale"] == "tiny"
    for a, b in zip(jax.tree.leaves(params), host(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_loss_decreases_and_validation_orders(reference_run):
    trainer, out = reference_run
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss/largest"] < log[0]["loss/largest"]
    # Each member's gradient and the update are timed; together they make up the step.
    for row in log:
        parts = {k: v for k, v in row.items() if k.startswith("seconds/")}
        assert set(parts) == {"seconds/largest", "seconds/smallest", "seconds/random0",
                              "seconds/update"}
        assert all(v > 0 for v in parts.values())
        assert sum(parts.values()) <= row["step_seconds"]
    val = trainer.validate()
    assert set(val) == {"val_ppl/smallest", "val_ppl/mid", "val_ppl/largest"}
    assert all(np.isfinite(v) and v > 1 for v in val.values())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(diverged_run):
    out, message = diverged_run
    assert re.search("non-finite loss .* step 3.*step 2", message), message
    params, meta = load_trained_params(out)
    assert meta["step"] == 2
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


def test_bad_inputs(corpus, tmp_path, reference_run):
    _, out = reference_run
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Trainer(tiny_config(str(tmp_path / "missing.txt")), tmp_path / "a")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no non-empty document"):
        Trainer(tiny_config(str(empty)), tmp_path / "b")
    small = tmp_path / "small.txt"
    small.write_text("one short document\n\nand another one")
    with pytest.raises(ValueError, match="block_size 16 needs at least 17 tokens"):
        Trainer(tiny_config(str(small)), tmp_path / "c")
    s_config = replace_config(tiny_config(corpus), model={"scale": "s"})
    with pytest.raises(ValueError, match="scale 'tiny', the config asks for 's'"):
        Trainer(s_config, out, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(corpus), tmp_path / "d", resume=True)
    with pytest.raises(FileExistsError, match=r"already holds checkpoints \(steps \[2, 4\]\)"):
        Trainer(tiny_config(corpus), out)  # a new run would mix with the old one's steps


# Data-parallel training over two simulated devices equals training on one: the
# `data_parallel` check of benchmarks/accelerator_check.py, run by test_accelerator_check.py
# (one interpreter start for both).


def test_multihost_launcher_single_process_and_cli(corpus, tmp_path, capsys):
    import socket

    from hwgpt_jax.cli import main

    with socket.socket() as sock:  # a free loopback port for the coordinator
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "micro.toml"
    config.write_text(textwrap.dedent(f"""
        [model]
        scale = "tiny"
        [data]
        corpus = "{corpus}"
        [train]
        steps = 2
        batch_size = 2
        seq_len = 16
        num_random_archs = 0
        eval_every = 2
        eval_windows = 2
        checkpoint_every = 2
    """))
    out = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "train/launch_multihost.py", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "1", "--process-id", "0", "--", "--config", str(config),
         "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and summary["val_ppl/largest"] > 1
    assert (out / "checkpoints" / "2").is_dir()
    # the CLI's refusals, in this process (no second interpreter start)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "other"),
                 "--corpus", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1, err
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2  # no --resume
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------ resume checks, checksums
TOML = """
[model]
scale = "tiny"
[data]
corpus = "{corpus}"
[optim]
lr = {lr}
warmup_steps = 1
[train]
steps = 4
batch_size = 2
seq_len = 16
eval_every = 0
eval_windows = 2
checkpoint_every = 2
log_every = 1
num_random_archs = 1
"""


@pytest.fixture()
def run_copy(reference_run, tmp_path):
    """A copy of the 4-step reference run (checkpoints at 2 and 4) to change or damage."""
    import shutil

    shutil.copytree(reference_run[1], tmp_path / "run")
    return tmp_path / "run"


def shard_bytes(run):
    return {p.name: p.read_bytes() for p in sorted((run / "data").iterdir())}


@pytest.mark.parametrize(("change", "message"), [
    ({"lr": "2e-3"}, r"other settings \(optim.lr: 0.001 -> 0.002\)"),
    ({"corpus": "other"}, r"other settings \(data.corpus: '.*corpus.txt' -> '.*other.txt'\)"),
])
def test_resume_refuses_other_settings_and_keeps_the_data(corpus, tmp_path, run_copy, capsys,
                                                          change, message):
    from hwgpt_jax.cli import main

    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(f"doc {i} " + "word " * 200 for i in range(20)))
    config = tmp_path / "c.toml"
    config.write_text(TOML.format(corpus=corpus, lr=change.get("lr", "1e-3")))
    before = shard_bytes(run_copy)
    argv = ["train", "--config", str(config), "--out", str(run_copy), "--resume",
            "--steps", "6"] + (["--corpus", str(other)] if "corpus" in change else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and __import__("re").search(message, err), err
    assert shard_bytes(run_copy) == before


def test_resume_refuses_an_edited_corpus_before_touching_the_shards(corpus, run_copy):
    before, text = shard_bytes(run_copy), Path(corpus).read_text()
    Path(corpus).write_text(text + "\n\nnew doc")  # same path, other content
    try:
        with pytest.raises(ValueError, match=r"corpus of the run .* changed since the "
                                             r"checkpoint \(\['corpus'\] differ\)"):
            Trainer(tiny_config(corpus, steps=6), run_copy, resume=True)
    finally:
        Path(corpus).write_text(text)
    assert shard_bytes(run_copy) == before


def test_resume_to_fewer_steps_says_so(corpus, run_copy, capsys, tmp_path):
    from hwgpt_jax.cli import main

    with pytest.raises(ValueError, match=r"at step 4, past train.steps=3; pass --steps above 4"):
        Trainer(tiny_config(corpus, steps=3), run_copy, resume=True)
    config = tmp_path / "c.toml"
    config.write_text(TOML.format(corpus=corpus, lr="1e-3"))
    assert main(["train", "--config", str(config), "--out", str(run_copy), "--resume"]) == 0
    assert "already at step 4 = train.steps; nothing to train" in capsys.readouterr().out


def _damage(run, how):
    step = run / "checkpoints" / "4"
    if how == "flip":  # 64 bytes at 8 places of every large data file: params and optimizer
        # state share the files, and params-only loading must see the damage wherever they lie
        for path in (p for p in (step / "state").rglob("*") if p.is_file()
                     and p.stat().st_size > 1 << 16):
            data = bytearray(path.read_bytes())
            for start in range(len(data) // 16, len(data), len(data) // 8):
                for i in range(start, min(start + 64, len(data))):
                    data[i] ^= 0xFF
            path.write_bytes(bytes(data))
        return str(step)
    if how == "no_state":
        import shutil

        shutil.rmtree(step / "state")
        return str(step)
    meta = next(p for p in (step / "meta").iterdir() if p.is_file())
    if how == "garbage_meta":
        meta.write_text("{not json")
        return str(step / "meta")
    info = json.loads(meta.read_text())
    if how == "format_1":  # as written before the NNX supernet: no format version
        del info["format_version"]
    else:  # "edited_meta": another valid value
        info["config"]["optim"]["lr"] = 0.5
    meta.write_text(json.dumps(info))
    return str(step)


@pytest.mark.parametrize("how", ["flip", "no_state", "garbage_meta", "edited_meta",
                                 "format_1"])
def test_damaged_checkpoint_is_refused_in_one_line(run_copy, tmp_path, capsys, how):
    from hwgpt_jax.cli import main
    from hwgpt_jax.model.checkpoints import CheckpointError

    where = _damage(run_copy, how)
    with pytest.raises(CheckpointError) as err:
        load_trained_params(run_copy)
    assert where in str(err.value) and "\n" not in str(err.value)
    if how == "format_1":
        assert "format version 1" in str(err.value)
    out = tmp_path / "quality.parquet"
    assert main(["evaluate", "--checkpoint", str(run_copy), "-n", "2", "--windows", "2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert where in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # no NaN table from a damaged checkpoint


def test_ctrl_c_keeps_the_last_checkpoint(corpus, tmp_path, capsys, monkeypatch):
    from hwgpt_jax.cli import main

    config = tmp_path / "c.toml"
    config.write_text(TOML.format(corpus=corpus, lr="1e-3"))
    real_step = Trainer.step

    def step(self, members=None):
        if self.step_count == 3:
            raise KeyboardInterrupt
        return real_step(self, members)

    monkeypatch.setattr(Trainer, "step", step)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("hwgpt train: interrupted; the last checkpoint is kept; rerun with "
                       "--resume to continue")
    assert not any("Traceback" in line for line in err)
    assert load_trained_params(tmp_path / "run")[1]["step"] == 2


# ------------------------------------------------------------------ loading for evaluation
def test_load_trained_params_builds_no_optimizer(reference_run, monkeypatch):
    """Evaluation reads only the params subtree: no optimizer (nor its state) is built."""
    def boom(*args, **kwargs):
        raise AssertionError("an optimizer was built to load parameters")

    monkeypatch.setattr(optim, "make_optimizer", boom)
    monkeypatch.setattr(optax, "adamw", boom)
    trainer, out = reference_run
    params, meta = load_trained_params(out)
    assert meta["step"] == 4 and "params_sha256" in meta
    for a, b in zip(jax.tree.leaves(params), host(trainer), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_without_params_digest_still_loads(corpus, tmp_path, monkeypatch):
    """A checkpoint saved before `params_sha256` existed (one digest over params and optimizer
    state) loads whole and is verified; an edited one is refused."""
    def old_seal(tree, data_state, meta):
        meta = json.loads(json.dumps(meta))
        meta["sha256"] = checkpoints.state_digest(tree, data_state, meta)
        return meta

    monkeypatch.setattr(checkpoints, "seal_meta", old_seal)
    trainer = Trainer(tiny_config(corpus), tmp_path)
    trainer.save()  # step 0, the old way
    trainer.close()
    params, meta = load_trained_params(tmp_path)
    assert "params_sha256" not in meta and meta["step"] == 0
    for a, b in zip(jax.tree.leaves(params), host(trainer), strict=True):
        np.testing.assert_array_equal(a, b)
    meta_file = next(p for p in (tmp_path / "checkpoints" / "0" / "meta").iterdir()
                     if p.is_file())
    info = json.loads(meta_file.read_text())
    info["config"]["train"]["seq_len"] = 8
    meta_file.write_text(json.dumps(info))
    with pytest.raises(checkpoints.CheckpointError, match="do not match the sha256"):
        load_trained_params(tmp_path)
