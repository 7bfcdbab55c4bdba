"""Errors raised by the BTCTurk clients.

Every failure is one of these; the client never drops an error silently. ``retryable`` says
whether sending the very same request again is safe and may succeed::

    BtcTurkError(retryable: bool)
    ├── TransportError      retryable   network failure; for reads, or a request never sent
    ├── RateLimited         retryable   HTTP 429; ``retry_after`` seconds
    ├── Unavailable         retryable   HTTP 5xx / 503 maintenance / stale book
    │   └── BreakerOpen     retryable   circuit breaker open: nothing was sent
    ├── AuthError           final       HTTP 401 (signature, key, nonce, permissions)
    ├── Rejected            final       HTTP 400 business error; ``message_code`` e.g. BALANCE_NOT_ENOUGH
    │   └── NotFound        final       unknown order (code 1152, NO_ORDER_MATCHES_YOUR_REQUEST)
    ├── ProtocolError       final       a response the client cannot understand
    └── OutcomeUnknown      final       a submit/cancel may have reached the exchange but its answer
                                        was lost; resolve by reading state, never by resending
"""

from __future__ import annotations


class BtcTurkError(Exception):
    """Base of all BTCTurk client errors."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.endpoint is not None:
            parts.append(f"endpoint={self.endpoint}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code is not None:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class TransportError(BtcTurkError):
    """The network failed; safe to resend (reads, or a request that never left)."""

    retryable = True


class RateLimited(BtcTurkError):  # noqa: N818 - names read as outcomes, agreed API
    """HTTP 429: the endpoint group is blocked for ``retry_after`` seconds."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float, endpoint: str | None = None, code: int | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=429, code=code)
        self.retry_after = retry_after


class Unavailable(BtcTurkError):  # noqa: N818 - names read as outcomes, agreed API
    """The exchange answered with a server error or is under maintenance."""

    retryable = True


class BreakerOpen(Unavailable):
    """The circuit breaker of the endpoint group is open; no request was sent."""

    def __init__(self, group: str, *, retry_in: float) -> None:
        super().__init__(f"circuit open for {group}, retry in {retry_in:.2f}s", endpoint=group)
        self.group = group
        self.retry_in = retry_in


class AuthError(BtcTurkError):
    """HTTP 401: bad key, signature, nonce or permissions."""


class Rejected(BtcTurkError):  # noqa: N818 - names read as outcomes, agreed API
    """A business rejection (HTTP 400) with BTCTurk's message code."""

    def __init__(
        self,
        message: str,
        *,
        message_code: str,
        endpoint: str | None = None,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, code=code)
        self.message_code = message_code


class NotFound(Rejected):
    """The order does not exist (code 1152 or NO_ORDER_MATCHES_YOUR_REQUEST)."""


class ProtocolError(BtcTurkError):
    """The response could not be understood (bad JSON, missing fields, unexpected status)."""


class OutcomeUnknown(BtcTurkError):  # noqa: N818 - names read as outcomes, agreed API
    """A submit or cancel may have taken effect but its response was lost; never resent blindly."""

    def __init__(
        self,
        message: str,
        *,
        client_order_id: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.client_order_id = client_order_id
