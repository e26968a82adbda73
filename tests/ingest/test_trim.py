"""Freed heap memory goes back to the OS (auditor/ingest/trim.py)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from auditor.ingest import trim


def _rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not trim.available(), reason="not glibc: malloc_trim does not exist")
def test_memory_freed_in_the_middle_of_the_heap_is_given_back() -> None:
    """Many small blocks freed except every 64th, which pins the heap's top: glibc keeps
    the freed pages until malloc_trim gives them back."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4000) for _ in range(20_000)]  # about 80 MB below mmap's threshold
    for block in blocks:
        ctypes.memset(block, 1, 4000)  # touched, so resident
    for i, block in enumerate(blocks):
        if i % 64:
            libc.free(block)
    before = _rss_anon_kb()
    assert trim.release()
    after = _rss_anon_kb()
    for block in blocks[::64]:
        libc.free(block)
    assert before - after > 50_000, (before, after)  # most of the 79 MB freed came back
