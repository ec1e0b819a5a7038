import json
import subprocess
import sys

import pytest

from hwgpt_jax.cli import main
from hwgpt_jax.space import get_space


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
def test_bad_input_is_one_line_and_exit_2(argv, message):
    proc = subprocess.run([sys.executable, "-m", "hwgpt_jax.cli", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
