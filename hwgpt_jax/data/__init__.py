"""Corpora, the GPT-2 tokenizer, token shards and the grain training loader."""
