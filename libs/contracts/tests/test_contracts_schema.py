"""The committed JSON schema is the contract: any change to a message shows up here first.

Regenerate deliberately with `UPDATE_SCHEMA=1 pytest libs/contracts/tests/test_contracts_schema.py`
after checking the change only adds fields with defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from btcbot.contracts.messages import ALL_MESSAGE_TYPES
from btcbot.contracts.streams import ALL_CONSUMERS, ALL_STREAMS, stream_for_subject

SNAPSHOT = Path(__file__).parent / "schema.json"


def current_schema() -> str:
    _, components = msgspec.json.schema_components(ALL_MESSAGE_TYPES)
    return json.dumps(components, indent=2, sort_keys=True) + "\n"


def test_schema_matches_snapshot() -> None:
    schema = current_schema()
    if os.environ.get("UPDATE_SCHEMA") == "1":
        SNAPSHOT.write_text(schema)
    assert SNAPSHOT.read_text() == schema, "message schema changed; see this module's docstring"


def test_every_consumer_reads_a_defined_stream_subject() -> None:
    names = {s.name for s in ALL_STREAMS}
    for consumer in ALL_CONSUMERS:
        assert consumer.stream in names
        for subject in consumer.filter_subjects:
            assert stream_for_subject(subject).name == consumer.stream
        assert len(consumer.backoff) < consumer.max_deliver


def test_stream_subjects_do_not_overlap() -> None:
    heads = [s.split(".", 1)[0] for spec in ALL_STREAMS for s in spec.subjects]
    by_stream = {spec.name: {s.split(".", 1)[0] for s in spec.subjects} for spec in ALL_STREAMS}
    for name, own in by_stream.items():
        others = {h for n, hs in by_stream.items() if n != name for h in hs}
        assert not own & others, f"{name} shares a subject root with another stream"
    assert heads
