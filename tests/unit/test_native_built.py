"""The C leaf encoder is built wherever a C compiler is: no run may silently test or measure
only the Python path (a module-level skip elsewhere would hide exactly that)."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from auditor.evidence import native
from auditor.store import writer


def _compiler() -> str | None:
    """The compiler setuptools would call (sysconfig's CC, as the build does)."""
    command = (sysconfig.get_config_var("CC") or "cc").split()
    return shutil.which(command[0]) if command else None


def test_the_extension_is_built_where_a_compiler_is() -> None:
    if native.SWITCHED_OFF:
        pytest.skip("AUDITOR_NATIVE=0: the C encoder is switched off on purpose")
    if _compiler() is None:
        pytest.skip("no C compiler here: the install used the Python encoder (README)")
    assert native.leafc is not None, f"the C leaf encoder is {native.UNAVAILABLE}"
    assert writer._EVENT_NATIVE is not None


def test_verifys_fast_path_is_built_where_a_compiler_and_openssl_are() -> None:
    """auditor/evidence/_leafcopy.c also needs OpenSSL's headers (libssl-dev)."""
    from auditor.store import leaf_copy

    if native.SWITCHED_OFF:
        pytest.skip("AUDITOR_NATIVE=0: the C paths are switched off on purpose")
    if _compiler() is None or not Path("/usr/include/openssl/evp.h").exists():
        pytest.skip("no C compiler or no OpenSSL headers: verify reads leaves the leaf_sql way")
    assert leaf_copy.hash_copy is not None
