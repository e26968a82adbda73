"""Canonical bytes of a JSON value (RFC 8785, JCS) and the record's two hash steps.

``canonical_bytes`` is the reference: RFC 8785 written out in the standard library, so the
offline verifier (auditor/evidence_verify.py) can carry an identical copy. Objects are
sorted by the UTF-16 code units of their keys, strings are written as UTF-8 with only
``"``, ``\\`` and the controls below U+0020 escaped (``\\b \\t \\n \\f \\r`` short, the rest
as lowercase ``\\u00xx``), no whitespace, and floats in the shortest ECMAScript form
(``1.0`` -> ``1``, ``1e21`` -> ``1e+21``, ``-0.0`` -> ``0``). NaN and the infinities
have no JSON form and are refused (``NotCanonicalizable``, a ValueError), as are lone
surrogates and keys that are not strings.

Integers: one deliberate extension. RFC 8785 treats every number as an IEEE double, so an
integer beyond +-2^53 would be rounded to the nearest double before it is written, and two
values differing in their low digits (an id in GWS userData, say) would encode, and hash,
the same; PostgreSQL's jsonb keeps them apart. Python ints are therefore written as their
exact decimal digits whatever their size. Within +-2^53 this is exactly RFC 8785 (tests
check it against the ``rfc8785`` package); beyond it, a reimplementer must parse integers
exactly (Python's json does; in JavaScript use a BigInt-aware parser). An integral float
(``2.0**60``) is still written by the double rule, which for such values gives the same
digits. The ``rfc8785`` package itself refuses integers beyond 2^53, which is why it is only
the test oracle here, not the implementation.

``canonical_bytes_fast`` gives the same bytes several times faster via orjson with sorted
keys, guarded by a walk over the value's types: it falls back to the reference whenever the
value holds a float (orjson writes ``1.0`` and ``1e+16``, and NaN as ``null``), a key with a
character beyond U+FFFF (orjson sorts by code point, JCS by UTF-16 units, and the two orders
differ only there), an integer beyond 64 bits or a lone surrogate (orjson refuses them), or
anything but exact dict, list, str, int, bool and None (a tuple, a subclass, a UUID, which
orjson would write where the reference refuses or differs). Within those types orjson's
output is JCS: no whitespace, the same string escapes, UTF-8, exact integers. A hypothesis
test proves the two byte-identical over random JSON values; GWS payloads (strings, integers,
nested objects) take the fast path. Before either, the C encoder (auditor/evidence/_leafc.c,
``dumps``) is asked; it answers None for anything it does not write exactly (floats among
them), and the value goes on to the two above.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

import orjson

from auditor.evidence.native import leafc

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
LEAF_PREFIX = b"\x00"


class NotCanonicalizable(ValueError):
    """The value has no JSON form (NaN, a lone surrogate, a non-string key, a set...)."""


# RFC 8785 3.2.2.2 is the standard library's escaping with ensure_ascii off, in C: '"' and
# '\\' escaped, \b \t \n \f \r short, every other control character \u00xx in lower case,
# the rest (DEL, U+2028, lone surrogates, which then fail UTF-8 below) as it is.
# tests/unit/test_canonical.py compares with the rfc8785 package. A regex with a Python
# callback per escaped character cost most of the reference encoder's time on such text.
_string = encode_basestring


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dict, list, str, int, float, bool, None)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotCanonicalizable(
            "a string holds a lone surrogate, which has no UTF-8 form"
        ) from exc


def _write(value: Any, out: list[str]) -> None:
    # bool before int: True is an int in Python.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonicalizable(f"object keys must be strings, not {type(key).__name__}")
            items.append((key.encode("utf-16-be", "surrogatepass"), key, item))
        items.sort(key=lambda entry: entry[0])
        out.append("{")
        for index, (_, key, item) in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise NotCanonicalizable(f"{type(value).__name__} is not a JSON value")


def _number(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 7.1.12.1), as RFC 8785 3.2.2.3 requires."""
    if math.isnan(value) or math.isinf(value):
        raise NotCanonicalizable(f"{value} has no JSON form")
    if value == 0:
        return "0"  # -0 as well
    if value < 0:
        return "-" + _number(-value)
    # repr gives the shortest digits that round-trip, as ECMAScript does; only the layout
    # differs. Split it into digits and the exponent n with value = 0.d1d2... * 10**n.
    mantissa, _, exp = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = (whole + fraction).lstrip("0")
    point = len(whole) + int(exp or "0") - (len(whole + fraction) - len(significant))
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return digits + "0" * (point - k)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(exponent)}"


# Fast path -------------------------------------------------------------------------------


def canonical_bytes_fast(value: Any) -> bytes:
    """canonical_bytes(value): by the C encoder (auditor/evidence/_leafc.c) when it is built
    and takes the value, else via orjson when that is provably the same bytes."""
    if leafc is not None:
        encoded = leafc.dumps(value)
        if encoded is not None:
            return encoded
    if _orjson_agrees(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson.JSONEncodeError: beyond 64 bits, a lone surrogate
            pass
    return canonical_bytes(value)


def _orjson_agrees(value: Any) -> bool:
    """True if value holds only dicts, lists, str, int, bool and None (exact types: no
    float, no subclass, no UUID or tuple) and no key beyond U+FFFF. A walk over the types
    costs a fraction of the reference encoder; a regex over orjson's output cost more."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                return False
            item_kind = type(item)
            if item_kind is not str and item_kind is not int and not _orjson_agrees(item):
                return False
        return True
    if kind is list:
        for item in value:
            item_kind = type(item)
            if item_kind is not str and item_kind is not int and not _orjson_agrees(item):
                return False
        return True
    return False


# Hashes -----------------------------------------------------------------------------------


def leaf_hash(leaf_bytes: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(LEAF_PREFIX + leaf_bytes).digest()


def chain_next(previous: bytes, leaf: bytes) -> bytes:
    """chain_hash(p) = SHA-256(chain_hash(p-1) || leaf_hash(p)); chain_hash(0) = ZERO_HASH."""
    if len(previous) != HASH_SIZE or len(leaf) != HASH_SIZE:
        raise ValueError("chain_next takes two 32-byte hashes")
    return hashlib.sha256(previous + leaf).digest()


# The name the writer's side (auditor/evidence/leaves.py) asked for.
canonical_fast = canonical_bytes_fast
