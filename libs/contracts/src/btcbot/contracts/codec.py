"""Wire encoding: msgpack for the bus, one reusable typed decoder per message union."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, Union

import msgspec

from btcbot.contracts.messages import ALL_MESSAGE_TYPES, Message

M = TypeVar("M", bound=Message)

_encoder = msgspec.msgpack.Encoder(decimal_format="string")


def encode(message: Message) -> bytes:
    """Encode any message to its msgpack wire form."""
    return _encoder.encode(message)


class Codec(Generic[M]):
    """A typed decoder for one message type or a union of them (the messages a consumer accepts)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._decoder: msgspec.msgpack.Decoder[M] = msgspec.msgpack.Decoder(target)

    def decode(self, data: bytes) -> M:
        """Decode and validate; raises msgspec.DecodeError / ValidationError on bad input."""
        return self._decoder.decode(data)


# typing.Union over a tuple builds the tagged union of every message type at run time.
_any_message: Codec[Message] = Codec(Union[ALL_MESSAGE_TYPES])  # noqa: UP007


def decode(data: bytes) -> Message:
    """Decode a message of any type (tools and dead-letter inspection; services use their own Codec)."""
    return _any_message.decode(data)
