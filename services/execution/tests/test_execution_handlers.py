"""Order handlers on the in-memory bus, memory idempotency store, memory lock and a scriptable exchange."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from btcbot.btcturk.errors import OutcomeUnknown, RateLimited, Rejected, Unavailable
from btcbot.contracts import ids, subjects
from btcbot.contracts.messages import OrderAccepted, OrderCanceled, OrderFilled, OrderRejected
from btcbot.execution import orders
from btcbot.execution.journal import Journal
from btcbot.execution.reconcile import ExchangeStatus
from btcbot.execution.record import Phase, Record
from btcbot.runtime.errors import DependencyUnavailable

D = Decimal


async def deliver(rig: Any, message: Any, deliveries: int = 1, execution: Any = None) -> str:
    handler = (execution or rig.execution).on_order
    return str(await rig.bus.deliver(handler, message, deliveries=deliveries, max_deliver=8))


async def record_of(rig: Any, coid: str = "bbc1") -> Record:
    found = await Journal(rig.store, "probe", 1.0).load(coid)
    assert found is not None
    return found


async def test_new_order_is_placed_once_and_accepted(rig: Any) -> None:
    assert await deliver(rig, rig.submit()) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    [(subject, event)] = rig.bus.published
    assert subject == subjects.execution("accepted", "BTCTRY")
    assert isinstance(event, OrderAccepted)
    assert event.id == ids.accepted_id("bbc1")
    assert event.exchange_order_id == "1000"
    assert event.quantity == D(1)
    record = await record_of(rig)
    assert record.phase == Phase.SENT
    assert record.order.status == orders.Status.ACCEPTED
    assert record.order.exchange_order_id == "1000"
    assert rig.store.claims["exec:order:bbc1"]["owner"] == "replica-1"
    assert rig.locks.held == {}  # released
    assert [lease.name for lease in rig.locks.taken] == ["orders:main:BTCTRY"]


async def test_redelivery_after_success_does_not_post_again(rig: Any) -> None:
    await deliver(rig, rig.submit())
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    other = rig.new_execution()
    assert await deliver(rig, rig.submit(), deliveries=3, execution=other) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert len(rig.exchange.orders) == 1
    assert rig.bus.duplicates == 0  # nothing was even republished
    assert len(rig.bus.of_type(OrderAccepted)) == 1


async def test_redelivery_emits_only_the_missing_events(rig: Any) -> None:
    # Replica 1 posted and then died before it could publish or record anything past "sending".
    cmd = rig.submit(quantity="1")
    journal = Journal(rig.store, "replica-1", 3600.0)
    assert await journal.claim("bbc1")
    sending = orders.submitting(orders.from_submit(cmd)).order
    await journal.save(Record(sending, Phase.SENDING))
    xid = await rig.exchange.submit(sending)
    rig.exchange.trade(xid, "t1", "0.4")
    posts_before = len(rig.exchange.posts)

    assert await deliver(rig, cmd, deliveries=2, execution=rig.new_execution()) == "ack"
    assert len(rig.exchange.posts) == posts_before  # no second POST
    kinds = [type(m) for _, m in rig.bus.published]
    assert kinds == [OrderAccepted, OrderFilled]
    fill = rig.bus.of_type(OrderFilled)[0]
    assert fill.id == ids.fill_id("BTCTRY", "t1", xid)
    assert fill.quantity == D("0.4")
    record = await record_of(rig)
    assert record.phase == Phase.SENT
    assert record.order.status == orders.Status.PARTIALLY_FILLED

    # The next redelivery finds nothing missing any more.
    rig.exchange.trade(xid, "t2", "0.6")
    assert await deliver(rig, cmd, deliveries=3) == "ack"
    assert [type(m) for _, m in rig.bus.published] == [OrderAccepted, OrderFilled, OrderFilled]
    assert (await record_of(rig)).order.status == orders.Status.FILLED
    assert await deliver(rig, cmd, deliveries=4) == "ack"
    assert len(rig.bus.published) == 3
    assert rig.bus.duplicates == 0


async def test_lost_response_is_resolved_by_client_order_id_without_a_second_post(rig: Any) -> None:
    rig.exchange.script = ["lost"]
    assert await deliver(rig, rig.submit()) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert rig.exchange.finds == 1
    [accepted] = rig.bus.of_type(OrderAccepted)
    assert accepted.exchange_order_id == "1000"
    assert (await record_of(rig)).phase == Phase.SENT


async def test_unknown_outcome_is_looked_up_before_it_counts_as_never_sent(rig: Any) -> None:
    rig.exchange.script = ["unknown"]  # died on the way: nothing at the exchange
    assert await deliver(rig, rig.submit()) == "nak"
    record = await record_of(rig)
    assert record.phase == Phase.SENDING
    assert record.order.status == orders.Status.SUBMITTING
    assert rig.bus.published == []  # never rejected because of a timeout
    # Lookups 1 and 2 (policy.lookups == 2) happen on redeliveries, still without posting.
    assert await deliver(rig, rig.submit(), deliveries=2) == "nak"
    assert rig.exchange.posts == ["bbc1"]
    assert rig.exchange.finds == 2
    # Third look: still nothing, so the POST never arrived and the order is placed for real.
    assert await deliver(rig, rig.submit(), deliveries=3) == "ack"
    assert rig.exchange.posts == ["bbc1", "bbc1"]
    assert len(rig.exchange.orders) == 1
    assert len(rig.bus.of_type(OrderAccepted)) == 1


async def test_unknown_outcome_that_shows_up_later_is_adopted(rig: Any) -> None:
    rig.exchange.script = ["unknown"]
    assert await deliver(rig, rig.submit()) == "nak"
    # The request did arrive after all (it was slow): the exchange now shows it.
    late = orders.submitting(orders.from_submit(rig.submit())).order
    rig.exchange.script = ["ok"]
    await rig.exchange.submit(late)
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    assert len(rig.exchange.orders) == 1
    assert len(rig.bus.of_type(OrderAccepted)) == 1
    assert rig.exchange.posts == ["bbc1", "bbc1"]  # the second is the test's stand-in for the slow one


async def test_exchange_rejection_becomes_order_rejected(rig: Any) -> None:
    rig.exchange.script = [Rejected("no money", message_code="BALANCE_NOT_ENOUGH", status=400)]
    assert await deliver(rig, rig.submit()) == "ack"
    [(subject, event)] = rig.bus.published
    assert subject == subjects.execution("rejected", "BTCTRY")
    assert isinstance(event, OrderRejected)
    assert event.reason == "BALANCE_NOT_ENOUGH"
    assert event.id == ids.rejected_id("bbc1")
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc1"]
    assert len(rig.bus.published) == 1


@pytest.mark.parametrize(
    "error",
    [RateLimited("slow down", retry_after=1.0), Unavailable("maintenance", status=503)],
    ids=["rate-limited", "unavailable"],
)
async def test_retryable_error_retries_and_never_places_twice(rig: Any, error: Exception) -> None:
    rig.exchange.script = [error, error]
    assert await deliver(rig, rig.submit()) == "nak"
    assert (await record_of(rig)).phase == Phase.CLAIMED  # nothing sent: safe to place later
    assert await deliver(rig, rig.submit(), deliveries=2) == "nak"
    assert await deliver(rig, rig.submit(), deliveries=3) == "ack"
    assert await deliver(rig, rig.submit(), deliveries=4) == "ack"
    assert rig.exchange.posts == ["bbc1"] * 3
    assert len(rig.exchange.orders) == 1
    assert rig.exchange.finds == 0  # a known "not sent" needs no lookup
    assert len(rig.bus.of_type(OrderAccepted)) == 1
    assert rig.bus.of_type(OrderRejected) == []


async def test_stale_fencing_token_refuses_the_post(rig: Any) -> None:
    real_validate = rig.locks.validate

    async def stolen(lease: Any) -> None:
        rig.locks.steal(lease.name)  # our lease expired and another replica took the lock
        await real_validate(lease)

    rig.locks.validate = stolen
    assert await deliver(rig, rig.submit()) == "nak"
    assert rig.exchange.posts == []
    assert (await record_of(rig)).phase == Phase.CLAIMED


async def test_busy_lock_retries_and_a_claim_without_record_is_placed(rig: Any) -> None:
    rig.locks.steal("orders:main:BTCTRY")
    assert await deliver(rig, rig.submit()) == "nak"
    assert rig.store.claims["exec:order:bbc1"]["state"] == "claimed"  # claimed before the lock
    assert rig.exchange.posts == []
    rig.locks.held.clear()
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc1"]


async def test_redis_unavailable_places_nothing(rig: Any) -> None:
    async def down(*args: Any, **kwargs: Any) -> bool:
        raise DependencyUnavailable("redis: connection refused")

    rig.store.claim = down
    assert await deliver(rig, rig.submit()) == "nak"
    assert rig.exchange.posts == []
    assert rig.bus.published == []


async def test_expired_command_is_rejected_not_placed(rig: Any) -> None:
    old = rig.submit(ts_ns=rig.clock[0] - 121 * 1_000_000_000)
    assert await deliver(rig, old) == "ack"
    assert rig.exchange.posts == []
    [event] = rig.bus.of_type(OrderRejected)
    assert event.reason == "EXPIRED"


async def test_cancel_emits_fills_then_canceled_with_filled_quantity(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.exchange.trade("1000", "t1", "0.3")
    assert await deliver(rig, rig.cancel()) == "ack"
    assert rig.exchange.cancels == ["1000"]
    kinds = [type(m) for _, m in rig.bus.published]
    assert kinds == [OrderAccepted, OrderFilled, OrderCanceled]
    canceled = rig.bus.of_type(OrderCanceled)[0]
    assert canceled.filled_quantity == D("0.3")
    assert canceled.reason == "stale"
    assert canceled.id == ids.canceled_id("bbc1")
    assert rig.bus.subjects()[-1] == subjects.execution("canceled", "BTCTRY")
    # Redelivered cancel: already final, no second DELETE.
    assert await deliver(rig, rig.cancel(), deliveries=2) == "ack"
    assert rig.exchange.cancels == ["1000"]
    assert len(rig.bus.of_type(OrderCanceled)) == 1


async def test_cancel_waits_for_confirmation(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.exchange.cancel_script = ["accepted-but-pending"]  # 200, the order still rests for a moment
    assert await deliver(rig, rig.cancel()) == "nak"
    assert (await record_of(rig)).order.status == orders.Status.CANCEL_PENDING
    assert rig.bus.of_type(OrderCanceled) == []
    rig.exchange.orders["1000"].status = ExchangeStatus.CANCELED
    assert await deliver(rig, rig.cancel(), deliveries=2) == "ack"
    assert rig.exchange.cancels == ["1000"]  # confirmation did not DELETE again
    assert len(rig.bus.of_type(OrderCanceled)) == 1


async def test_cancel_of_a_filled_order_reports_the_fill(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.exchange.trade("1000", "t1", "1")
    assert await deliver(rig, rig.cancel()) == "ack"
    assert [type(m) for _, m in rig.bus.published] == [OrderAccepted, OrderFilled]
    assert (await record_of(rig)).order.status == orders.Status.FILLED


async def test_cancel_before_send_stops_the_order_for_good(rig: Any) -> None:
    rig.exchange.script = [RateLimited("slow down", retry_after=1.0)]
    assert await deliver(rig, rig.submit()) == "nak"
    assert await deliver(rig, rig.cancel()) == "ack"
    [event] = rig.bus.of_type(OrderRejected)
    assert event.reason == "CANCELED"
    assert await deliver(rig, rig.submit(), deliveries=2) == "ack"
    assert rig.exchange.posts == ["bbc1"]  # only the rate-limited attempt
    assert rig.exchange.orders == {}


async def test_cancel_of_an_unknown_order_is_acked(rig: Any) -> None:
    assert await deliver(rig, rig.cancel("nope")) == "ack"
    assert rig.bus.published == []
    assert rig.exchange.cancels == []


async def test_record_conflicting_with_the_exchange_is_dead_lettered(rig: Any) -> None:
    await deliver(rig, rig.submit(quantity="1"))
    rig.exchange.orders["1000"].quantity = D(5)
    rig.exchange.trade("1000", "t1", "2")  # more than we ordered: our record cannot explain it
    assert await deliver(rig, rig.submit(), deliveries=2) == "dead"
    assert "overfill" in rig.bus.dead_letters[0][1]


async def test_corrupt_record_is_dead_lettered_not_retried(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.store.claims["exec:order:bbc1"]["quantity"] = "a lot"
    assert await deliver(rig, rig.submit(), deliveries=2) == "dead"
    assert "corrupt" in rig.bus.dead_letters[0][1]
    assert rig.exchange.posts == ["bbc1"]


async def test_lost_cancel_is_sent_again_on_redelivery(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.exchange.cancel_script = [OutcomeUnknown("read timeout"), "ok"]  # first DELETE never arrived
    assert await deliver(rig, rig.cancel()) == "nak"
    assert (await record_of(rig)).order.status == orders.Status.CANCEL_PENDING
    assert await deliver(rig, rig.cancel(), deliveries=2) == "ack"
    assert rig.exchange.cancels == ["1000", "1000"]
    assert len(rig.bus.of_type(OrderCanceled)) == 1


async def test_blocked_cancel_leaves_the_order_resting(rig: Any) -> None:
    await deliver(rig, rig.submit())
    rig.exchange.cancel_script = [Rejected("maintenance", message_code="ORDER_CANCEL_BLOCKED")]
    assert await deliver(rig, rig.cancel()) == "nak"
    assert (await record_of(rig)).order.status == orders.Status.ACCEPTED
    assert rig.bus.of_type(OrderCanceled) == []
    assert await deliver(rig, rig.cancel(), deliveries=2) == "ack"
    assert len(rig.bus.of_type(OrderCanceled)) == 1
