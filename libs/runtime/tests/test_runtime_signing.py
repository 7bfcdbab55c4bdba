"""Per-run keys: each process gets only the keys it needs, and the settings read them back."""

from __future__ import annotations

import pytest

from btcbot.contracts.messages import KillSwitch
from btcbot.contracts.signing import format_keys, verify
from btcbot.runtime.errors import SettingsError
from btcbot.runtime.settings import CommonSettings, load_settings
from btcbot.runtime.signing import RunKeys


def settings_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> CommonSettings:
    for name in ("BTCBOT_SIGNING_KEYS", "BTCBOT_SIGNING_KEY_ID", "BTCBOT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(CommonSettings)


def test_each_service_gets_only_the_keys_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RunKeys.generate()
    risk = settings_with(monkeypatch, keys.service_env("risk"))
    signer = risk.signer()
    assert signer is not None
    assert signer.key_id == keys.risk_key_id
    assert set(risk.verification_keys()) == {keys.risk_key_id, keys.operator_key_id}
    execution = settings_with(monkeypatch, keys.service_env("execution"))
    assert execution.signer() is None
    assert execution.verification_keys() == {keys.risk_key_id: keys.risk_secret}  # never the operator's
    ledger = settings_with(monkeypatch, keys.service_env("ledger"))
    assert ledger.verification_keys() == {keys.operator_key_id: keys.operator_secret}
    assert keys.service_env("strategy") == {}
    assert keys.service_env("marketdata") == {}


def test_an_operator_signed_kill_verifies_where_operator_keys_are_held(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RunKeys.generate()
    kill = keys.operator_signer().sign(KillSwitch(id="k", ts_ns=1, engaged=True, reason="r", operator="o"))
    assert verify(kill, settings_with(monkeypatch, keys.service_env("risk")).verification_keys()) is None
    assert verify(kill, settings_with(monkeypatch, keys.service_env("execution")).verification_keys()) is not None


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RunKeys.generate()
    settings = settings_with(monkeypatch, keys.service_env("risk"))
    env = keys.service_env("risk")
    for text in (repr(settings), repr(keys), repr(settings.signer())):
        assert env["BTCBOT_SIGNING_KEY"] not in text
        assert env["BTCBOT_SIGNING_KEYS"].split(":", 1)[1] not in text


def test_a_bad_verification_key_names_the_variable_not_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="BTCBOT_SIGNING_KEYS") as info:
        settings_with(monkeypatch, {"BTCBOT_SIGNING_KEYS": "k1:c2hvcnQ="})
    assert "c2hvcnQ=" not in str(info.value)


def test_the_own_key_listed_with_another_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    keys, other = RunKeys.generate(), RunKeys.generate()
    env = keys.service_env("risk")
    clash = {keys.risk_key_id: other.risk_secret}
    with pytest.raises(SettingsError, match=r"BTCBOT_SIGNING_KEY: .*also in BTCBOT_SIGNING_KEYS"):
        settings_with(monkeypatch, {**env, "BTCBOT_SIGNING_KEYS": format_keys(clash)})
    same = {keys.risk_key_id: keys.risk_secret}
    assert settings_with(monkeypatch, {**env, "BTCBOT_SIGNING_KEYS": format_keys(same)}).signer() is not None
