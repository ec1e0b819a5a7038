"""The GPT-2 byte-pair encoding, built offline from the ranks file shipped with the package.

tiktoken normally downloads `r50k_base.tiktoken` on first use; this project ships the same
file (from openai-whisper, MIT, see `assets/gpt2.tiktoken.LICENSE`) so that tokenization
never needs the network. The encoding equals tiktoken's `gpt2`: 50,257 ids, end-of-text 50256.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

import tiktoken

RANKS_FILE = "gpt2.tiktoken"
# The published sha256 of r50k_base.tiktoken; a mismatch means a corrupted install.
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257
# GPT-2's split pattern in tiktoken's faster, equivalent form (tiktoken_ext.openai_public).
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


def _ranks_bytes() -> bytes:
    return (resources.files("hwgpt_jax") / "assets" / RANKS_FILE).read_bytes()


@functools.cache
def tokenizer_hash() -> str:
    """sha256 (hex) of the BPE ranks file, recorded in manifests to pin the tokenization."""
    return hashlib.sha256(_ranks_bytes()).hexdigest()


def _parse_ranks(contents: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(contents.splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as err:
            raise ValueError(
                f"bad line {line_number} in {RANKS_FILE}: {line[:60]!r}; expected '<base64> <rank>'"
            ) from err
    return ranks


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 `tiktoken.Encoding` (cached: building it parses 50k ranks)."""
    contents = _ranks_bytes()
    digest = hashlib.sha256(contents).hexdigest()
    if digest != RANKS_SHA256:
        raise ValueError(
            f"{RANKS_FILE} has sha256 {digest}, expected {RANKS_SHA256}: reinstall hwgpt-jax"
        )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=_parse_ranks(contents),
        special_tokens={EOT_TOKEN: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


def encode(text: str) -> list[int]:
    """Token ids of `text`; special-token strings in it are encoded as ordinary text."""
    return gpt2_encoding().encode_ordinary(text)


def decode(ids: list[int]) -> str:
    """Text of token ids (invalid UTF-8 byte sequences are replaced, as in tiktoken)."""
    return gpt2_encoding().decode(ids)
