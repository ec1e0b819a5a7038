"""The offline GPT-2 tokenizer: ids, special token, round trip, hash, no network."""

import hashlib
import subprocess
import sys
from importlib import resources

from hwgpt_jax.data import tokenizer


def test_known_gpt2_ids():
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.encode("The quick brown fox") == [464, 2068, 7586, 21831]


def test_end_of_text_and_vocab():
    encoding = tokenizer.gpt2_encoding()
    assert encoding.eot_token == tokenizer.EOT_ID == 50256
    assert encoding.n_vocab == tokenizer.VOCAB_SIZE == 50257
    assert encoding.encode("<|endoftext|>", allowed_special="all") == [50256]
    # User text that spells the special token must not become the control token.
    assert 50256 not in tokenizer.encode("a <|endoftext|> b")


def test_decode_round_trip():
    text = "Quarterly profits jumped 76% to $1.13bn (£600m).\n\n  Naïve café — 東京 🚀"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_hash_is_sha256_of_shipped_ranks():
    data = (resources.files("hwgpt_jax") / "assets" / "gpt2.tiktoken").read_bytes()
    assert tokenizer.tokenizer_hash() == hashlib.sha256(data).hexdigest() == tokenizer.RANKS_SHA256
    assert (resources.files("hwgpt_jax") / "assets" / "gpt2.tiktoken.LICENSE").is_file()


def test_encoding_is_cached():
    assert tokenizer.gpt2_encoding() is tokenizer.gpt2_encoding()


def test_builds_with_network_disabled():
    # A fresh interpreter where opening any socket fails: the encoding must still build.
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network disabled in this test')\n"
        "socket.socket = refuse\n"
        "socket.create_connection = refuse\n"
        "from hwgpt_jax.data import tokenizer\n"
        "print(tokenizer.encode('Hello world'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[15496, 995]"
