"""Where a proof's hashes come from: stored full subtrees at every fourth level ("tiles").

Level 0 is the record's leaf hashes (leaf i = position i + 1). Levels 4, 8, 12... hold the
hash of every full aligned subtree of 16, 256, 4096... leaves, written when a checkpoint is
made (``extend``), so stored node (level, index) covers leaves [index << level,
(index + 1) << level). A full subtree at an odd level L is folded from at most 8 stored nodes
at level L - L % 4, which all lie in one aligned group of 16; a proof needs at most about
log2(n) such subtrees, so it is a bounded number of reads whatever the record's size.
``TreeView`` reads whole groups of 16, once each, and can fetch the groups a batch of proofs
needs in one query per stored level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from auditor.evidence import merkle

TILE_STEP = 4
GROUP = 1 << TILE_STEP
_CHUNK = 4096  # groups read at once by extend


class TileStore(Protocol):
    def read_groups(self, level: int, groups: Iterable[int]) -> dict[int, list[bytes]]:
        """The stored nodes of each group (nodes [g * 16, g * 16 + 16) at level, a multiple
        of 4; level 0 = leaf hashes). A group at the stored edge may be short."""
        ...

    def stored_width(self, level: int) -> int:
        """How many nodes are stored at level (for level 0: leaves in the record)."""
        ...

    def write(self, level: int, first: int, hashes: Sequence[bytes]) -> None:
        """Store nodes first, first + 1, ... at level (a multiple of 4, >= 4)."""
        ...


class MemoryTileStore:
    """A TileStore in lists, for unit tests and for a verifier holding every leaf."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: dict[int, list[bytes]] = {0: list(leaves)}

    def read_groups(self, level: int, groups: Iterable[int]) -> dict[int, list[bytes]]:
        nodes = self.levels.get(level, [])
        return {g: nodes[g * GROUP : (g + 1) * GROUP] for g in groups}

    def stored_width(self, level: int) -> int:
        return len(self.levels.get(level, []))

    def write(self, level: int, first: int, hashes: Sequence[bytes]) -> None:
        if level <= 0 or level % TILE_STEP:
            raise ValueError(f"tiles are stored at levels 4, 8, 12..., not {level}")
        nodes = self.levels.setdefault(level, [])
        if first != len(nodes):
            raise ValueError(f"level {level} holds {len(nodes)} nodes, cannot write at {first}")
        nodes.extend(hashes)


class MissingTile(LookupError):
    """A node a proof needs is not stored (no checkpoint has covered it yet)."""


class TreeView:
    """The tree of the first size leaves as the store holds it: roots and proofs."""

    def __init__(self, store: TileStore, size: int) -> None:
        self.store = store
        self.size = size
        self._groups: dict[tuple[int, int], list[bytes]] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}

    # reading
    def node(self, level: int, index: int) -> bytes:
        """Hash of the full subtree (level, index), which must lie within size. Memoised,
        and built from its two halves, so proofs of neighbouring rows share the work."""
        key = (level, index)
        found = self._nodes.get(key)
        if found is not None:
            return found
        if (index + 1) << level > self.size:
            raise ValueError(f"subtree ({level}, {index}) is not full in a tree of {self.size}")
        if level % TILE_STEP:
            found = merkle.node_hash(
                self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1)
            )
        else:
            group, offset = divmod(index, GROUP)
            nodes = self._group(level, group)
            if offset >= len(nodes):
                raise MissingTile(f"level {level} node {index} is not stored")
            found = nodes[offset]
        self._nodes[key] = found
        return found

    def _group(self, level: int, group: int) -> list[bytes]:
        key = (level, group)
        cached = self._groups.get(key)
        if cached is None:
            cached = self.store.read_groups(level, [group]).get(group, [])
            self._groups[key] = cached
        return cached

    def prefetch(self, wanted: Iterable[tuple[int, int]]) -> None:
        """Read the groups behind these subtrees (level, index), one query per stored level."""
        by_level: dict[int, set[int]] = {}
        for level, index in wanted:
            stored = level - level % TILE_STEP
            group = (index << (level - stored)) // GROUP
            if (stored, group) not in self._groups:
                by_level.setdefault(stored, set()).add(group)
        for stored, groups in by_level.items():
            found = self.store.read_groups(stored, sorted(groups))
            for group in groups:
                self._groups[(stored, group)] = found.get(group, [])

    def fold(self, subtrees: Sequence[tuple[int, int]]) -> bytes:
        return merkle.fold_right([self.node(level, index) for level, index in subtrees])

    def root(self) -> bytes:
        if not self.size:
            return merkle.EMPTY_ROOT
        parts = merkle.decompose(0, self.size)
        self.prefetch(parts)
        return self.fold(parts)

    def inclusion_proof(self, index: int) -> list[bytes]:
        return self.inclusion_proofs([index])[0]

    def inclusion_proofs(self, indexes: Sequence[int]) -> list[list[bytes]]:
        """Audit paths (RFC 9162 2.1.3.1, bottom up) for many leaves."""
        return [
            [joined[i : i + merkle.HASH_SIZE] for i in range(0, len(joined), merkle.HASH_SIZE)]
            for joined in self.joined_paths(indexes)
        ]

    def joined_paths(self, indexes: Sequence[int]) -> list[bytes]:
        """Audit paths as concatenated hashes. First the groups every path needs are fetched,
        one query per stored level: the siblings of leaf i's ancestors at levels t..t+3 all
        lie in group (i >> t) >> 4 of stored level t. The part of a path above level 4
        depends only on i >> 4, so the leaves of one group of 16 share it."""
        size = self.size
        depth = (size - 1).bit_length()
        for stored in range(0, depth, TILE_STEP):
            groups = {(index >> stored) >> TILE_STEP for index in indexes}
            groups -= {g for (level, g) in self._groups if level == stored}
            if groups:
                found = self.store.read_groups(stored, sorted(groups))
                for group in groups:
                    self._groups[(stored, group)] = found.get(group, [])
        low = min(TILE_STEP, depth)
        upper: dict[int, bytes] = {}
        lower: dict[int, list[bytes]] = {}
        paths = []
        for index in indexes:
            if not 0 <= index < size:
                raise ValueError(f"leaf index {index} is not in a tree of {size}")
            group = index >> low
            above = upper.get(group)
            if above is None:
                above = b"".join(self._path(index, low, depth))
                upper[group] = above
            if low == TILE_STEP and (group + 1) << TILE_STEP <= size:
                below = lower.get(group)
                if below is None:
                    below = lower[group] = self._group_paths(group)
                paths.append(below[index & (GROUP - 1)] + above)
            else:  # a tree of less than 16 leaves, or the ragged last group
                paths.append(b"".join(self._path(index, 0, low)) + above)
        return paths

    def _group_paths(self, group: int) -> list[bytes]:
        """The levels 0..3 of the paths of the 16 leaves of a full group, built from its
        leaves with 15 hashes."""
        rows = [self._group(0, group)]
        if len(rows[0]) != GROUP:
            raise MissingTile(f"leaf group {group} is incomplete")
        while len(rows[-1]) > 2:
            below = rows[-1]
            rows.append([merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)])
        return [
            b"".join(row[(offset >> level) ^ 1] for level, row in enumerate(rows))
            for offset in range(GROUP)
        ]

    def _path(self, index: int, first: int, stop: int) -> list[bytes]:
        """The audit path's elements for levels first..stop-1."""
        size = self.size
        path = []
        for level in range(first, stop):
            sibling = (index >> level) ^ 1
            if sibling & 1 == 0:  # to the left: always full
                path.append(self._nodes.get((level, sibling)) or self.node(level, sibling))
                continue
            start = sibling << level
            if start >= size:
                continue  # no right sibling: the node is carried up unchanged
            if start + (1 << level) <= size:
                path.append(self.node(level, sibling))
            else:  # the ragged right edge: the same for every leaf left of it
                key = (-level - 1, sibling)  # apart from the full nodes' keys
                edge = self._nodes.get(key)
                if edge is None:
                    edge = self.fold(merkle.decompose(start, size))
                    self._nodes[key] = edge
                path.append(edge)
        return path

    def consistency_proof(self, old_size: int) -> list[bytes]:
        path = merkle.consistency_path_nodes(old_size, self.size)
        self.prefetch(sub for parts in path for sub in parts)
        return [self.fold(parts) for parts in path]


def extend(store: TileStore, size: int) -> int:
    """Store every full tile node within the first size leaves not stored yet; returns how
    many nodes were written. Reads only the nodes below the new ones."""
    written = 0
    level = TILE_STEP
    while (1 << level) <= size:
        have = store.stored_width(level)
        want = size >> level
        below = level - TILE_STEP
        # one group of 16 below makes one node here; chunked so a first checkpoint over a
        # long record does not hold it all in memory
        for first in range(have, want, _CHUNK):
            last = min(want, first + _CHUNK)
            children = store.read_groups(below, range(first, last))
            hashes = []
            for group in range(first, last):
                row = children.get(group, [])
                if len(row) != GROUP:
                    raise MissingTile(f"level {below} group {group} is incomplete")
                while len(row) > 1:
                    row = [merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
                hashes.append(row[0])
            store.write(level, first, hashes)
            written += len(hashes)
        level += TILE_STEP
    return written
