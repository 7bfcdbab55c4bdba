"""BTCTurk HMAC authentication: X-PCK, X-Stamp, X-Signature (REST) and the WS 114 login signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from btcbot.sim.config import Account

HEADERS_MISSING = "Headers are missing"
INVALID_KEY = "Invalid Public/Private key"
INVALID_NONCE = "Invalid Nonce"
INVALID_SIGNATURE = "Invalid Signature"
INVALID_REQUEST = "Invalid Request"


@dataclass(frozen=True)
class AuthFailed:
    """Why a request was refused; `message` is the 401 body's message."""

    message: str


def sign(secret_b64: str, text: str) -> str:
    """base64(HMAC-SHA256(base64decode(secret), text)), the signature BTCTurk expects."""
    key = base64.b64decode(secret_b64)
    return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()


def _matches(secret_b64: str, text: str, signature: str) -> bool:
    try:
        expected = sign(secret_b64, text)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(expected.encode(), signature.encode())


def authenticate(
    headers: Mapping[str, str],
    accounts: Mapping[str, Account],
    now_ms: int,
    window_ms: int,
) -> Account | AuthFailed:
    """Check the three auth headers of a private REST call."""
    key = headers.get("X-PCK")
    stamp = headers.get("X-Stamp")
    signature = headers.get("X-Signature")
    if not key or not stamp or not signature:
        return AuthFailed(HEADERS_MISSING)
    account = accounts.get(key)
    if account is None:
        return AuthFailed(INVALID_KEY)
    if not stamp.isdigit() or abs(int(stamp) - now_ms) > window_ms:
        return AuthFailed(INVALID_NONCE)
    if not _matches(account.secret_b64, key + stamp, signature):
        return AuthFailed(INVALID_SIGNATURE)
    return account


def authenticate_ws(
    public_key: object,
    nonce: object,
    signature: object,
    accounts: Mapping[str, Account],
) -> Account | AuthFailed:
    """Check a WS 114 login: the signed text is publicKey + nonce (not the timestamp)."""
    if not isinstance(public_key, str) or not isinstance(signature, str) or nonce is None:
        return AuthFailed(INVALID_REQUEST)
    if isinstance(nonce, bool) or not isinstance(nonce, int | str):
        return AuthFailed(INVALID_REQUEST)
    account = accounts.get(public_key)
    if account is None:
        return AuthFailed(INVALID_KEY)
    if not _matches(account.secret_b64, public_key + str(nonce), signature):
        return AuthFailed(INVALID_SIGNATURE)
    return account
