"""What handlers see of the bus: a publisher, the delivery of a message, and the handler signature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from btcbot.contracts.messages import Message

M = TypeVar("M", bound=Message)
M_contra = TypeVar("M_contra", bound=Message, contravariant=True)


@dataclass(frozen=True)
class Delivery:
    """Where a message came from and how often it has been delivered."""

    subject: str
    deliveries: int = 1
    stream: str = ""
    sequence: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    # When JetStream stored the message (ns since the epoch; 0 when not known, e.g. on the in-memory bus).
    stored_ns: int = 0


class Publisher(Protocol):
    """Publishes a message with `Nats-Msg-Id` = its id and the current trace context."""

    async def publish(self, subject: str, message: Message) -> None:
        """Publish once; a duplicate id inside the stream's window is dropped by the server."""


Handler = Callable[[M, Delivery], Awaitable[None]]
