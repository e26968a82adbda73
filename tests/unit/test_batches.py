"""Record format 2's hashes (auditor/evidence/batches.py) against the RFC 6962 tree of
auditor/evidence/merkle.py, the worked example of docs/evidence.md, and the offline
verifier's two-step check."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor import evidence_verify
from auditor.evidence import batches, merkle

hashes = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@given(hashes)
def test_the_batch_root_is_the_rfc_6962_root_over_the_leaf_hashes(leaves: list[bytes]) -> None:
    assert batches.tree_root(leaves) == merkle.root_of(leaves)
    assert batches.leaf_hash_of(leaves) == hashlib.sha256(b"\x02" + merkle.root_of(leaves)).digest()
    assert batches.leaf_hash_of_joined(b"".join(leaves)) == batches.leaf_hash_of(leaves)


@given(hashes)
def test_every_path_in_a_batch_is_the_rfc_9162_audit_path(leaves: list[bytes]) -> None:
    root = merkle.root_of(leaves)
    for index, joined in enumerate(batches.joined_paths(leaves)):
        assert joined == b"".join(merkle.inclusion_proof(index, leaves))
        path = [joined[i : i + 32] for i in range(0, len(joined), 32)]
        # the offline verifier's own RFC 9162 code agrees
        assert evidence_verify.root_from_inclusion(index, len(leaves), leaves[index], path) == root


def test_the_worked_example_of_the_documentation() -> None:
    a = hashlib.sha256(b"\x00a").digest()
    b = hashlib.sha256(b"\x00b").digest()
    assert batches.leaf_hash_of([a, b]).hex() == (
        "892be857dde5cbf1b5959eb6e1ef1bf83f236616e6972dd5434f9791d459259c"
    )


def test_leaves_that_are_not_whole_hashes_are_refused() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        batches.split(bytes(33))
    with pytest.raises(ValueError, match="at least one"):
        batches.tree_root([])
