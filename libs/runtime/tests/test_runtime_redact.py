"""One redaction function: every credential form, every registered secret value, in logs and printed text."""

from __future__ import annotations

import io
import json
import logging
import string
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from btcbot.runtime import redact as r
from btcbot.runtime.logging import configure_logging, get_logger
from btcbot.runtime.settings import CommonSettings, ExchangeSettings, load_settings


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    r.forget_secrets()
    yield
    r.forget_secrets()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("nats://s3cr3tT0ken@127.0.0.1:4222", "s3cr3tT0ken"),  # a token alone
        ("connect to nats://svc-risk:risk-pass-1@nats:4222 failed", "risk-pass-1"),
        ("redis://:redis-pw-9@127.0.0.1:6390/0", "redis-pw-9"),
        ("postgresql://btcbot:pg%2Fpass@db:5432/btcbot", "pg%2Fpass"),
        ("GET http://sim:8800/sim/state?apiKey=key-123456&x=1", "key-123456"),
        ("https://h/cb?password=hunter2222&user=u", "hunter2222"),
        ("https://h/cb?token=tok-abcdef", "tok-abcdef"),
        ("https://h/cb?secret=sec-abcdef#frag", "sec-abcdef"),
        ("https://h/cb?access_token=at-abcdef", "at-abcdef"),
        ('{"api_secret": "QUJDREVGRw==", "ok": true}', "QUJDREVGRw=="),
        ('{"BTCBOT_SIGNING_KEYS": "k1:c2lnbmluZw=="}', "k1:c2lnbmluZw=="),
        ("{'password': 'pw-in-a-repr'}", "pw-in-a-repr"),
        ("Authorization: Bearer eyJhbGciOi.payload", "eyJhbGciOi.payload"),
        ("X-Sim-Admin-Token: admintok123", "admintok123"),
        ("NATS_PASSWORD=natspw-77 btcbot up", "natspw-77"),
    ],
)
def test_every_credential_form_is_masked(text: str, secret: str) -> None:
    out = r.redact(text)
    assert secret not in out
    assert r.REDACTED in out


def test_what_is_not_a_secret_is_kept() -> None:
    for text in (
        "nats://127.0.0.1:4222",
        "http://127.0.0.1:8080/readyz",
        "reason=UNSIGNED symbol=BTCTRY",
        '{"orders": 3, "trace_complete": true}',
        "user@example.com wrote",
    ):
        assert r.redact(text) == text
    assert r.redact("postgresql://app:pw@db/x") == "postgresql://app:***@db/x"  # the user name stays


alphabet = string.ascii_letters + string.digits + "+/=_-.~!%$"


@given(
    secret=st.text(alphabet, min_size=r.MIN_SECRET_LENGTH, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_a_registered_value_never_survives_whatever_surrounds_it(secret: str, before: str, after: str) -> None:
    r.forget_secrets()
    r.register_secret(secret)
    assert secret not in r.redact(before + secret + after)


def test_registration_from_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://tokenvalue42@127.0.0.1:4222")
    monkeypatch.setenv("REDIS_URL", "redis://:redispw42@127.0.0.1:6379/0")
    monkeypatch.setenv("BTCTURK_API_KEY", "public-key")
    monkeypatch.setenv("BTCTURK_API_SECRET", "YXBpLXNlY3JldC00Mg==")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "othertoken42")

    class Settings(CommonSettings, ExchangeSettings):
        pass

    load_settings(Settings)
    text = "tokenvalue42 redispw42 YXBpLXNlY3JldC00Mg== othertoken42 " + quote("YXBpLXNlY3JldC00Mg==", safe="")
    assert r.redact(text).split() == [r.REDACTED] * 5
    assert "public-key" in r.redact("public-key")  # an API key is masked where named, not hunted everywhere


def test_a_user_name_is_not_hunted_as_a_secret_but_a_nats_token_is() -> None:
    r.register_url("postgresql://postgres@127.0.0.1:5432/btcbot")
    r.register_url("redis://:btcbot@h:6379/0")  # shorter than MIN_SECRET_LENGTH: masked only as a form
    assert r.redact("btcbot.execution postgres") == "btcbot.execution postgres"
    r.register_url("nats://natstoken9@127.0.0.1:4222")
    assert r.redact("natstoken9 leaked") == f"{r.REDACTED} leaked"


def test_register_secrets_of_walks_nested_values() -> None:
    from btcbot.runtime.settings import register_secrets_of

    register_secrets_of({"k1": SecretStr("nested-secret-1"), "urls": ("nats://u:nested-pw-2@h",)})
    assert r.redact("nested-secret-1 nested-pw-2") == f"{r.REDACTED} {r.REDACTED}"


def test_log_lines_and_exceptions_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    r.register_secret("registered-secret-1")
    configure_logging("test", "i-1")
    try:
        log = get_logger("t")
        log.info("connecting", url="nats://lonetoken99@h:4222", password="pw-by-key-1", note="registered-secret-1")
        try:
            raise RuntimeError("cannot reach redis://:pw-in-exc-1@h:6379 with registered-secret-1")
        except RuntimeError:
            log.exception("failed")
        logging.getLogger("stdlib").warning("stdlib says %s", "postgresql://u:pw-stdlib-1@h/db")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sys.excepthook = sys.__excepthook__
    text = err.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert {line["event"] for line in lines} >= {"connecting", "failed"}
    for secret in ("lonetoken99", "pw-by-key-1", "registered-secret-1", "pw-in-exc-1", "pw-stdlib-1"):
        assert secret not in text


def test_a_crash_traceback_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    r.register_secret("crash-secret-1")
    configure_logging("test", "i-1")
    try:
        try:
            raise ValueError("bad DATABASE_URL postgresql://u:crash-secret-1@h/db")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sys.excepthook = sys.__excepthook__
    assert "ValueError" in err.getvalue()
    assert "crash-secret-1" not in err.getvalue()
