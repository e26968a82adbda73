"""The Ed25519 signing key of checkpoints and evidence packs.

The private key comes from AUDITOR_SIGNING_KEY_FILE (a PKCS#8 PEM file, as `auditor keys
create` writes it) or AUDITOR_SIGNING_KEY (the same PEM text, for secret stores that inject
environment variables). It is never logged or printed: errors name the setting, not the value.
The key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key, so a
verifier holding the public key can tell which key signed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditor.errors import ConfigError, UserError

KEY_FILE = "AUDITOR_SIGNING_KEY_FILE"
KEY_TEXT = "AUDITOR_SIGNING_KEY"


class BadSignature(ValueError):
    """A signature does not verify under the public key."""


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def __repr__(self) -> str:  # never show the key, whatever logs a Signer
        return f"Signer(key_id={self.key_id})"


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_base64(public: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public(public)).decode("ascii")


def create(out: Path) -> Signer:
    """A new key written to out (mode 0600, refusing to overwrite)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{out} exists; a signing key is never overwritten") from None
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return Signer(private)


def load_signer(
    environ: Mapping[str, str] | None = None, *, required: bool = True
) -> Signer | None:
    """The signing key from the environment, or None (or a ConfigError if required)."""
    env = os.environ if environ is None else environ
    path, text = env.get(KEY_FILE), env.get(KEY_TEXT)
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(KEY_FILE, f"cannot read the key file: {exc.strerror}") from None
        return Signer(_private_from(data, KEY_FILE))
    if text:
        return Signer(_private_from(text.encode(), KEY_TEXT))
    if required:
        raise ConfigError(KEY_FILE, f"no signing key: set {KEY_FILE} or {KEY_TEXT}")
    return None


def _private_from(data: bytes, setting: str) -> Ed25519PrivateKey:
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(setting, "not an unencrypted PKCS#8 PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(setting, "the key is not an Ed25519 key")
    return private


def load_public(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM or from base64 of its raw 32 bytes."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            public = serialization.load_pem_public_key(text)
        except ValueError:
            raise ValueError("not a PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return public
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("neither PEM nor base64 of a raw Ed25519 public key") from None
    if len(raw) != 32:
        raise ValueError("a raw Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        raise BadSignature("the signature does not verify under this public key") from None
