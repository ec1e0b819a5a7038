"""Installed from a wheel into a fresh virtual environment, run from an empty directory, the
package finds its presets and assets: every preset of the source tree is in the wheel, the
tokenizer builds from its packaged ranks, `Benchmark.published` answers, and the `hwgpt` script
runs a search from a preset and writes its files, with no source checkout. (The stages
themselves are tested in-tree: `hwgpt run --micro` in tests/test_pipeline.py.)

The wheel goes in with `--no-deps`; the fresh environment reaches the dependencies through a
`.pth` line naming this environment's site-packages (whose own `.pth` files, the editable
install among them, are not processed that way). `make install` already installs the same
dependency list from PyPI, so this test spends its time on what only a wheel can show.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_wheel_in_a_fresh_venv_finds_its_data_and_runs_the_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HWGPT_PRESETS")}
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    try:
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, ROOT],
             tmp_path, env)
        (wheel,) = wheels.glob("hwgpt_jax-*.whl")
        # No pip of its own (ensurepip costs seconds): this environment's pip installs into it.
        _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
        python = venv / "bin" / "python"
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
              wheel], tmp_path, env)
        (site,) = (venv / "lib").glob("python3*/site-packages")
        deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
        (site / "zz_dependencies.pth").write_text("\n".join(deps) + "\n")
        presets = {stage: sorted(p.stem for p in (ROOT / "hwgpt_jax" / "presets" / stage).glob(
            "*.toml")) for stage in ("train", "profile", "search", "surrogates")}
        checks = _run([python, "-c", "import jax, hwgpt_jax; from hwgpt_jax import presets; "
                       "from hwgpt_jax.data import tokenizer; "
                       "from hwgpt_jax.surrogates.benchmark import Benchmark; "
                       "print(hwgpt_jax.__file__); print(presets.find_preset('train', 'tiny')); "
                       f"print({{s: presets.preset_names(s) for s in {sorted(presets)}}}); "
                       "print(tokenizer.encode('Hello world')); "
                       "b = Benchmark.published('s'); "
                       "print(b.query(b.space.sample(jax.random.key(0), 3))['perplexity'])"],
                      empty, env).stdout.splitlines()
        where = checks[:2]
        assert all(str(venv) in line and "site-packages" in line for line in where), where
        assert checks[2] == str(dict(sorted(presets.items()))), checks[2]
        assert checks[3] == "[15496, 995]"
        assert checks[4].count(".") >= 3, checks[4]
        _run([venv / "bin" / "hwgpt", "search", "--preset", "smoke_analytic", "--out", "run"],
             empty, env)
        summary = json.loads((empty / "run" / "summary.json").read_text())
        assert set(summary["hypervolume"]) == {"random_search", "nsga2"}, summary
    finally:
        shutil.rmtree(venv, ignore_errors=True)
