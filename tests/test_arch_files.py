import json

import pandas as pd
import pytest

from hwgpt_jax.cli import main
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.arch_files import read_arch_file

TINY = get_space("tiny")
GOOD = {"embed_dim": 64, "n_layer": 2, "n_head": [2, 4], "mlp_ratio": [2, 3], "bias": True}


def write(tmp_path, value, raw=None, name="archs.json"):
    path = tmp_path / name
    path.write_text(raw if raw is not None else json.dumps(value))
    return path


@pytest.mark.parametrize(
    ("records", "raw", "message"),
    [
        ([dict(GOOD, embed_dim=64.5)], None, r"arch record 0: embed_dim=64.5 is not an integer; "
                                             r"allowed choices: \[64, 128, 256\]"),
        ([dict(GOOD, embed_dim="64")], None, r"record 0: embed_dim='64' is not an integer"),
        ([dict(GOOD, n_layer=True)], None, r"record 0: n_layer=True is not an integer; allowed "
                                           r"choices: \[2, 3, 4\]"),
        ([GOOD, dict(GOOD, embed_dim="big")], None, r"record 1: embed_dim='big' is not an int"),
        (None, '[{"embed_dim": 1e400, "n_layer": 2, "n_head": [2, 2], "mlp_ratio": [2, 2], '
               '"bias": true}]', r"record 0: embed_dim=inf is not an integer"),
        (None, '[{"embed_dim": NaN, "n_layer": 2, "n_head": [2, 2], "mlp_ratio": [2, 2], '
               '"bias": true}]', r"NaN is not a number"),
        ([dict(GOOD, n_head=[2, 2.0])], None, r"record 0: n_head\[1\]=2.0 is not an integer"),
        ([dict(GOOD, n_head=[2, 3])], None, r"record 0: n_head\[1\]=3 is not in the tiny space; "
                                            r"allowed choices: \[2, 4, 8\]"),
        ([dict(GOOD, n_head=4)], None, r"record 0: n_head=4 is not a list"),
        ([dict(GOOD, bias=1)], None, r"record 0: bias=1 is not a boolean"),
        ([dict(GOOD, bias="true")], None, r"record 0: bias='true' is not a boolean"),
        ([GOOD, 5], None, r"arch record 1 is 5, expected an object with fields"),
        ([GOOD, ["x"]], None, r"arch record 1 is \['x'\], expected an object"),
        ([], None, r"the arch list is empty"),
        ({"scale": "tiny", "archs": []}, None, r"the arch list is empty"),
        ({"scale": "tiny"}, None, r"has no 'archs' list"),
        ({"scale": "tiny", "archs": 3}, None, r"expected a list of arch records, got int"),
    ],
)
@pytest.mark.parametrize("with_space", [True, False])
def test_bad_records_name_index_field_value_and_choices(tmp_path, records, raw, message,
                                                         with_space):
    path = write(tmp_path, records, raw)
    with pytest.raises(ValueError, match=message) as err:
        read_arch_file(path, TINY if with_space else None)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_every_accepted_form_reads_the_same_archs(tmp_path):
    archs = TINY.from_records([GOOD, dict(GOOD, embed_dim=128, bias=False)])
    ids = TINY.arch_ids(archs)
    forms = {
        "a.json": TINY.to_json(archs),
        "b.json": json.dumps(TINY.to_records(archs)),
        "c.json": json.dumps(TINY.to_hwgpt(archs)),
        "d.json": json.dumps(ids),
        "e.txt": "\n".join(ids),
        "f.csv": pd.DataFrame({"arch_id": ids}).to_csv(index=False),
    }
    for name, text in forms.items():
        path = write(tmp_path, None, text, name)
        for space in (TINY, None):
            scale, read = read_arch_file(path, space)
            assert scale == "tiny" and TINY.arch_ids(read) == ids, name


def test_scale_is_found_or_checked(tmp_path):
    s_space = get_space("s")
    path = write(tmp_path, None, s_space.to_json(s_space.smallest()))
    assert read_arch_file(path)[0] == "s"
    with pytest.raises(ValueError, match="holds archs of scale 's', expected 'tiny'"):
        read_arch_file(path, TINY)
    m_space = get_space("m")  # embed dim 256 is both tiny's and m's: tried on every scale
    bare = write(tmp_path, m_space.to_records(m_space.smallest()), name="m.json")
    assert read_arch_file(bare)[0] == "m"


@pytest.mark.parametrize("command", ["profile", "query", "evaluate"])
def test_cli_reports_a_bad_arch_file_in_one_line(tmp_path, capsys, command):
    path = write(tmp_path, [GOOD, dict(GOOD, mlp_ratio=[2, 64.5])])
    argv = {"profile": ["profile", "--scale", "tiny"],
            "query": ["query", "--surrogates", str(tmp_path / "none"), "--metrics", "params"],
            "evaluate": ["evaluate", "--checkpoint", str(tmp_path / "none")]}[command]
    code = main(argv + ["--archs", str(path), "--out", str(tmp_path / "out.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    if command != "query":  # query first loads its surrogates (missing here)
        assert "arch record 1: mlp_ratio[1]=64.5 is not an integer" in err
