"""Make glibc's malloc keep freed memory, as a caching allocator would, for CPU training.

On CPUs PyTorch takes tensor memory from plain ``malloc``. glibc serves every block above
its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and hands it back to the kernel on
``free``, and trims the top of its heap above 128 KiB, so each training step page-faults
and zero-fills its large activations and gradients anew (a 4 x 1024 x 8192 logits tensor
alone is 128 MiB). :func:`keep_freed_memory` turns both off: allocations come from the heap
and freed blocks stay in the process for the next step (BENCHMARKS.md, LM training, has the
measured gain). On GPUs PyTorch's CUDA caching allocator already does this.

The price is that memory freed after a peak is not returned to the system until the
process ends, which suits a training process and not a long-running streaming job.
Nothing is changed where the user chose otherwise: when any ``MALLOC_*`` variable or
``GLIBC_TUNABLES`` is set, when another allocator is preloaded (jemalloc, tcmalloc,
mimalloc: ``LD_PRELOAD``), or when the C library is not glibc (macOS, musl).

Follows: the caching allocators of PyTorch (CUDA) and of jemalloc / tcmalloc, which
PyTorch's CPU performance guides recommend preloading.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap top
TOP_PAD = 64 * 2**20  # grow the heap 64 MiB at a time (untouched pages cost nothing)

_applied = False


def user_chose_allocator() -> str | None:
    """Why the user's own allocator settings win, or None."""
    tuned = sorted(k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")
    if tuned:
        return f"{', '.join(tuned)} set"
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return f"{name} preloaded"
    return None


def keep_freed_memory() -> bool:
    """Tune glibc malloc for a training process (once); True when it is now tuned."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_chose_allocator():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    _applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
    return _applied
