"""Message signatures: an HMAC-SHA256 over a message's canonical bytes, with a key id so keys can rotate.

`signature = "<key id>:<hex HMAC-SHA256>"`. The canonical bytes are the msgpack encoding of
`[tag, {field: value}]` where the fields are every field of the message except `signature`, sorted by name,
leaving out fields whose value equals their default. Encoding is deterministic (sorted keys, Decimals as their
exact strings, a frozen struct cannot change after signing), and leaving defaults out means a field added later
with a default does not change the bytes of messages that do not use it: an old signer and a new verifier agree.
A verifier that does not know a field a sender set cannot see it and so rejects the message (BAD_SIGNATURE):
add fields to verifiers first.

Who may sign what is decided by which keys a verifier holds (execution holds risk's keys only), not here.
A signature proves who made a message, not that it is new: replays are stopped by ids and claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from btcbot.contracts.messages import Message

# OrderRejected.reason of an order execution refused because risk did not sign it. Such a rejection says nothing
# about a real order of that client order id (a forger chooses it): consumers keep it for audit only.
UNSIGNED = "UNSIGNED"

MISSING = "MISSING"
UNKNOWN_KEY = "UNKNOWN_KEY"
BAD_SIGNATURE = "BAD_SIGNATURE"

M = TypeVar("M", bound=Message)

_encoder = msgspec.msgpack.Encoder(decimal_format="string")
_KEY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
MIN_SECRET_BYTES = 16


def canonical(message: Message) -> bytes:
    """The bytes a signature covers: tag and every non-default field but `signature`, in name order."""
    fields: dict[str, Any] = {}
    for info in msgspec.structs.fields(message):
        if info.name == "signature":
            continue
        value = getattr(message, info.name)
        if info.default is not msgspec.NODEFAULT and value == info.default:
            continue
        if info.default_factory is not msgspec.NODEFAULT and value == info.default_factory():
            continue
        fields[info.name] = value
    tag = type(message).__struct_config__.tag
    return _encoder.encode([tag, dict(sorted(fields.items()))])


def _mac(secret: bytes, message: Message) -> str:
    return hmac.new(secret, canonical(message), hashlib.sha256).hexdigest()


def sign(message: M, key_id: str, secret: bytes) -> M:
    """A copy of `message` signed with this key (any signature it had is replaced)."""
    check_key_id(key_id)
    return msgspec.structs.replace(message, signature=f"{key_id}:{_mac(secret, message)}")


def verify(message: Message, keys: Mapping[str, bytes]) -> str | None:
    """None if `message` carries a valid signature by one of `keys`, else MISSING, UNKNOWN_KEY or BAD_SIGNATURE."""
    signature = getattr(message, "signature", "")
    if not signature:
        return MISSING
    key_id, sep, mac = signature.rpartition(":")
    if not sep or not key_id:
        return BAD_SIGNATURE
    secret = keys.get(key_id)
    if secret is None:
        return UNKNOWN_KEY
    # Constant time: how much of a forged MAC matched must not show in the timing.
    if not hmac.compare_digest(mac.encode(), _mac(secret, message).encode()):
        return BAD_SIGNATURE
    return None


def key_id_of(message: Message) -> str:
    """The key id a message claims to be signed with ("" unsigned)."""
    return str(getattr(message, "signature", "")).rpartition(":")[0]


def check_key_id(key_id: str) -> str:
    """A key id is 1-64 letters, digits, '_', '.', '-' (it travels in the signature, before the ':')."""
    if not key_id or len(key_id) > 64 or not set(key_id) <= _KEY_ID_CHARS:
        raise ValueError(f"not a key id: {key_id!r} (1-64 of letters, digits, '_', '.', '-')")
    return key_id


def decode_secret(text: str) -> bytes:
    """A base64 secret of at least 16 bytes (raises ValueError, never echoing the value)."""
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def parse_keys(text: str) -> dict[str, bytes]:
    """Verification keys from "kid:base64,kid2:base64" (raises ValueError naming the bad entry's key id only)."""
    keys: dict[str, bytes] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key_id, sep, secret = entry.partition(":")
        if not sep:
            raise ValueError("each entry must be <key id>:<base64 secret>")
        check_key_id(key_id)
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} is listed twice")
        try:
            keys[key_id] = decode_secret(secret)
        except ValueError as exc:
            raise ValueError(f"key {key_id!r}: {exc}") from None
    return keys


def format_keys(keys: Mapping[str, bytes]) -> str:
    """The "kid:base64,..." form of `parse_keys`."""
    return ",".join(f"{check_key_id(kid)}:{base64.b64encode(secret).decode()}" for kid, secret in keys.items())


class Signer:
    """One signing key: its id and secret (the secret never shows in repr)."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        self.key_id = check_key_id(key_id)
        self._secret = secret

    def sign(self, message: M) -> M:
        """`message` signed with this key."""
        return sign(message, self.key_id, self._secret)

    def keys(self) -> dict[str, bytes]:
        """This key as a verification key set (a signer trusts what it signed itself)."""
        return {self.key_id: self._secret}

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"
