"""Record format 2 (docs/evidence.md, "Record format 2"): one record row per writer batch.

A batch row stands for the events with contiguous ids first .. first + n - 1. It holds their
leaf hashes concatenated in id order (``leaves``), and its own leaf hash, the one the chain
and the Merkle tree of the record take, is

    batch_leaf_hash = SHA-256(0x02 || MTH(leaf hashes of the batch))

with MTH the RFC 6962 / RFC 9162 Merkle tree hash (interior nodes SHA-256(0x01 || l || r)).
The 0x02 prefix keeps a batch apart from any RFC 6962 leaf (0x00) or node (0x01): no
format-1 leaf and no subtree can pose as a batch. An event's proof is then two audit paths:
the event's leaf within its batch's tree, then the batch's row in the record's tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# Where an event is sealed, for queries over `events AS e`: its own format-1 record row `r`,
# or else the format-2 batch row `b` whose id range holds it (its slot: e.id - b.source_id).
EVENT_PLACE_JOIN = (
    " LEFT JOIN record AS r ON r.source = 'event' AND r.source_id = e.id"
    " LEFT JOIN LATERAL (SELECT c.position, c.source_id, c.leaf_count, c.leaves"
    " FROM record AS c WHERE c.source = 'batch' AND c.source_id <= e.id"
    " ORDER BY c.source_id DESC LIMIT 1) AS b"
    " ON r.position IS NULL AND b.source_id + b.leaf_count > e.id"
)
EVENT_POSITION = "coalesce(r.position, b.position)"
EVENT_LEAF_HASH = (
    "coalesce(r.leaf_hash, substring(b.leaves FROM ((e.id - b.source_id) * 32 + 1)::int FOR 32))"
)

BATCH_PREFIX = b"\x02"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32


def split(leaves: bytes) -> list[bytes]:
    """Concatenated 32-byte hashes -> a list of them."""
    if len(leaves) % HASH_SIZE:
        raise ValueError("batch leaves are not a whole number of 32-byte hashes")
    return [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)]


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (at least one), bottom up: pairing each level left to right and
    carrying an unpaired last node up unchanged gives RFC 6962's tree, whose left subtrees
    are always full."""
    if not leaves:
        raise ValueError("a batch holds at least one leaf")
    sha256 = hashlib.sha256
    level = list(leaves)
    while len(level) > 1:
        paired = [
            sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def leaf_hash_of(leaves: Sequence[bytes]) -> bytes:
    """The record leaf hash of a batch of event leaf hashes."""
    return hashlib.sha256(BATCH_PREFIX + tree_root(leaves)).digest()


def leaf_hash_of_joined(leaves: bytes) -> bytes:
    return leaf_hash_of(split(leaves))


def joined_paths(leaves: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 audit path of every leaf of a batch's tree, each as its hashes joined
    (bottom up). Built from the tree's levels (as tree_root pairs them): the sibling at each
    level, none where the node is an unpaired last one carried up unchanged."""
    sha256 = hashlib.sha256
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        paired = [
            sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        levels.append(paired)
    # Per level, each leaf's sibling there (b"" where its node is carried up unpaired), built
    # a level at a time: a list comprehension per level instead of a loop per leaf.
    count = len(leaves)
    columns = []
    for depth, level in enumerate(levels[:-1]):
        width = len(level)
        siblings = [level[j ^ 1] if j ^ 1 < width else b"" for j in range(width)]
        columns.append([siblings[i >> depth] for i in range(count)])
    if not columns:
        return [b""] * count
    return [b"".join(parts) for parts in zip(*columns, strict=True)]
