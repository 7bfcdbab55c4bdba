"""Pure classification of an HTTP exchange into a payload or an error of :mod:`errors`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from btcbot.btcturk.errors import (
    AuthError,
    BtcTurkError,
    NotFound,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
    Rejected,
    Unavailable,
)
from btcbot.btcturk.parse import decode_json

ORDER_NOT_FOUND_CODE = 1152
NOT_FOUND_MESSAGES = frozenset({"NO_ORDER_MATCHES_YOUR_REQUEST", "ORDER NOT FOUND", "ORDER_NOT_FOUND"})
DEFAULT_RETRY_AFTER = 1.0
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_retry_after(header: str | None, body: Any) -> float:
    """Seconds to wait after a 429: ``Retry-After`` header, else the body's ``period``, else 1 s."""
    for candidate in (header, body.get("period") if isinstance(body, Mapping) else None):
        if candidate is None:
            continue
        match = _PERIOD.match(str(candidate))
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return DEFAULT_RETRY_AFTER


def business_error(endpoint: str, status: int | None, body: Any) -> BtcTurkError:
    """Map a ``success:false`` envelope (or an error body) to Rejected / NotFound."""
    message = "UNKNOWN"
    code: int | None = None
    if isinstance(body, Mapping):
        message = str(body.get("message") or "UNKNOWN")
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        elif isinstance(raw_code, str) and raw_code.strip().lstrip("-").isdigit():
            code = int(raw_code)
    error_type = NotFound if code == ORDER_NOT_FOUND_CODE or message.upper() in NOT_FOUND_MESSAGES else Rejected
    return error_type(message, message_code=message, endpoint=endpoint, status=status, code=code)


def classify_response(
    *,
    endpoint: str,
    status: int,
    body: bytes,
    retry_after: str | None = None,
    mutation: bool = False,
    enveloped: bool = True,
    client_order_id: str | None = None,
) -> Any:
    """Return the payload of a successful response (``data`` for enveloped ones) or raise.

    ``mutation`` marks submit/cancel: a server error or an unreadable success there may hide an
    effect at the exchange, so it becomes :class:`OutcomeUnknown` instead of a retryable error.
    """
    try:
        decoded: Any = decode_json(body) if body.strip() else None
        decode_error: ProtocolError | None = None
    except ProtocolError as exc:
        decoded, decode_error = None, exc

    if status == 429:
        raise RateLimited(
            _message(decoded, "TOO_MANY_REQUESTS"),
            retry_after=parse_retry_after(retry_after, decoded),
            endpoint=endpoint,
            code=429,
        )
    if status >= 500:
        text = _message(decoded, f"HTTP {status}")
        if mutation:
            raise OutcomeUnknown(
                f"server error after send: {text}",
                client_order_id=client_order_id,
                endpoint=endpoint,
                status=status,
            )
        raise Unavailable(text, endpoint=endpoint, status=status)
    if status == 401:
        raise AuthError(_message(decoded, "unauthorized"), endpoint=endpoint, status=status)
    if 200 <= status < 300:
        return _success_payload(endpoint, status, decoded, decode_error, mutation, enveloped, client_order_id)
    if status == 400 or (isinstance(decoded, Mapping) and "message" in decoded):
        raise business_error(endpoint, status, decoded)
    raise ProtocolError(f"unexpected HTTP {status}", endpoint=endpoint, status=status)


def _message(decoded: Any, default: str) -> str:
    if isinstance(decoded, Mapping) and decoded.get("message"):
        return str(decoded["message"])
    return default


def _success_payload(
    endpoint: str,
    status: int,
    decoded: Any,
    decode_error: ProtocolError | None,
    mutation: bool,
    enveloped: bool,
    client_order_id: str | None,
) -> Any:
    def unreadable(reason: str) -> BtcTurkError:
        if mutation:
            return OutcomeUnknown(
                f"unreadable success response: {reason}",
                client_order_id=client_order_id,
                endpoint=endpoint,
                status=status,
            )
        return ProtocolError(reason, endpoint=endpoint, status=status)

    if decode_error is not None:
        raise unreadable(decode_error.message) from decode_error
    if not enveloped:
        return decoded
    if not isinstance(decoded, Mapping):
        raise unreadable("missing envelope")
    success = decoded.get("success")
    if success is None:
        success = decoded.get("code") in (0, "0", None) and "data" in decoded
    if success is True:
        return decoded.get("data")
    if success is False:
        raise business_error(endpoint, status, decoded)
    raise unreadable(f"bad envelope success={success!r}")
