"""The identity table: every permission derives from contracts, and the table says what the issue demands."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from btcbot.contracts import subjects
from btcbot.contracts.access import (
    ADMIN,
    IDENTITIES,
    OPERATOR,
    READER,
    SERVICE_IDENTITIES,
    identity,
    permissions,
    publishers_of,
    subject_matches,
)
from btcbot.contracts.streams import ALL_CONSUMERS, ALL_STREAMS, stream_for_subject

SYMBOL = "BTCTRY"


def test_every_published_subject_is_stored_by_a_stream() -> None:
    for row in IDENTITIES:
        for pattern in row.publishes:
            stream = stream_for_subject(pattern)
            assert any(subject_matches(s, pattern.replace("*", SYMBOL).replace(">", "x")) for s in stream.subjects)


def test_every_consumer_has_exactly_one_owner() -> None:
    for spec in ALL_CONSUMERS:
        owners = [row.name for row in IDENTITIES if spec in row.consumes]
        assert len(owners) == 1, (spec.durable, owners)
        assert spec.durable.startswith(owners[0])


def test_each_service_has_an_identity_and_the_table_is_unique() -> None:
    names = [row.name for row in IDENTITIES]
    assert len(names) == len(set(names))
    assert set(SERVICE_IDENTITIES) <= set(names)
    assert {"operator", "reader", "admin"} <= set(names)


def test_who_may_publish_what_matters() -> None:
    assert publishers_of(subjects.submit(SYMBOL)) == ("risk", "admin")
    assert publishers_of(subjects.denied(SYMBOL)) == ("risk", "admin")
    for kind in subjects.EXEC_KINDS:
        assert publishers_of(subjects.execution(kind, SYMBOL)) == ("execution", "admin")
    assert publishers_of(subjects.portfolio("main")) == ("ledger", "admin")
    assert publishers_of(subjects.CONTROL_MODE) == ("operator", "admin")
    assert publishers_of(subjects.CONTROL_KILL) == ("operator", "admin")
    assert publishers_of(subjects.CONTROL_AUTO) == ("risk", "admin")
    assert publishers_of(subjects.alarm("ledger", "quarantine")) == ("ledger", "admin")
    assert publishers_of(subjects.book(SYMBOL)) == ("marketdata", "admin")
    assert publishers_of(subjects.UNIVERSE_SELECTED) == ("marketdata", "admin")
    # The canary proposes one capped intent (risk still decides and signs) and may cancel it.
    assert publishers_of(subjects.intent(SYMBOL)) == ("strategy", "canary", "admin")
    assert set(publishers_of(subjects.cancel(SYMBOL))) == {"strategy", "risk", "canary", "admin"}
    assert not any(subject_matches(p, subjects.submit(SYMBOL)) for p in permissions(identity("canary")).publish_allow)


def test_only_admin_touches_streams() -> None:
    for row in IDENTITIES:
        if row is ADMIN:
            continue
        allowed = permissions(row).publish_allow
        for spec in ALL_STREAMS:
            for verb in ("CREATE", "UPDATE", "DELETE", "PURGE"):
                subject = f"$JS.API.STREAM.{verb}.{spec.name}"
                assert not any(subject_matches(p, subject) for p in allowed), (row.name, subject)
        assert not any(subject_matches(p, "$JS.API.CONSUMER.DELETE.ORDERS.execution-orders") for p in allowed)


def test_a_wildcard_consumer_token_never_reaches_another_identitys_shared_durable() -> None:
    for row in IDENTITIES:
        if row.admin:
            continue
        perms = permissions(row)
        mine = {spec.durable for spec in row.consumes}
        for spec in ALL_CONSUMERS:
            if spec.fanout or spec.durable in mine:
                continue
            for subject in (
                f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{spec.stream}.{spec.durable}",
                f"$JS.ACK.{spec.stream}.{spec.durable}.1.2.3.4.5",
            ):
                allowed = any(subject_matches(p, subject) for p in perms.publish_allow)
                denied = any(subject_matches(p, subject) for p in perms.publish_deny)
                assert not allowed or denied, (row.name, subject)


def test_subscriptions_are_limited_to_the_own_inbox() -> None:
    for row in IDENTITIES:
        if row.admin:
            continue
        assert permissions(row).subscribe_allow == (f"_INBOX.{row.name}.>",)


def test_operator_and_reader() -> None:
    assert not any(subject_matches(p, subjects.submit(SYMBOL)) for p in permissions(OPERATOR).publish_allow)
    data_heads = {s.split(".", 1)[0] for spec in ALL_STREAMS for s in spec.subjects}
    assert not any(p.split(".", 1)[0] in data_heads for p in permissions(READER).publish_allow)
    assert identity("reader") is READER


_token = st.text(alphabet="abcXYZ09", min_size=1, max_size=4)


@given(st.lists(_token, min_size=1, max_size=5), st.data())
def test_subject_matching_follows_nats_rules(tokens: list[str], data: st.DataObject) -> None:
    subject = ".".join(tokens)
    assert subject_matches(subject, subject)
    i = data.draw(st.integers(0, len(tokens) - 1))
    star = ".".join([*tokens[:i], "*", *tokens[i + 1 :]])
    assert subject_matches(star, subject)
    tail = ".".join([*tokens[:i], ">"])
    assert subject_matches(tail, subject)
    if i:
        assert not subject_matches(tail, ".".join(tokens[:i]))  # `>` needs at least one token
    assert not subject_matches(subject + ".x", subject)


def test_fanout_durables_of_departed_replicas_are_removed_within_minutes() -> None:
    """Pod names reach fan-out durable names: a rollout's leftovers must not pile up pending for an hour."""
    from btcbot.contracts.streams import FANOUT_IDLE_CLEANUP

    fanout = [spec for spec in ALL_CONSUMERS if spec.fanout]
    assert fanout
    for spec in fanout:
        assert 30 <= spec.idle_cleanup == FANOUT_IDLE_CLEANUP <= 300, spec.durable
