import pytest

from btcbot.marketdata.sequence import Sequencer


def test_rest_books_use_exchange_ms_and_skip_books_not_newer():
    seq = Sequencer()
    assert seq.rest("BTCTRY", 1_000) == 1_000
    seq.commit("BTCTRY", 1_000, rest_ts_ms=1_000)
    assert seq.rest("BTCTRY", 1_000) is None
    assert seq.rest("BTCTRY", 999) is None
    assert seq.rest("BTCTRY", 1_500) == 1_500
    assert seq.rest("ETHTRY", 10) == 10


def test_an_uncommitted_sequence_is_handed_out_again():
    seq = Sequencer()
    assert seq.rest("BTCTRY", 1_000) == 1_000
    assert seq.rest("BTCTRY", 1_000) == 1_000  # the publish failed: same book, same sequence, same id
    assert seq.last("BTCTRY") is None


def test_ws_epochs_follow_cs_and_never_go_back_across_resubscribes():
    seq = Sequencer()
    base = seq.ws_snapshot("BTCTRY", 5_000_000, received_ms=2_000)
    assert base == 2_000
    seq.commit("BTCTRY", base)
    assert seq.ws_diff("BTCTRY", 5_000_001) == 2_001
    seq.commit("BTCTRY", 2_001)
    assert seq.ws_diff("BTCTRY", 5_000_003) == 2_003  # a CS gap shows as a sequence gap
    seq.commit("BTCTRY", 2_003)
    # A resubscribe restarts CS lower, and the clock may even be behind the last sequence: still forward.
    again = seq.ws_snapshot("BTCTRY", 7, received_ms=1_500)
    assert again == 2_004
    seq.commit("BTCTRY", again)
    assert seq.ws_diff("BTCTRY", 8) == 2_005


def test_rest_fallback_and_ws_share_one_increasing_series():
    seq = Sequencer()
    first = seq.ws_snapshot("BTCTRY", 100, received_ms=10_000)
    seq.commit("BTCTRY", first)
    for cs in range(101, 200):
        seq.commit("BTCTRY", seq.ws_diff("BTCTRY", cs))
    last_ws = seq.last("BTCTRY")
    assert last_ws == 10_099
    # The socket dropped; a REST book stamped earlier than the WebSocket sequences still goes after them.
    rest = seq.rest("BTCTRY", 10_050)
    assert rest == 10_100
    seq.commit("BTCTRY", rest, rest_ts_ms=10_050)
    resumed = seq.ws_snapshot("BTCTRY", 1, received_ms=12_000)
    assert resumed == 12_000
    seq.commit("BTCTRY", resumed)
    assert seq.rest("BTCTRY", 11_000) == 12_001


def test_a_diff_before_any_snapshot_is_a_bug():
    with pytest.raises(LookupError):
        Sequencer().ws_diff("BTCTRY", 1)
