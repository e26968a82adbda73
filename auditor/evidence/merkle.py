"""RFC 6962 / RFC 9162 Merkle tree over the record's leaf hashes (leaf i = position i + 1).

node = SHA-256(0x01 || left || right); a tree of n leaves splits at k, the largest power of
two below n, so its left part is always a full subtree. The empty tree's root is SHA-256("").
Inclusion and consistency proofs and their verification follow RFC 9162 sections 2.1.3 and
2.1.4 (the verification algorithms are transcribed from there); ``Frontier`` appends leaves
keeping only the right-hand full subtrees, so a root over millions of leaves needs O(log n)
memory. Everything here works on leaf *hashes* (SHA-256(0x00 || leaf bytes)), which the
record already stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not prove what it claims."""


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """k: the largest power of two strictly below size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of a list of leaf hashes, by the definition (for tests and small trees)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def fold_right(subtrees: Sequence[bytes]) -> bytes:
    """Root of consecutive subtrees whose sizes are decreasing powers of two (the binary
    decomposition of a range): RFC 6962's tree joins them from the right."""
    result = subtrees[-1]
    for left in reversed(subtrees[:-1]):
        result = node_hash(left, result)
    return result


def decompose(start: int, end: int) -> list[tuple[int, int]]:
    """The full aligned subtrees (level, index) covering leaves [start, end), left to right,
    when start is aligned to the largest of them (as the right part of any RFC 6962 split is).
    """
    parts = []
    while start < end:
        level = (end - start).bit_length() - 1
        # the subtree must also be aligned at start
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        parts.append((level, start >> level))
        start += 1 << level
    return parts


# Inclusion -------------------------------------------------------------------------------


def inclusion_path_nodes(index: int, size: int) -> list[list[tuple[int, int]]]:
    """For leaf index in a tree of size leaves: the audit path, bottom up, each element given
    as the full subtrees (level, index) whose fold_right is that element's hash."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size}")
    path = []
    level = 0
    last = size - 1
    while last >> level:
        node = index >> level
        sibling = node ^ 1
        start = sibling << level
        if sibling < node:
            path.append([(level, sibling)])
        elif start < size:
            path.append(decompose(start, min(start + (1 << level), size)))
        level += 1
    return path


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) by the definition (RFC 9162 2.1.3.1); for tests and small trees."""
    size = len(leaves)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size}")
    if size == 1:
        return []
    k = split_point(size)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root_of(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root_of(leaves[:k])]


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root that leaf at index with this audit path implies (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size}")
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ProofError("the audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the audit path is shorter than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError(f"leaf {index} is not in the tree of {size} with that root")


# Consistency -----------------------------------------------------------------------------


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) by the definition (RFC 9162 2.1.4.1)."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"no consistency proof from {old_size} to {len(leaves)}")
    return _subproof(old_size, leaves, complete=True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_of(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


def consistency_path_nodes(old_size: int, size: int) -> list[list[tuple[int, int]]]:
    """The consistency proof from old_size to size, each element as full subtrees
    (level, index) to fold_right, so a tile store can supply it."""
    if not 0 < old_size <= size:
        raise ValueError(f"no consistency proof from {old_size} to {size}")
    out: list[list[tuple[int, int]]] = []
    _subproof_nodes(old_size, 0, size, True, out)
    return out


def _subproof_nodes(
    m: int, start: int, end: int, complete: bool, out: list[list[tuple[int, int]]]
) -> None:
    n = end - start
    if m == n:
        if not complete:
            out.append(decompose(start, end))
        return
    k = split_point(n)
    if m <= k:
        _subproof_nodes(m, start, start + k, complete, out)
        out.append(decompose(start + k, end))
    else:
        _subproof_nodes(m - k, start + k, end, False, out)
        out.append(decompose(start, start + k))


def verify_consistency(
    old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: the tree of size with root extends the tree of old_size."""
    if not 0 < old_size <= size:
        raise ProofError(f"no consistency from {old_size} to {size}")
    if old_size == size:
        if proof or old_root != root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != root:
        raise ProofError(f"the tree of {size} does not extend the tree of {old_size}")


# Frontier --------------------------------------------------------------------------------


class Frontier:
    """The right-hand full subtrees of a growing tree: append leaves, read the root at any
    size, in O(log n) memory. subtrees[i] = (level, hash), levels strictly decreasing."""

    __slots__ = ("size", "subtrees")

    def __init__(self, size: int = 0, subtrees: Iterable[tuple[int, bytes]] = ()) -> None:
        self.size = size
        self.subtrees = list(subtrees)

    def append(self, leaf: bytes) -> None:
        level, current = 0, leaf
        subtrees = self.subtrees
        while subtrees and subtrees[-1][0] == level:
            current = node_hash(subtrees.pop()[1], current)
            level += 1
        subtrees.append((level, current))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.subtrees:
            return EMPTY_ROOT
        return fold_right([hash_ for _, hash_ in self.subtrees])
