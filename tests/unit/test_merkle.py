"""RFC 6962 Merkle tree: roots, inclusion and consistency proofs, frontier, tile store."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.evidence import merkle, tiles
from auditor.evidence.canonical import leaf_hash

# The eight leaves of the Certificate Transparency test vectors (RFC 6962 reference code).
_DATA = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
_DATA.append("606162636465666768696a6b6c6d6e6f")
_LEAVES = [leaf_hash(bytes.fromhex(d)) for d in _DATA]
_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("size", sorted(_ROOTS))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    assert merkle.root_of(_LEAVES[:size]).hex() == _ROOTS[size]
    frontier = merkle.Frontier()
    frontier.extend(_LEAVES[:size])
    assert frontier.root().hex() == _ROOTS[size]


def test_a_tree_of_three_and_of_five_computed_by_hand() -> None:
    a, b, c, d, e = _LEAVES[:5]
    assert merkle.root_of([a, b, c]) == _h(b"\x01", _h(b"\x01", a, b), c)
    four = _h(b"\x01", _h(b"\x01", a, b), _h(b"\x01", c, d))
    assert merkle.root_of([a, b, c, d, e]) == _h(b"\x01", four, e)
    assert merkle.inclusion_proof(2, [a, b, c]) == [_h(b"\x01", a, b)]
    assert merkle.inclusion_proof(4, [a, b, c, d, e]) == [four]
    assert merkle.inclusion_proof(0, [a, b, c, d, e]) == [b, _h(b"\x01", c, d), e]
    assert merkle.consistency_proof(3, [a, b, c, d, e]) == [c, d, _h(b"\x01", a, b), e]
    assert merkle.root_of([]) == hashlib.sha256(b"").digest()


@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_inclusion_proof_verifies_and_matches_the_tile_store(case: tuple[int, int]) -> None:
    size, index = case
    leaves = _leaves(size)
    root = merkle.root_of(leaves)
    proof = merkle.inclusion_proof(index, leaves)
    merkle.verify_inclusion(index, size, leaves[index], proof, root)
    store = tiles.MemoryTileStore(leaves)
    tiles.extend(store, size)
    view = tiles.TreeView(store, size)
    assert view.root() == root
    assert view.inclusion_proof(index) == proof


@given(st.integers(1, 40), st.data())
def test_any_changed_hash_fails_an_inclusion_proof(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    leaves = _leaves(size)
    root = merkle.root_of(leaves)
    proof = merkle.inclusion_proof(index, leaves)
    flip = data.draw(st.integers(0, len(proof) + 1))
    leaf = leaves[index]
    if flip == len(proof):
        leaf = _flip(leaf)
    elif flip == len(proof) + 1:
        root = _flip(root)
    else:
        proof[flip] = _flip(proof[flip])
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(index, size, leaf, proof, root)


@given(st.integers(2, 40), st.data())
def test_a_proof_for_another_index_fails(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    leaves = _leaves(size)
    root = merkle.root_of(leaves)
    proof = merkle.inclusion_proof(index, leaves)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(other, size, leaves[index], proof, root)


@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_every_consistency_proof_verifies_and_matches_the_tile_store(
    case: tuple[int, int],
) -> None:
    old, size = case
    leaves = _leaves(size)
    old_root, root = merkle.root_of(leaves[:old]), merkle.root_of(leaves)
    proof = merkle.consistency_proof(old, leaves)
    merkle.verify_consistency(old, size, old_root, root, proof)
    store = tiles.MemoryTileStore(leaves)
    tiles.extend(store, size)
    assert tiles.TreeView(store, size).consistency_proof(old) == proof
    if proof:
        proof[0] = _flip(proof[0])
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(old, size, old_root, root, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            old, size, _flip(old_root), root, merkle.consistency_proof(old, leaves)
        )


def test_a_rewritten_history_has_no_consistency_proof() -> None:
    leaves = _leaves(20)
    forged = [*leaves[:7], leaf_hash(b"forged"), *leaves[8:]]
    proof = merkle.consistency_proof(10, forged)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            10, 20, merkle.root_of(leaves[:10]), merkle.root_of(forged), proof
        )


@given(st.lists(st.integers(0, 300), min_size=1, max_size=6))
def test_frontier_root_equals_the_definition_at_every_size(steps: list[int]) -> None:
    leaves = _leaves(sum(steps))
    frontier = merkle.Frontier()
    done = 0
    for step in steps:
        frontier.extend(leaves[done : done + step])
        done += step
        assert frontier.size == done
        assert frontier.root() == merkle.root_of(leaves[:done])


def test_tiles_grow_incrementally_and_proofs_read_bounded_groups() -> None:
    leaves = _leaves(5000)
    store = _CountingStore(leaves[:1000])
    tiles.extend(store, 1000)
    store.levels[0].extend(leaves[1000:])
    written = tiles.extend(store, 5000)
    assert written == (5000 // 16 - 1000 // 16) + (5000 // 256 - 1000 // 256) + 1
    assert store.stored_width(4) == 5000 // 16
    assert store.stored_width(8) == 5000 // 256
    assert store.stored_width(12) == 1
    store.reads = 0
    view = tiles.TreeView(store, 4999)
    assert view.inclusion_proof(1234) == merkle.inclusion_proof(1234, leaves[:4999])
    # ceil(13 levels / 4) groups for the left siblings plus the right edge's few
    assert store.reads <= 12
    assert view.root() == merkle.root_of(leaves[:4999])


def test_a_node_beyond_the_stored_tiles_is_reported_missing() -> None:
    leaves = _leaves(40)
    store = tiles.MemoryTileStore(leaves)  # no tiles written
    with pytest.raises(tiles.MissingTile):
        tiles.TreeView(store, 40).node(4, 0)


class _CountingStore(tiles.MemoryTileStore):
    reads = 0

    def read_groups(self, level: int, groups: object) -> dict[int, list[bytes]]:
        found = super().read_groups(level, groups)  # type: ignore[arg-type]
        self.reads += len(found)
        return found


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]
