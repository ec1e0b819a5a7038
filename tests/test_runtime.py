"""The process restart with glibc allocator settings (`hwgpt_jax.cli.runtime`)."""

import os
import platform
import subprocess
import sys

import pytest

from hwgpt_jax.cli.runtime import ALLOCATOR_TUNABLES, OPT_OUT_VARIABLE, tuned_environ

GLIBC_LINUX = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Touches a 64 MB block, frees it, touches another; prints the GLIBC_TUNABLES it ran with and
# the minor page faults of the second block.
CHILD = """
import os, resource
from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
reexec_with_tuned_allocator()
import numpy as np
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = np.ones(1 << 24, np.float32); del block
before = faults(); block = np.ones(1 << 24, np.float32); second = faults() - before
print(os.environ.get("GLIBC_TUNABLES", ""), second)
"""


def run_child(**env: str) -> tuple[str, int]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("GLIBC_TUNABLES", OPT_OUT_VARIABLE)}
    out = subprocess.run([sys.executable, "-c", CHILD], env={**base, **env}, text=True,
                         capture_output=True, timeout=120, check=True).stdout.split()
    return (out[0] if len(out) == 2 else ""), int(out[-1])


def test_restart_wanted_only_on_glibc_linux_without_user_settings():
    env = {"PATH": "/bin"}
    assert tuned_environ(env, "Linux", "glibc") == {"PATH": "/bin",
                                                    "GLIBC_TUNABLES": ALLOCATOR_TUNABLES}
    assert tuned_environ(env, "Darwin", "") is None
    assert tuned_environ(env, "Linux", "musl") is None
    assert tuned_environ({**env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                         "Linux", "glibc") is None
    assert tuned_environ({**env, OPT_OUT_VARIABLE: "1"}, "Linux", "glibc") is None
    assert tuned_environ({**env, OPT_OUT_VARIABLE: "0"}, "Linux", "glibc") is not None


@pytest.mark.skipif(not GLIBC_LINUX, reason="the allocator settings apply to glibc on Linux")
def test_restarted_process_reuses_freed_memory_without_page_faults():
    tunables, tuned_faults = run_child()
    assert tunables == ALLOCATOR_TUNABLES
    assert tuned_faults < 8, f"{tuned_faults} page faults for a reused 64 MB block"
    tunables, system_faults = run_child(**{OPT_OUT_VARIABLE: "1"})
    assert tunables == ""
    assert system_faults >= 16, "glibc's defaults should fault a fresh 64 MB block in"
