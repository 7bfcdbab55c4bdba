"""HMAC authentication of private REST calls and of the WS login."""

from __future__ import annotations

import base64
import hashlib
import hmac

from btcbot.sim import auth
from btcbot.sim.config import Account

SECRET = base64.b64encode(b"k" * 32).decode()
ACCOUNTS = {"pub": Account("pub", SECRET)}
NOW = 1_764_000_000_000


def reference_signature(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(secret), text.encode(), hashlib.sha256).digest()).decode()


def headers(stamp: int = NOW, key: str = "pub", secret: str = SECRET) -> dict[str, str]:
    return {"X-PCK": key, "X-Stamp": str(stamp), "X-Signature": reference_signature(secret, f"{key}{stamp}")}


def check(h: dict[str, str]) -> Account | auth.AuthFailed:
    return auth.authenticate(h, ACCOUNTS, NOW, 5000)


def test_good_signature_within_window() -> None:
    assert check(headers()) is ACCOUNTS["pub"]
    assert check(headers(NOW - 5000)) is ACCOUNTS["pub"]
    assert check(headers(NOW + 5000)) is ACCOUNTS["pub"]


def test_bad_signature() -> None:
    other = base64.b64encode(b"x" * 32).decode()
    assert check(headers(secret=other)) == auth.AuthFailed("Invalid Signature")
    assert check({**headers(), "X-Signature": "not base64 at all"}) == auth.AuthFailed("Invalid Signature")


def test_stale_or_future_stamp() -> None:
    assert check(headers(NOW - 5001)) == auth.AuthFailed("Invalid Nonce")
    assert check(headers(NOW + 5001)) == auth.AuthFailed("Invalid Nonce")
    assert check({**headers(), "X-Stamp": "12ab"}) == auth.AuthFailed("Invalid Nonce")


def test_missing_headers_and_unknown_key() -> None:
    full = headers()
    for name in full:
        partial = {k: v for k, v in full.items() if k != name}
        assert check(partial) == auth.AuthFailed("Headers are missing")
    assert check(headers(key="nobody")) == auth.AuthFailed("Invalid Public/Private key")


def test_sign_matches_reference() -> None:
    assert auth.sign(SECRET, "pub123") == reference_signature(SECRET, "pub123")


def test_ws_login_signs_key_and_nonce() -> None:
    signature = reference_signature(SECRET, "pub3000")
    assert auth.authenticate_ws("pub", 3000, signature, ACCOUNTS) is ACCOUNTS["pub"]
    assert auth.authenticate_ws("pub", "3000", signature, ACCOUNTS) is ACCOUNTS["pub"]
    assert auth.authenticate_ws("pub", 15000, signature, ACCOUNTS) == auth.AuthFailed("Invalid Signature")
    assert auth.authenticate_ws("nobody", 3000, signature, ACCOUNTS) == auth.AuthFailed("Invalid Public/Private key")
    assert auth.authenticate_ws(None, 3000, signature, ACCOUNTS) == auth.AuthFailed("Invalid Request")
