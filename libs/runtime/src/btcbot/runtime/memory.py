"""An in-memory twin of the bus for handler unit tests: same publish interface, same ack semantics."""

from __future__ import annotations

from typing import TypeVar

from btcbot.contracts.messages import Message
from btcbot.runtime.bus import Delivery, Handler
from btcbot.runtime.errors import Poison

M = TypeVar("M", bound=Message)
N = TypeVar("N", bound=Message)


class InMemoryBus:
    """Records publishes in order; a repeated message id is dropped, as JetStream's duplicate window does."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Message]] = []
        self.dead_letters: list[tuple[Message, str]] = []
        self._seen: set[str] = set()
        self.duplicates = 0

    async def publish(self, subject: str, message: Message) -> None:
        """Store the message unless its id was published before."""
        if message.id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(message.id)
        self.published.append((subject, message))

    def of_type(self, kind: type[N]) -> list[N]:
        """Published messages of one type, in order."""
        return [m for _, m in self.published if isinstance(m, kind)]

    def subjects(self) -> list[str]:
        """Subjects published to, in order."""
        return [s for s, _ in self.published]

    async def deliver(
        self,
        handler: Handler[M],
        message: M,
        *,
        subject: str = "test",
        deliveries: int = 1,
        max_deliver: int = 5,
    ) -> str:
        """Run a handler like the consumer loop does; returns "ack", "nak" or "dead"."""
        try:
            await handler(message, Delivery(subject=subject, deliveries=deliveries))
        except Poison as exc:
            self.dead_letters.append((message, exc.reason))
            return "dead"
        except Exception as exc:
            if deliveries >= max_deliver:
                self.dead_letters.append((message, repr(exc)))
                return "dead"
            return "nak"
        return "ack"
