"""A pack as a zip written while it is read: the standard library's zipfile writing to a
sink that is never seeked (it then puts each entry's sizes and CRC in a data descriptor
after the data), handed on in pieces of about PIECE_BYTES. Nothing but the piece being
filled is held, whatever the size of the pack.

zipstream-ng does the same as a dependency; zipfile already streams to an unseekable sink
(Python 3.5+), with ZIP64 for entries beyond 4 GiB when asked (force_zip64).
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from typing import IO

# Level 1: a third of level 6's CPU for JSON, and about 4/5 of its savings.
COMPRESS_LEVEL = 1
PIECE_BYTES = 1 << 20  # what is handed on at a time


class _Sink:
    """What zipfile writes to: bytes collected until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts, self.size = [], 0
        return out


def zip_chunks(pieces: Iterator[tuple[str, bytes]]) -> Iterator[bytes]:
    """The zip of (file name, bytes) pieces (each file's pieces in a row), handed on in
    pieces of about PIECE_BYTES (more when one input piece is larger)."""
    sink = _Sink()
    archive = zipfile.ZipFile(
        sink,
        "w",
        compression=zipfile.ZIP_DEFLATED,
        compresslevel=COMPRESS_LEVEL,
    )
    entry: IO[bytes] | None = None
    current: str | None = None
    try:
        for name, data in pieces:
            if name != current:
                if entry is not None:
                    entry.close()
                entry = archive.open(name, "w", force_zip64=True)
                current = name
            assert entry is not None
            entry.write(data)
            if sink.size >= PIECE_BYTES:
                yield sink.take()
        if entry is not None:
            entry.close()
            entry = None
        archive.close()
        yield sink.take()
    finally:
        if entry is not None:  # given up half-way (an error, or the client went away)
            with contextlib.suppress(Exception):
                entry.close()
                archive.close()
