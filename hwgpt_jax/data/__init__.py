"""Corpus sources (`sources`), the GPT-2 tokenizer (`tokenizer`), token shards (`shards`) and
the grain training and validation windows (`windows`)."""
