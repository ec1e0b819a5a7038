import json
import subprocess
import sys

import pytest

from hwgpt_jax.cli import main
from hwgpt_jax.space.arch import get_space


def test_space_show_json(capsys):
    assert main(["space", "show", "--scale", "l", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == get_space("l").size
    assert info["choices"]["n_head"] == [8, 16, 20]


def test_space_show_text(capsys):
    assert main(["space", "show", "--scale", "tiny"]) == 0
    assert "44,226 architectures" in capsys.readouterr().out


def test_space_sample_json_and_csv(capsys):
    assert main(["space", "sample", "--scale", "s", "-n", "20", "--seed", "1"]) == 0
    archs = get_space("s").from_json(capsys.readouterr().out)
    assert len(archs) == 20
    assert main(["space", "sample", "--scale", "tiny", "-n", "5", "--unique",
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("arch_id,embed_dim") and len(lines) == 6
    assert len({line.split(",")[0] for line in lines[1:]}) == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["space", "show", "--scale", "xl"], "invalid choice: 'xl'"),
        (["space", "sample", "--scale", "s", "-n", "0"], "0 is not a positive integer"),
        (["space", "sample", "--scale", "s", "-n", "ten"], "'ten' is not an integer"),
        (["space", "sample", "--scale", "tiny", "-n", "50000", "--unique"], "only 44226"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:  # argparse errors exit through SystemExit, the others return 2
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1, err


def test_bad_input_in_a_real_process_is_one_line():
    """Once through the `python -m hwgpt_jax.cli` process (allocator re-exec included)."""
    proc = subprocess.run([sys.executable, "-m", "hwgpt_jax.cli", "space", "sample", "--scale",
                           "s", "-n", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "0 is not a positive integer" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------- output policy
@pytest.fixture()
def read_only_folder(tmp_path, monkeypatch):
    """A folder where creating a file fails with errno 30 (read-only file system), as on a
    read-only mount; chmod cannot simulate it (tests may run as root)."""
    import errno
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


ARCHS = '[{"embed_dim": 64, "n_layer": 2, "n_head": [2, 2], "mlp_ratio": [2, 2], "bias": true}]'


def _commands(tmp_path):
    """One argv per command that writes an output, without --out (inputs need not exist:
    the output is checked first)."""
    archs = tmp_path / "archs.json"
    archs.write_text(ARCHS)
    config = tmp_path / "train.toml"  # the output is checked before the corpus is read
    config.write_text('[model]\nscale = "tiny"\n[train]\nsteps = 1\n')
    none = str(tmp_path / "missing")
    return {
        "profile": (["profile", "--scale", "tiny", "--archs", str(archs)], "t.parquet"),
        "query": (["query", "--surrogates", none, "--archs", str(archs), "--metrics", "x"],
                  "t.parquet"),
        "evaluate": (["evaluate", "--checkpoint", none, "--archs", str(archs)], "t.parquet"),
        "fit": (["fit", "--data", none + ".parquet"], "folder"),
        "search": (["search", "--objectives", "params,flops", "--budget", "8"], "folder"),
        "export": (["export", "--checkpoint", none, "--archs", str(archs)], "folder"),
        "train": (["train", "--config", str(config)], "folder"),
    }


@pytest.mark.parametrize("command", ["profile", "query", "evaluate", "fit", "search"])
def test_existing_output_is_refused_before_any_work(tmp_path, capsys, command):
    argv, name = _commands(tmp_path)[command]
    out = tmp_path / name
    if name == "folder":
        out.mkdir()
        (out / "kept.txt").write_text("precious")
        assert main(argv + ["--out", str(out)]) == 2
    else:
        out.write_text("precious")
        assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} exists; pass --overwrite to replace it" in err, err
    assert (out / "kept.txt" if name == "folder" else out).read_text() == "precious"


@pytest.mark.parametrize("command", ["profile", "query", "evaluate", "fit", "search",
                                     "export", "train"])
def test_read_only_output_fails_first_in_one_line(tmp_path, capsys, read_only_folder,
                                                  command):
    argv, name = _commands(tmp_path)[command]
    out = read_only_folder / ("sub" if name == "folder" else name)
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"cannot write in {read_only_folder} (Read-only file system)" in err, err


def test_search_with_overwrite_replaces(tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["search", "--objectives", "params,flops", "--budget", "16", "--population", "8",
            "--algorithm", "random_search", "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_run_refuses_a_folder_that_is_not_a_run_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["run", "--micro", "--out", str(tmp_path)]) == 2
    assert "is not a `hwgpt run` folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
