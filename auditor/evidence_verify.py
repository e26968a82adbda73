#!/usr/bin/env python3
"""Verify an auditor evidence pack offline: python evidence_verify.py DIR --public-key KEY

Needs Python 3.11+ and the `cryptography` package, nothing else: no database, no auditor
install. KEY is a file holding the Ed25519 public key as PEM or as base64 of its 32 raw
bytes (`auditor keys show` prints both). Checks, in order: the manifest's signature; the
SHA-256 of every file it lists (and that no other file is there); the checkpoint's signature
and that it is the one the manifest names; that every line of events.ndjson and
coverage.ndjson has an RFC 6962 inclusion proof to the checkpoint's Merkle root, or is listed
by the signed manifest as not proven; the counts. Prints the coverage status of the range.
Exit 0: everything verified and proven; 1: a check failed or rows are not proven; 2: usage.
The formats are in docs/evidence.md ("Evidence packs"); this file re-implements RFC 8785 and
the Merkle verification on purpose, so it depends on nothing it verifies.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import hashlib
import io
import json
import math
import re
import sys
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PACK_FORMAT = "auditor-evidence-pack/1"
CHECKPOINT_FORMAT = "auditor-checkpoint/1"
PROVEN_FILES = ("events.ndjson", "coverage.ndjson")
_PROOF_LINE = re.compile(
    rb'\{"file":"([a-z.]+)","line":([0-9]+),"position":([0-9]+),"path":"([A-Za-z0-9+/=]*)"'
    rb'(?:,"batch_index":([0-9]+),"batch_size":([0-9]+),"batch_path":"([A-Za-z0-9+/=]*)")?\}'
)


class Failed(Exception):
    """The pack does not verify; the message says why."""


# RFC 8785 (integers written exactly at any size, as auditor does) ------------------------


def jcs(value: Any) -> bytes:
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode("utf-8")


def _jcs(value: Any, out: list[str]) -> None:
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
    elif isinstance(value, dict):
        items = sorted(
            ((key.encode("utf-16-be", "surrogatepass"), key, item) for key, item in value.items()),
            key=lambda entry: entry[0],
        )
        out.append("{")
        for index, (_, key, item) in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _jcs(item, out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    else:
        raise Failed(f"{type(value).__name__} is not a JSON value")


def _string(text: str) -> str:
    # RFC 8785 3.2.2.2: '"' and '\\' escaped, \b \t \n \f \r short, every other control
    # character \u00xx in lower case, the rest as it is: the standard library's JSON escaping
    # with ensure_ascii off, exactly (and in C).
    return encode_basestring(text)


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise Failed(f"{value} has no JSON form")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
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
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


# RFC 6962 / 9162 ----------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def batch_leaf_hash(batch_root: bytes) -> bytes:
    """Record format 2: a batch row's leaf hash over the root of its events' tree."""
    return hashlib.sha256(b"\x02" + batch_root).digest()


def _hashes(encoded: bytes, number: int) -> list[bytes]:
    raw = binascii.a2b_base64(encoded, strict_mode=True)
    if len(raw) % 32:
        raise Failed(f"proofs.ndjson line {number}: a path is not whole hashes")
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size:
        raise Failed(f"leaf index {index} is outside a tree of {size}")
    sha = hashlib.sha256
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise Failed("an audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = sha(b"\x01" + sibling + result).digest()
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            result = sha(b"\x01" + result + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failed("an audit path is shorter than the tree is deep")
    return result


class Tree:
    """Verifies many inclusion proofs against one root, remembering every node value a
    verified proof passed through: a later proof that reaches a remembered node (level,
    index) with the same value is proven from there on (the rest of its path is the same
    climb to the root), with a different value it fails. Neighbouring rows then cost a hash
    or two instead of a whole path."""

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        self.known: dict[tuple[int, int], bytes] = {}

    def check(self, index: int, leaf: bytes, path: list[bytes]) -> None:
        if not 0 <= index < self.size:
            raise Failed(f"leaf index {index} is outside a tree of {self.size}")
        known = self.known
        sha = hashlib.sha256
        fn, sn, result, level = index, self.size - 1, leaf, 0
        seen: list[tuple[tuple[int, int], bytes]] = []
        for sibling in path:
            remembered = known.get((level, fn))
            if remembered is not None:
                if remembered != result:
                    raise Failed("its path disagrees with a node another proof established")
                known.update(seen)
                return
            seen.append(((level, fn), result))
            if sn == 0:
                raise Failed("an audit path is longer than the tree is deep")
            if fn & 1 or fn == sn:
                result = sha(b"\x01" + sibling + result).digest()
                if not fn & 1:
                    while not fn & 1 and fn:
                        fn >>= 1
                        sn >>= 1
                        level += 1
            else:
                result = sha(b"\x01" + result + sibling).digest()
            fn >>= 1
            sn >>= 1
            level += 1
        if sn != 0:
            raise Failed("an audit path is shorter than the tree is deep")
        if result != self.root:
            raise Failed("its path leads to another root")
        seen.append(((level, fn), result))
        known.update(seen)


# The pack ---------------------------------------------------------------------------------


def load_public_key(text: bytes) -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise Failed("the public key is not an Ed25519 key")
        return key
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise Failed("a raw Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _check_signature(document: dict[str, Any], public: Ed25519PublicKey, what: str) -> None:
    if document.get("key_id") != _key_id(public):
        raise Failed(f"the {what} was signed with another key (key id {document.get('key_id')})")
    try:
        signature = base64.b64decode(str(document["signature"]), validate=True)
        unsigned = {k: v for k, v in document.items() if k not in ("signature", "id")}
        public.verify(signature, jcs(unsigned))
    except (KeyError, binascii.Error, InvalidSignature):
        raise Failed(f"the {what}'s signature does not verify") from None


def _json_file(directory: Path, name: str) -> dict[str, Any]:
    try:
        value = json.loads((directory / name).read_bytes())
    except FileNotFoundError:
        raise Failed(f"{name} is missing") from None
    except (ValueError, UnicodeDecodeError):
        raise Failed(f"{name} is not JSON") from None
    if not isinstance(value, dict):
        raise Failed(f"{name} is not a JSON object")
    return value


def _check_in_batch(
    tree: Tree,
    batches: dict[int, tuple[Tree, bytes]],
    position: int,
    path: list[bytes],
    encoded: bytes,
    batch: tuple[int, int, bytes],
    leaf: bytes,
    number: int,
) -> None:
    """A line sealed in a record format-2 batch row: its leaf in the batch's tree (path
    ``batch_path`` to the batch root), the batch row's leaf hash SHA-256(0x02 || root) at
    ``position`` in the checkpoint's tree (path ``path``)."""
    index, batch_size, batch_encoded = batch
    inside = _hashes(batch_encoded, number)
    known = batches.get(position)
    if known is None:
        batch_root = root_from_inclusion(index, batch_size, leaf, inside)
        tree.check(position - 1, batch_leaf_hash(batch_root), path)
        batch_tree = Tree(batch_size, batch_root)
        batch_tree.check(index, leaf, inside)
        batches[position] = (batch_tree, encoded)
        return
    batch_tree, record_path = known
    if encoded != record_path or batch_size != batch_tree.size:
        raise Failed("its batch's path in the record differs from another line's")
    batch_tree.check(index, leaf, inside)


def verify(directory: Path, public: Ed25519PublicKey) -> dict[str, Any]:
    """Raise Failed, or return the (verified) manifest."""
    manifest = _json_file(directory, "manifest.json")
    if manifest.get("format") != PACK_FORMAT:
        raise Failed(f"manifest.json is not an {PACK_FORMAT} manifest")
    _check_signature(manifest, public, "manifest")
    listed: dict[str, str] = manifest["files"]
    present = {p.name for p in directory.iterdir() if p.is_file()} - {"manifest.json"}
    if present - set(listed):
        raise Failed(f"files not in the manifest: {', '.join(sorted(present - set(listed)))}")
    data: dict[str, bytes] = {}
    for name, digest in sorted(listed.items()):
        try:
            data[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            raise Failed(f"{name} is missing") from None
        if hashlib.sha256(data[name]).hexdigest() != digest:
            raise Failed(f"{name} is not the file the manifest signed (SHA-256 differs)")

    checkpoint = json.loads(data["checkpoint.json"])
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise Failed("checkpoint.json is not an auditor checkpoint")
    _check_signature(checkpoint, public, "checkpoint")
    size = int(checkpoint["tree_size"])
    root = base64.b64decode(checkpoint["root"], validate=True)
    named = manifest["checkpoint"]
    if named.get("tree_size") != size or named.get("root") != checkpoint["root"]:
        raise Failed("checkpoint.json is not the checkpoint the manifest names")

    lines = {name: data[name].splitlines() for name in PROVEN_FILES}
    unproven = {(u["file"], int(u["line"])) for u in manifest.get("unproven", [])}
    proven: set[tuple[str, int]] = set()
    positions: set[int | tuple[int, int]] = set()
    tree = Tree(size, root)
    # Record format 2: per batch position, the batch's tree (its root proven in the record's
    # tree by the first line that reached it) and the record path that line gave.
    batches: dict[int, tuple[Tree, bytes]] = {}
    for number, text in enumerate(data["proofs.ndjson"].splitlines(), start=1):
        # the line as auditor writes it, read fast; any other JSON form through json
        match = _PROOF_LINE.fullmatch(text)
        batch: tuple[int, int, bytes] | None = None
        if match is not None:
            name = match[1].decode()
            line, position, encoded = int(match[2]), int(match[3]), match[4]
            if match[5] is not None:
                batch = (int(match[5]), int(match[6]), match[7])
        else:
            proof = json.loads(text)
            name, line, position = proof["file"], int(proof["line"]), int(proof["position"])
            encoded = str(proof["path"]).encode()
            if "batch_index" in proof:
                batch = (
                    int(proof["batch_index"]),
                    int(proof["batch_size"]),
                    str(proof["batch_path"]).encode(),
                )
        if name not in lines or not 1 <= line <= len(lines[name]):
            raise Failed(f"proofs.ndjson line {number} points at {name} line {line}: no such line")
        if (name, line) in proven or (name, line) in unproven:
            raise Failed(f"{name} line {line} has two proofs")
        path = _hashes(encoded, number)
        leaf = leaf_hash(lines[name][line - 1])
        key = position if batch is None else (position, batch[0])
        if key in positions:
            raise Failed(f"{name} line {line}: position {position} is proven twice in the pack")
        positions.add(key)
        try:
            if batch is None:
                tree.check(position - 1, leaf, path)
            else:
                _check_in_batch(tree, batches, position, path, encoded, batch, leaf, number)
        except Failed as exc:
            raise Failed(
                f"{name} line {line} (position {position}) is not in the record the checkpoint"
                f" of {size} signs: {exc}"
            ) from None
        proven.add((name, line))
    for name, content in lines.items():
        for line in range(1, len(content) + 1):
            if (name, line) not in proven and (name, line) not in unproven:
                raise Failed(f"{name} line {line} has no proof")

    counts = manifest["counts"]
    csv_rows = sum(1 for _ in csv.reader(io.StringIO(data["events.csv"].decode()))) - 1
    actual = {
        "events": len(lines["events.ndjson"]),
        "coverage_intervals": len(lines["coverage.ndjson"]),
        "proven": len(proven),
        "unproven": len(unproven),
    }
    if actual != {k: counts.get(k) for k in actual} or csv_rows != actual["events"]:
        raise Failed(f"the counts differ from the manifest's: {actual}, {csv_rows} CSV rows")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an auditor evidence pack offline.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="PEM or base64 file")
    args = parser.parse_args(argv)
    try:
        public = load_public_key(args.public_key.read_bytes())
    except (OSError, ValueError, Failed) as exc:
        print(f"--public-key: cannot use {args.public_key}: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = verify(args.directory, public)
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"FAILED: the pack is malformed ({type(exc).__name__}: {exc})")
        return 1
    counts = manifest["counts"]
    coverage = manifest["coverage"]
    print(
        f"verified: {counts['proven']} rows proven in the record signed at tree size"
        f" {manifest['checkpoint']['tree_size']}; query {json.dumps(manifest['query'])}"
    )
    if coverage["status"] == "complete":
        print(f"coverage: complete from {coverage['from']} to {coverage['to']}")
    else:
        print(f"coverage: {coverage['status']} from {coverage['from']} to {coverage['to']}")
        for gap in coverage["gaps"]:
            print(f"  gap {gap['account']} {gap['from']} .. {gap['to']}: {gap['reason']}")
    for purge in coverage.get("purged", []):
        print(
            f"  purged by retention: {purge['partition']} {purge['from']} .. {purge['to']}"
            f" ({purge['rows']} rows, receipt at position {purge['receipt_position']})"
        )
    if manifest.get("unproven"):
        print(f"NOT PROVEN: {len(manifest['unproven'])} rows:")
        for item in manifest["unproven"][:20]:
            print(f"  {item['file']} line {item['line']}: {item['reason']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
