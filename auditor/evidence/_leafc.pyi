from collections.abc import Callable, Sequence
from typing import Any

MAX_DEPTH: int

def dumps(value: object, /) -> bytes | None: ...

class Plan:
    def __init__(
        self,
        source: str,
        names: Sequence[str | None],
        kinds: Sequence[str],
        loads: Callable[[Any], Any],
        parsed: type,
    ) -> None: ...
    def encode(self, values: Sequence[Any], /, *more: Any) -> bytes | None: ...
    def encode_prefixed(self, values: Sequence[Any], /, *more: Any) -> bytes | None: ...
    def encode_mapping(self, row: dict[str, Any], /) -> bytes | None: ...
