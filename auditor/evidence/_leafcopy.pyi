MAX_DEPTH: int
K_CONST: int
K_TEXT: int
K_INT8: int
K_INT4: int
K_UUID: int
K_TIMESTAMPTZ: int
K_JSONB: int
K_BYTEA: int

def hash_copy(
    plan: tuple[tuple[bytes, int], ...], data: bytes, /
) -> tuple[bytes, bytes, bytes, bytes]: ...
def read_copy(pgconn_ptr: int, libpq_path: str, /) -> bytes: ...
def batch_leaf_hash(leaves: bytes, /) -> bytes: ...
def batch_paths(leaves: bytes, /) -> list[bytes]: ...
def leaf_mismatches(
    leaves: list[bytes | memoryview], hashes: list[bytes | memoryview | None], /
) -> list[int]: ...

# evidence export (auditor/evidence/pack_rows.py)
def export_copy(
    plan: tuple[tuple[bytes, int], ...],
    data: bytes,
    order: bytes,
    positions: bytes,
    hashes: list[bytes | None],
    csv_columns: tuple[int, ...],
    account: int,
    /,
) -> tuple[bytes, bytes, bytes, bytes, list[int], list[int], set[str | None]]: ...
