"""Process set-up for XLA on CPU: glibc allocator settings that stop per-step page faults.

XLA's CPU runtime allocates every execution's temporary buffers afresh. With glibc's defaults,
blocks above 32 MB come from `mmap` and go back to the kernel on `free`, so each training step
faults its whole working set in again, 4 KB at a time, which is costly on a virtual machine
(the measured fault counts and their share of a step: docs/performance.md).

`ALLOCATOR_TUNABLES` keep freed memory in the heap for reuse (`mmap_max=0`, no trimming) and
back the heap with transparent huge pages where the kernel offers them on request (`hugetlb=1`;
Linux THP mode `madvise`): after the first step, a few thousand faults per step. The price is
that the process keeps its peak heap until it exits, which a training or profiling run reaches
anyway.

glibc reads `GLIBC_TUNABLES` only at process start, so `reexec_with_tuned_allocator` restarts
the current command with it set; the `hwgpt` command and the benchmark scripts call it first
thing. A `GLIBC_TUNABLES` the user set is kept as it is, and `HWGPT_SYSTEM_MALLOC=1` turns the
restart off. Other C libraries and operating systems ignore the variable, so nothing happens
there.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

ALLOCATOR_TUNABLES = ":".join((
    "glibc.malloc.hugetlb=1",  # madvise(MADV_HUGEPAGE) on the heap: 2 MB faults, fewer TLB misses
    "glibc.malloc.mmap_max=0",  # large blocks from the heap, reused after free ...
    "glibc.malloc.trim_threshold=1099511627776",  # ... and never handed back (1 TiB)
))
OPT_OUT_VARIABLE = "HWGPT_SYSTEM_MALLOC"


def tuned_environ(environ: Mapping[str, str], system: str | None = None,
                  libc: str | None = None) -> dict[str, str] | None:
    """The environment to restart with, or None where no restart is wanted: not Linux with
    glibc, `GLIBC_TUNABLES` already set (by the user, or by an earlier restart), or the opt-out
    variable set to a non-empty value other than 0."""
    system = platform.system() if system is None else system
    libc = platform.libc_ver()[0] if libc is None else libc
    if system != "Linux" or libc != "glibc" or "GLIBC_TUNABLES" in environ:
        return None
    if environ.get(OPT_OUT_VARIABLE, "0") not in ("", "0"):
        return None
    return {**environ, "GLIBC_TUNABLES": ALLOCATOR_TUNABLES}


def reexec_with_tuned_allocator() -> None:
    """Restart this Python process with `ALLOCATOR_TUNABLES` (see the module docstring); returns
    only where no restart is wanted. Call it before any work: the process is replaced."""
    env = tuned_environ(os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
