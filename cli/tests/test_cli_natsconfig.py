"""`btcbot nats-config` and the credentials plumbing: files private, passwords kept, configs the server accepts."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from btcbot.cli.natsconfig import K8S_FILE, cli_auth, render, run_file_auth
from btcbot.contracts.access import IDENTITIES
from btcbot.devstack.infra import find_executable
from btcbot.devstack.natsusers import (
    IDENTITIES_FILE,
    SERVER_CONFIG_FILE,
    NatsUser,
    generate_users,
    load_users,
    server_config,
)
from btcbot.runtime.jetstream import NatsAuth, nats_auth_from_env
from btcbot.runtime.service import service_auth
from btcbot.runtime.settings import CommonSettings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_render_all_writes_private_files_and_keeps_passwords(tmp_path: Path) -> None:
    written = render(tmp_path, "all", namespace="prod", store_dir="/data/js")
    assert all(_mode(p) == 0o600 for p in written)
    users = load_users(tmp_path / IDENTITIES_FILE)
    assert set(users) == {row.name for row in IDENTITIES}
    assert len({u.password for u in users.values()}) == len(users)
    again = render(tmp_path, "all", namespace="prod")
    assert load_users(tmp_path / IDENTITIES_FILE) == users  # a re-render does not rotate
    assert set(again) == set(written)
    risk_env = (tmp_path / "nats-risk.env").read_text()
    assert f"NATS_PASSWORD={users['risk'].password}\n" in risk_env
    assert "NATS_INBOX_PREFIX=_INBOX.risk\n" in risk_env
    docs = [d for d in yaml.safe_load_all((tmp_path / K8S_FILE).read_text()) if d]
    secrets = {d["metadata"]["name"]: d for d in docs}
    assert secrets["btcbot-nats-execution"]["stringData"]["NATS_PASSWORD"] == users["execution"].password
    assert all(d["metadata"]["namespace"] == "prod" and d["kind"] == "Secret" for d in docs)
    assert "sync_interval: always" in secrets["btcbot-nats-server-config"]["stringData"][SERVER_CONFIG_FILE]


def test_the_server_accepts_the_generated_config(tmp_path: Path) -> None:
    binary = find_executable("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    config = tmp_path / "nats.conf"
    config.write_text(server_config(generate_users(), store_dir=str(tmp_path / "js")))
    result = subprocess.run([str(binary), "-c", str(config), "-t"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_command_prints_paths_only(tmp_path: Path) -> None:
    # A subprocess: the CLI's main() reconfigures logging for the whole process.
    result = subprocess.run(
        [sys.executable, "-m", "btcbot.cli", "nats-config", "--out", str(tmp_path), "--target", "compose"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for user in load_users(tmp_path / IDENTITIES_FILE).values():
        assert user.password not in result.stdout + result.stderr
    assert str(tmp_path / SERVER_CONFIG_FILE) in result.stdout
    assert not (tmp_path / K8S_FILE).exists()


def test_passwords_stay_out_of_reprs() -> None:
    user = NatsUser("risk", "risk", "s3cret-value")
    assert "s3cret-value" not in repr(user)
    auth = NatsAuth(user="risk", password="s3cret-value")
    assert "s3cret-value" not in repr(auth)
    settings = CommonSettings(NATS_USER="risk", NATS_PASSWORD="s3cret-value")  # type: ignore[call-arg]
    assert "s3cret-value" not in repr(settings)
    derived = service_auth(settings)
    assert derived is not None
    assert derived.options() == {"user": "risk", "password": "s3cret-value", "inbox_prefix": "_INBOX.risk"}


def test_no_credentials_means_no_auth() -> None:
    assert service_auth(CommonSettings()) is None
    assert nats_auth_from_env({"NATS_URL": "nats://x:4222"}) is None
    assert cli_auth({}, "operator") is None


def test_cli_takes_the_environment_first_then_the_run_file(tmp_path: Path) -> None:
    run = {
        "nats_auth": {
            "operator": {"user": "operator", "password": "op-pw"},
            "reader": {"user": "reader", "password": "rd-pw"},
        }
    }
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(run))
    from_run = cli_auth({"BTCBOT_RUN_FILE": str(run_file)}, "operator")
    assert from_run is not None
    assert from_run.options() == {"user": "operator", "password": "op-pw", "inbox_prefix": "_INBOX.operator"}
    given = cli_auth({"BTCBOT_RUN_FILE": str(run_file), "NATS_USER": "reader", "NATS_PASSWORD": "x"}, "operator")
    assert given is not None
    assert given.user == "reader"
    assert run_file_auth({}, "reader") is None
