"""The glibc malloc tuning for CPU training: freed memory stays, the user's choice wins."""

import json
import os
import platform
import subprocess
import sys

import pytest

from reelm.core.cpu_allocator import user_chose_allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

# Allocate and touch 256 MiB, free it, and report resident memory after the free.
CHILD = """
import json, sys
import numpy as np
from reelm.core.cpu_allocator import keep_freed_memory

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

tuned = keep_freed_memory() if sys.argv[1] == "tune" else False
before = rss_mib()
block = np.ones(256 * 2**20, dtype=np.uint8)
del block
print(json.dumps({"tuned": tuned, "kept_mib": rss_mib() - before}))
"""


def _run(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_tuned_malloc_keeps_freed_memory():
    default, tuned = _run("default"), _run("tune")
    assert default["kept_mib"] < 32  # glibc's default unmaps the block on free
    assert tuned["tuned"] and tuned["kept_mib"] > 200  # tuned, the pages stay for the next step


def test_user_allocator_settings_win(monkeypatch):
    assert _run("tune", MALLOC_ARENA_MAX="2") == {"tuned": False, "kept_mib": pytest.approx(0, abs=32)}
    for key in [k for k in os.environ if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")]:
        monkeypatch.delenv(key)
    assert user_chose_allocator() is None
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert user_chose_allocator() == "jemalloc preloaded"
