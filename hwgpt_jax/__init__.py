"""hwgpt-jax: HW-GPT-Bench (arXiv 2405.10299) in JAX: supernet, profiling, surrogates, search.

`from hwgpt_jax import Benchmark` is the query API; it is imported lazily so that light modules
(`hwgpt_jax.space.arch`) do not pull in the surrogate stack.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Benchmark", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Benchmark":
        from hwgpt_jax.surrogates.benchmark import Benchmark

        return Benchmark
    raise AttributeError(f"module 'hwgpt_jax' has no attribute {name!r}")
