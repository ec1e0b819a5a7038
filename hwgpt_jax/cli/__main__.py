from hwgpt_jax.cli import entry

entry()
