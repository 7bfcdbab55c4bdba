"""BTCTurk request signing (REST v1 headers and WebSocket login 114); pure, clock passed in."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Final


class Secret:
    """A string that never shows itself in repr, str or logs; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value: Final = value

    def reveal(self) -> str:
        """The wrapped value; keep it out of logs."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode("utf-8"), other._value.encode("utf-8")
        )

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret cannot be pickled")


def as_secret(value: str | Secret) -> Secret:
    """Wrap a plain string; pass a Secret through."""
    return value if isinstance(value, Secret) else Secret(value)


def sign(secret: Secret, message: str) -> str:
    """base64(HMAC-SHA256(key=base64decode(secret), msg=UTF-8(message)))."""
    try:
        key = base64.b64decode(secret.reveal(), validate=True)
    except (binascii.Error, ValueError):
        # Never echo the secret itself in the error.
        raise ValueError("API secret is not valid base64") from None
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_headers(api_key: str, api_secret: Secret, stamp_ms: int) -> dict[str, str]:
    """Headers of a private REST call (spec 3.1): X-PCK, X-Stamp, X-Signature over key + stamp."""
    stamp = str(stamp_ms)
    return {
        "X-PCK": api_key,
        "X-Stamp": stamp,
        "X-Signature": sign(api_secret, api_key + stamp),
        "Content-Type": "application/json",
    }


DEFAULT_WS_NONCE = 3000


def ws_login_message(
    public_key: str, private_key: Secret, *, timestamp_ms: int, nonce: int = DEFAULT_WS_NONCE
) -> list[Any]:
    """WebSocket login frame 114; the signature covers publicKey + str(nonce), not the timestamp."""
    return [
        114,
        {
            "type": 114,
            "publicKey": public_key,
            "timestamp": timestamp_ms,
            "nonce": nonce,
            "signature": sign(private_key, public_key + str(nonce)),
        },
    ]


def clock_offset_ms(sent_ms: int, received_ms: int, server_ms: int) -> int:
    """Server minus local time, assuming the server read its clock halfway through the round trip."""
    return server_ms - (sent_ms + received_ms) // 2
