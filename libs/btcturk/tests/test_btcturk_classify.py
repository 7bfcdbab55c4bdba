"""Pure response classification: status + envelope -> payload or the right error."""

import pytest

from btcbot.btcturk.classify import classify_response, parse_retry_after
from btcbot.btcturk.errors import (
    AuthError,
    NotFound,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
    Rejected,
    Unavailable,
)


def classify(status, body, **kw):
    return classify_response(endpoint="e", status=status, body=body.encode(), **kw)


def test_success_returns_data_and_bare_bodies():
    assert classify(200, '{"success":true,"message":null,"code":0,"data":[1]}') == [1]
    assert classify(200, '{"success":true,"message":"SUCCESS","code":0}') is None
    assert classify(200, '{"serverTime":5}', enveloped=False) == {"serverTime": 5}
    assert classify(200, '{"code":0,"data":{"a":1}}') == {"a": 1}


@pytest.mark.parametrize(
    ("status", "body", "error", "mutation"),
    [
        (400, '{"success":false,"message":"BALANCE_NOT_ENOUGH","code":0}', Rejected, False),
        (400, '{"success":false,"message":"Order not found","code":1152}', NotFound, False),
        (400, '{"success":false,"message":"NO_ORDER_MATCHES_YOUR_REQUEST","code":0}', NotFound, True),
        (200, '{"success":false,"message":"FAILED_ORDER_PARAMETER","code":0}', Rejected, True),
        (400, "not json", Rejected, False),
        (401, '{"success":false,"message":"Invalid Nonce","code":0}', AuthError, True),
        (401, "", AuthError, False),
        (429, '{"message":"TOO_MANY_REQUESTS","code":429}', RateLimited, True),
        (500, "", Unavailable, False),
        (503, '{"success":false,"message":"maintenance"}', Unavailable, False),
        (503, "", OutcomeUnknown, True),
        (200, "garbage", ProtocolError, False),
        (200, "garbage", OutcomeUnknown, True),
        (200, "[1,2]", ProtocolError, False),
        (200, '{"success":"maybe"}', OutcomeUnknown, True),
        (404, "Not Found", ProtocolError, False),
    ],
)
def test_error_classes(status, body, error, mutation):
    with pytest.raises(error) as info:
        classify(status, body, mutation=mutation)
    assert type(info.value) is error


def test_rejected_carries_codes():
    with pytest.raises(NotFound) as info:
        classify(400, '{"success":false,"message":"Order not found","code":"1152"}')
    assert (info.value.message_code, info.value.code, info.value.status) == ("Order not found", 1152, 400)


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("7", None, 7.0),
        ("2.5", {"period": "1m"}, 2.5),
        (None, {"period": "1m"}, 60.0),
        (None, {"period": "1s"}, 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", {}, 1.0),
        (None, None, 1.0),
    ],
)
def test_retry_after(header, body, expected):
    assert parse_retry_after(header, body) == expected
