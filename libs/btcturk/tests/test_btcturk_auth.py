"""Signing against values computed independently with openssl (see comments)."""

import logging
import pickle

import pytest

from btcbot.btcturk.auth import Secret, clock_offset_ms, rest_headers, sign, ws_login_message

# base64("btcturk-test-secret-bytes")
SECRET = Secret("YnRjdHVyay10ZXN0LXNlY3JldC1ieXRlcw==")
# printf 'pubkey1700000000000' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<secret bytes> -binary | base64
REST_SIG = "EZFEuIUVZOKemw6m7L4ilpKoE4GuQLpBolLWzHDJVJs="
# same over 'pubkey3000'
WS_SIG = "4Z9eIxTSKxDt40OjkYh0RiVX5g1AUeHPSANp1NyHmJU="


def test_rest_headers_match_openssl():
    headers = rest_headers("pubkey", SECRET, 1700000000000)
    assert headers == {
        "X-PCK": "pubkey",
        "X-Stamp": "1700000000000",
        "X-Signature": REST_SIG,
        "Content-Type": "application/json",
    }


def test_ws_login_signs_key_plus_nonce_not_timestamp():
    frame = ws_login_message("pubkey", SECRET, timestamp_ms=1700000000000, nonce=3000)
    assert frame == [
        114,
        {
            "type": 114,
            "publicKey": "pubkey",
            "timestamp": 1700000000000,
            "nonce": 3000,
            "signature": WS_SIG,
        },
    ]
    other_time = ws_login_message("pubkey", SECRET, timestamp_ms=1, nonce=3000)
    assert other_time[1]["signature"] == WS_SIG


def test_secret_never_shows(caplog):
    raw = SECRET.reveal()
    assert raw not in repr(SECRET)
    assert raw not in str(SECRET)
    assert raw not in f"{SECRET}"
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("secret %s %r", SECRET, SECRET)
    assert raw not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(SECRET)
    assert Secret(raw) == SECRET
    assert Secret("x") != SECRET


def test_bad_base64_secret_error_hides_secret():
    with pytest.raises(ValueError, match="not valid base64") as info:
        sign(Secret("not base64 !!"), "m")
    assert "not base64 !!" not in str(info.value)


def test_clock_offset_midpoint():
    assert clock_offset_ms(sent_ms=1000, received_ms=1100, server_ms=6050) == 5000
    assert clock_offset_ms(sent_ms=1000, received_ms=1000, server_ms=900) == -100
