"""The standalone verifier carries its own RFC 8785 and Merkle code: same answers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor import evidence_verify
from auditor.evidence import merkle
from auditor.evidence.canonical import canonical_bytes

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=15,
)


@given(_values)
def test_the_verifiers_jcs_is_the_packages(value: Any) -> None:
    assert evidence_verify.jcs(value) == canonical_bytes(value)


@given(st.integers(1, 80), st.data())
def test_the_verifiers_inclusion_check_is_the_packages(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    leaves = [evidence_verify.leaf_hash(i.to_bytes(2, "big")) for i in range(size)]
    path = merkle.inclusion_proof(index, leaves)
    root = evidence_verify.root_from_inclusion(index, size, leaves[index], path)
    assert root == merkle.root_of(leaves)
    assert root == merkle.root_from_inclusion(index, size, leaves[index], path)


def test_the_verifier_imports_nothing_but_stdlib_and_cryptography() -> None:
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(evidence_verify.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


@given(st.integers(1, 80), st.data())
def test_the_verifiers_remembering_tree_accepts_every_true_proof_and_no_false_one(
    size: int, data: st.DataObject
) -> None:
    leaves = [evidence_verify.leaf_hash(i.to_bytes(2, "big")) for i in range(size)]
    tree = evidence_verify.Tree(size, merkle.root_of(leaves))
    order = data.draw(st.permutations(range(size)))
    for index in order:
        tree.check(index, leaves[index], merkle.inclusion_proof(index, leaves))
    # after every node is remembered, a forged leaf or a leaf moved elsewhere still fails
    victim = data.draw(st.integers(0, size - 1))
    forged = evidence_verify.leaf_hash(b"forged")
    with pytest.raises(evidence_verify.Failed):
        tree.check(victim, forged, merkle.inclusion_proof(victim, leaves))
    if size > 1:
        other = (victim + 1) % size
        with pytest.raises(evidence_verify.Failed):
            tree.check(other, leaves[victim], merkle.inclusion_proof(victim, leaves))


def test_a_fresh_tree_refuses_a_wrong_path() -> None:
    leaves = [evidence_verify.leaf_hash(bytes([i])) for i in range(11)]
    tree = evidence_verify.Tree(11, merkle.root_of(leaves))
    path = merkle.inclusion_proof(6, leaves)
    path[1] = bytes(32)
    with pytest.raises(evidence_verify.Failed, match="another root"):
        tree.check(6, leaves[6], path)
