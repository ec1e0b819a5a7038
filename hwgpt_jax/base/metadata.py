"""The provenance recorded with every file the library writes: package versions and the host.

One writer, so that a table, a checkpoint, an export and a surrogate folder record the same
fields under the same names.
"""

from __future__ import annotations

import functools
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("hwgpt-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain",
            "tiktoken", "evosax")


@functools.cache
def versions() -> dict[str, str]:
    """Python's and every key package's version ("unknown" when not installed)."""
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def provenance(**extra: Any) -> dict[str, Any]:
    """Creation time (UTC), versions and host, plus `extra` fields."""
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": versions(),
            "host": platform.node(), **extra}


__all__ = ["PACKAGES", "provenance", "versions"]
