import sys

from hwgpt_jax.cli import main

sys.exit(main())
