"""Token windows of (block + 1) tokens over the shards: the grain training stream and the
fixed validation tiling.

The training stream tiles the train split with windows of `block_size + 1` tokens
(consecutive windows share one token: the last target of one is the first input of the next),
shuffles them, shards them over hosts and repeats forever; each epoch shifts the tiling by a
seed-dependent offset so window boundaries differ between epochs. Validation windows are the
fixed, ordered tiling of the validation split.
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from hwgpt_jax.data.shards import CorpusShards, check_int


def _check_block_size(block_size: int, num_tokens: int, split: str) -> None:
    check_int("block_size", block_size, 1)
    if num_tokens < block_size + 1:
        raise ValueError(
            f"block_size {block_size} needs at least {block_size + 1} tokens but the {split} "
            f"split has {num_tokens}"
        )


def _derived_seed(seed: int, *purpose: int) -> int:
    # Hash the user seed so that (seed, epoch + 1) never replays (seed + 1, epoch).
    return int(np.random.SeedSequence([seed, *purpose]).generate_state(1)[0])


def train_iterator(
    shards: CorpusShards,
    batch_size: int,
    block_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    *,
    num_threads: int = 2,
    prefetch_buffer_size: int = 8,
) -> grain.DatasetIterator:
    """Infinite, checkpointable stream of np.int32 (batch_size, block_size + 1) train windows.

    `batch_size` is per process. Windows are shuffled by `seed` (reshuffled every epoch) and
    split over processes with grain `ShardOptions`: within an epoch, processes get disjoint
    windows. `iterator.get_state()` is a small JSON-able dict; `set_state` resumes exactly.
    """
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    shard_options = grain.sharding.ShardOptions(process_index, process_count, drop_remainder=True)
    tokens = shards.tokens("train")
    _check_block_size(block_size, tokens.size, "train")
    # Keep one window in reserve (when there are two or more) so every epoch can shift the
    # tiling by up to block_size - 1 tokens and still end inside the split.
    windows_per_epoch = max(1, (tokens.size - 1) // block_size - 1)
    max_offset = min(block_size - 1, tokens.size - 1 - windows_per_epoch * block_size)
    windows_used = windows_per_epoch - windows_per_epoch % shard_options.shard_count
    if windows_used == 0:
        raise ValueError(
            f"the train split has {windows_per_epoch} window(s) of block_size {block_size}, "
            f"fewer than process_count {shard_options.shard_count}"
        )
    windows_per_shard = windows_used // shard_options.shard_count

    @functools.lru_cache(maxsize=4)
    def epoch_offset(epoch: int) -> int:
        return int(np.random.default_rng(_derived_seed(seed, 1, epoch)).integers(max_offset + 1))

    def read_window(index: int, window: int) -> np.ndarray:
        # Equal shard lengths keep the epoch (hence the offset) identical on every process.
        start = epoch_offset(index // windows_per_shard) + window * block_size
        return np.asarray(tokens[start:start + block_size + 1], dtype=np.int32)

    dataset = (
        grain.MapDataset.range(windows_per_epoch)
        .shuffle(seed=_derived_seed(seed, 0))
        [:windows_used]
        [shard_options.shard_index::shard_options.shard_count]
        .repeat()
        .map_with_index(read_window)
        .batch(batch_size, drop_remainder=True)
    )
    read_options = grain.ReadOptions(num_threads=num_threads,
                                     prefetch_buffer_size=prefetch_buffer_size)
    return iter(dataset.to_iter_dataset(read_options))


def validation_windows(
    shards: CorpusShards, block_size: int, max_windows: int | None = None, split: str = "val"
) -> np.ndarray:
    """The fixed, ordered tiling of a split: np.int32 (n, block_size + 1).

    Window i starts at token i * block_size, so inputs (w[:-1]) never overlap and every token
    after the first is a target exactly once. With `max_windows`, that many windows evenly
    spaced over the split (always the same ones).
    """
    tokens = shards.tokens(split)
    _check_block_size(block_size, tokens.size, split)
    num_windows = (tokens.size - 1) // block_size
    chosen = np.arange(num_windows)
    if max_windows is not None:
        check_int("max_windows", max_windows, 1)
        if max_windows < num_windows:
            chosen = np.linspace(0, num_windows - 1, max_windows).round().astype(np.int64)
    positions = chosen[:, None] * block_size + np.arange(block_size + 1)  # (n, block + 1)
    return np.asarray(tokens[positions], dtype=np.int32)


__all__ = ["train_iterator", "validation_windows"]
