"""Corpus sources, token shards and grain window pipelines (hwgpt_jax/data: sources.py,
shards.py, windows.py).

Most tests use a synthetic corpus in which every token occurs once (apart from end-of-text),
so a window's position in its split, and the document each token came from, are recoverable.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hwgpt_jax.data import shards as shards_lib
from hwgpt_jax.data import sources as sources_lib
from hwgpt_jax.data import tokenizer
from hwgpt_jax.data import windows as windows_lib

EOT = tokenizer.EOT_ID
BLOCK = 8


def _single_token_words(count):
    encoding = tokenizer.gpt2_encoding()
    words = []
    for token in range(1000, 50000):
        piece = encoding.decode([token])
        if piece.startswith(" ") and piece[1:].isalpha() and piece[1:].islower():
            words.append(piece[1:])
        if len(words) == count:
            return words
    raise AssertionError("not enough single-token words")


@pytest.fixture(scope="module")
def unique_corpus(tmp_path_factory):
    """60 documents of 10-29 words each; returns (jsonl path, documents)."""
    words = iter(_single_token_words(2000))
    lengths = np.random.default_rng(1).integers(10, 30, size=60)
    documents = [" ".join(next(words) for _ in range(n)) for n in lengths]
    path = tmp_path_factory.mktemp("unique") / "corpus.jsonl"
    lines = (json.dumps({"text": doc, "id": i}) for i, doc in enumerate(documents))
    path.write_text("\n".join(lines))
    ids = [tokenizer.encode(doc) for doc in documents]
    flat = [t for doc in ids for t in doc]
    assert len(flat) == len(set(flat)) and EOT not in flat  # the fixture's premise
    return path, documents


@pytest.fixture(scope="module")
def unique_shards(unique_corpus, tmp_path_factory):
    path, _ = unique_corpus
    return shards_lib.prepare_corpus(path, tmp_path_factory.mktemp("shards"), seed=0,
                                     val_fraction=0.2)


@pytest.fixture(scope="module")
def bbc_shards(tmp_path_factory):
    return shards_lib.prepare_corpus("bbc", tmp_path_factory.mktemp("bbc"), seed=0,
                                     val_fraction=0.05)


def _positions(tokens):
    return {int(t): i for i, t in enumerate(tokens) if t != EOT}


def _window_start(window, positions):
    # Any non-EOT token locates the window; EOT-only windows cannot occur with 10+ word docs.
    for k, token in enumerate(window):
        if token != EOT:
            return positions[int(token)] - k
    raise AssertionError("window of end-of-text tokens only")


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


# ----------------------------------------------------------------------------- shards


def test_shards_match_per_document_oracle(unique_corpus, unique_shards):
    _, documents = unique_corpus
    indices = shards_lib.split_documents(len(documents), seed=0, val_fraction=0.2)
    assert len(indices["val"]) == 12 and len(indices["train"]) == 48
    for split in shards_lib.SPLITS:
        expected = [t for i in indices[split] for t in [*tokenizer.encode(documents[i]), EOT]]
        tokens = unique_shards.tokens(split)
        assert tokens.dtype == np.uint16
        np.testing.assert_array_equal(tokens, expected)
        assert unique_shards.num_tokens(split) == len(expected)
        assert unique_shards.manifest["splits"][split]["documents"] == len(indices[split])
    train, val = (set(unique_shards.tokens(s).tolist()) for s in shards_lib.SPLITS)
    assert train & val == {EOT}  # no document contributes to both splits


def test_manifest_records_provenance(unique_corpus, unique_shards):
    manifest = json.loads((unique_shards.directory / "manifest.json").read_text())
    assert manifest == unique_shards.manifest
    assert manifest["corpus"]["kind"] == "local"
    assert manifest["corpus"]["path"] == str(unique_corpus[0].resolve())
    assert manifest["tokenizer_sha256"] == tokenizer.tokenizer_hash()
    assert (manifest["seed"], manifest["val_fraction"], manifest["documents"]) == (0, 0.2, 60)
    assert {"hwgpt-jax", "tiktoken", "numpy", "grain", "python"} <= set(manifest["versions"])
    assert not list(unique_shards.directory.glob(".*"))  # no temp files left behind


def test_shards_reused_then_rebuilt_on_change(unique_corpus, tmp_path):
    path, _ = unique_corpus
    first = shards_lib.prepare_corpus(path, tmp_path, seed=0, val_fraction=0.2)
    first_val = np.array(first.tokens("val"))  # a copy: the file is replaced below
    files = [tmp_path / name for name in ("train.npy", "val.npy", "manifest.json")]
    mtimes = [f.stat().st_mtime_ns for f in files]
    second = shards_lib.prepare_corpus(path, tmp_path, seed=0, val_fraction=0.2)
    assert not first.reused and second.reused
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert shards_lib.load_shards(tmp_path).manifest == first.manifest

    reseeded = shards_lib.prepare_corpus(path, tmp_path, seed=1, val_fraction=0.2)
    assert not reseeded.reused and reseeded.manifest["seed"] == 1
    assert not np.array_equal(reseeded.tokens("val"), first_val)

    np.save(tmp_path / "val.npy", np.zeros(3, dtype=np.uint16))  # damaged shard
    repaired = shards_lib.prepare_corpus(path, tmp_path, seed=1, val_fraction=0.2)
    assert not repaired.reused
    np.testing.assert_array_equal(repaired.tokens("val"), reseeded.tokens("val"))


def test_txt_parquet_and_folder_sources(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("first doc\nstill first\n\n \nsecond doc\n\n\nthird doc\n")
    table = pa.table({"text": ["fourth doc", "", "fifth doc"], "n": [1, 2, 3]})
    pq.write_table(table, folder / "b.parquet")
    (folder / "ignored.csv").write_text("not,a,corpus\n")
    description = sources_lib.describe_source(folder)
    assert sources_lib.load_documents(description) == [
        "first doc\nstill first", "second doc", "third doc", "fourth doc", "fifth doc"
    ]
    shards = shards_lib.prepare_corpus(folder, tmp_path / "out", seed=0, val_fraction=0.4)
    assert shards.manifest["documents"] == 5
    assert shards.manifest["splits"]["val"]["documents"] == 2


# ----------------------------------------------------------------------------- windows


def test_train_windows_are_contiguous_slices_of_train(unique_shards):
    train = unique_shards.tokens("train")
    positions = _positions(train)
    iterator = windows_lib.train_iterator(unique_shards, batch_size=4, block_size=BLOCK, seed=0)
    batches = _take(iterator, 60)  # several epochs of ~50 windows
    assert all(b.shape == (4, BLOCK + 1) and b.dtype == np.int32 for b in batches)
    for window in np.concatenate(batches):
        start = _window_start(window, positions)
        np.testing.assert_array_equal(window, train[start:start + BLOCK + 1])


def test_epochs_tile_the_split_with_shifting_offsets(unique_shards):
    train = unique_shards.tokens("train")
    positions = _positions(train)
    per_epoch = (train.size - 1) // BLOCK - 1  # documented: one window kept in reserve
    iterator = windows_lib.train_iterator(unique_shards, batch_size=1, block_size=BLOCK, seed=3)
    offsets = []
    for _ in range(5):
        starts = [_window_start(next(iterator)[0], positions) for _ in range(per_epoch)]
        assert len({s % BLOCK for s in starts}) == 1  # one tiling per epoch: no overlap
        assert len(set(starts)) == per_epoch
        assert starts != sorted(starts)  # shuffled
        offsets.append(starts[0] % BLOCK)
    assert len(set(offsets)) > 1


def test_same_seed_same_batches_different_seed_different(unique_shards):
    def first_batches(seed):
        return np.stack(_take(windows_lib.train_iterator(unique_shards, 4, BLOCK, seed), 10))

    np.testing.assert_array_equal(first_batches(5), first_batches(5))
    assert not np.array_equal(first_batches(5), first_batches(6))


def test_iterator_state_round_trip(unique_shards):
    iterator = windows_lib.train_iterator(unique_shards, 4, BLOCK, seed=0)
    _take(iterator, 17)  # past the first epoch
    state = json.loads(json.dumps(iterator.get_state()))  # must survive a JSON checkpoint
    expected = _take(iterator, 20)
    resumed = windows_lib.train_iterator(unique_shards, 4, BLOCK, seed=0)
    resumed.set_state(state)
    np.testing.assert_array_equal(np.stack(_take(resumed, 20)), np.stack(expected))


def test_host_shards_are_disjoint(unique_shards):
    train = unique_shards.tokens("train")
    positions = _positions(train)
    per_host = ((train.size - 1) // BLOCK - 1) // 2
    starts = []
    for host in range(2):
        iterator = windows_lib.train_iterator(unique_shards, 1, BLOCK, seed=0, process_index=host,
                                       process_count=2)
        starts.append({_window_start(next(iterator)[0], positions) for _ in range(per_host)})
    assert len(starts[0]) == len(starts[1]) == per_host
    assert not starts[0] & starts[1]
    assert len({s % BLOCK for s in starts[0] | starts[1]}) == 1  # same epoch tiling


def test_validation_windows_tile_val_in_order(unique_shards):
    val = unique_shards.tokens("val")
    windows = windows_lib.validation_windows(unique_shards, BLOCK)
    n = (val.size - 1) // BLOCK
    assert windows.shape == (n, BLOCK + 1) and windows.dtype == np.int32
    for i, window in enumerate(windows):
        np.testing.assert_array_equal(window, val[i * BLOCK:(i + 1) * BLOCK + 1])
    subset = windows_lib.validation_windows(unique_shards, BLOCK, max_windows=4)
    np.testing.assert_array_equal(subset, windows_lib.validation_windows(unique_shards, BLOCK, 4))
    chosen = [i for i in range(n) if any(np.array_equal(windows[i], s) for s in subset)]
    assert len(chosen) == 4 and chosen[0] == 0 and chosen[-1] == n - 1
    assert set(np.concatenate(windows).tolist()) <= set(val.tolist())


# ----------------------------------------------------------------------------- BBC


def test_bbc_corpus(bbc_shards):
    documents = sources_lib.bbc_documents()
    assert len(documents) == 2225
    assert documents[0].startswith("Ad sales boost Time Warner profit")
    assert any("£15.8m" in doc for doc in documents)  # the one Latin-1 file decodes right
    manifest = bbc_shards.manifest
    assert manifest["documents"] == 2225 and manifest["corpus"]["kind"] == "bbc"
    assert manifest["splits"]["val"]["documents"] == round(0.05 * 2225)
    total = bbc_shards.train_tokens + bbc_shards.val_tokens
    assert 1_000_000 < total < 1_200_000
    assert bbc_shards.tokens("train")[-1] == EOT
    window = windows_lib.validation_windows(bbc_shards, 256, max_windows=1)[0]
    assert tokenizer.decode(window.tolist()).startswith(tokenizer.decode(
        bbc_shards.tokens("val")[:20].tolist()))


# ----------------------------------------------------------------------------- bad input


def _one_line(err):
    assert "\n" not in str(err.value)


def test_missing_corpus_path(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt") as err:
        shards_lib.prepare_corpus(missing, tmp_path / "out")
    _one_line(err)
    with pytest.raises(FileNotFoundError, match="no token shards"):
        shards_lib.load_shards(tmp_path)


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n   \n\n")
    with pytest.raises(ValueError, match="empty.txt") as err:
        shards_lib.prepare_corpus(tmp_path / "empty.txt", tmp_path / "out")
    _one_line(err)
    (tmp_path / "one.txt").write_text("just one document\n")
    with pytest.raises(ValueError, match="at least 2"):
        shards_lib.prepare_corpus(tmp_path / "one.txt", tmp_path / "out")


def test_block_size_larger_than_split(unique_shards):
    with pytest.raises(ValueError, match="block_size 100000 .* train split has") as err:
        windows_lib.train_iterator(unique_shards, 2, 100_000, seed=0)
    _one_line(err)
    with pytest.raises(ValueError, match="block_size 5000 .* val split has"):
        windows_lib.validation_windows(unique_shards, 5000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 0.0}, "val_fraction 0.0"),
        ({"val_fraction": 1.5}, "val_fraction 1.5"),
        ({"seed": -1}, "seed -1"),
        ({"text_field": "body"}, "'body'"),
    ],
)
def test_bad_prepare_arguments(unique_corpus, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shards_lib.prepare_corpus(unique_corpus[0], tmp_path, **kwargs)


def test_bad_window_arguments(unique_shards):
    with pytest.raises(ValueError, match="batch_size 0"):
        windows_lib.train_iterator(unique_shards, 0, BLOCK, seed=0)
    with pytest.raises(ValueError, match="shard"):
        windows_lib.train_iterator(unique_shards, 2, BLOCK, seed=0, process_index=2,
                                   process_count=2)
    with pytest.raises(ValueError, match="max_windows 0"):
        windows_lib.validation_windows(unique_shards, BLOCK, max_windows=0)
    with pytest.raises(ValueError, match="split 'test'"):
        unique_shards.tokens("test")


def test_bad_file_contents(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        shards_lib.prepare_corpus(tmp_path / "bad.jsonl", tmp_path / "out")
    (tmp_path / "corpus.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="'.csv'"):
        shards_lib.prepare_corpus(tmp_path / "corpus.csv", tmp_path / "out")


def test_unknown_hugging_face_dataset_offline(tmp_path):
    # A subprocess: datasets reads the offline switches when it is first imported.
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from hwgpt_jax.data import shards as data\n"
        "try:\n"
        f"    data.prepare_corpus('no-such-user/no-such-corpus', {str(tmp_path / 'o')!r})\n"
        "except ValueError as err:\n"
        "    print(repr(str(err)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "'no-such-user/no-such-corpus'" in lines[0] and "Hugging Face" in lines[0]


@pytest.mark.parametrize("name", ["mycorpus", "corpus_v2", "a b/c", "owner/", "/name"])
def test_a_name_that_is_no_path_and_no_dataset_id_fails_offline(name, monkeypatch):
    import datasets

    def no_network(*args, **kwargs):
        raise AssertionError("the network was tried")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises((ValueError, FileNotFoundError), match=repr(name)) as err:
        shards_lib.prepare_corpus(name, "unused")
    assert "\n" not in str(err.value)


def test_dataset_ids_and_local_folder_typos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpora").mkdir()
    assert sources_lib.describe_source("owner/name:cfg")["name"] == "owner/name"
    assert sources_lib.describe_source("hf:wikitext")["name"] == "wikitext"
    with pytest.raises(FileNotFoundError, match="folder 'corpora' does"):
        sources_lib.describe_source("corpora/news")
