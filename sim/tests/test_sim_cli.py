"""The command line: option parsing, and a real process that binds port 0, reports it and stops on SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from btcbot.sim.__main__ import build_parser, config_from_args, parse_funds
from btcbot.sim.config import DEMO_VOLATILITY_SCALE, KNOWN_SYMBOLS

SECRET = base64.b64encode(b"cli-secret-cli-secret").decode()


def test_parse_funds() -> None:
    assert parse_funds("TRY=1000000, btc=1.5,") == {"TRY": Decimal(1_000_000), "BTC": Decimal("1.5")}
    for bad in ("TRY", "TRY=abc", "TRY=-1"):
        with pytest.raises(ValueError, match=r"ASSET=AMOUNT|bad amount"):
            parse_funds(bad)


def test_config_from_args() -> None:
    args = build_parser().parse_args(
        ["--symbols", "BTCTRY,ETHTRY", "--seed", "3", "--api-key", "k", "--api-secret", SECRET, "--fund", "TRY=5"]
    )
    config = config_from_args(args)
    assert [s.name for s in config.symbols] == ["BTCTRY", "ETHTRY"]
    assert [c.symbol for c in config.currencies] == ["TRY", "BTC", "ETH"]
    assert config.seed == 3
    (account,) = config.accounts
    assert (account.api_key, account.balances) == ("k", {"TRY": Decimal(5)})
    for argv in (["--symbols", "NOPETRY"], ["--api-key", "k"], ["--api-key", "k", "--api-secret", "%%%"]):
        with pytest.raises(ValueError, match=r"unknown symbols|go together|base64"):
            config_from_args(build_parser().parse_args(argv))


def test_market_profile_options() -> None:
    def market(*argv: str) -> float:
        return config_from_args(build_parser().parse_args(list(argv))).market.volatility_scale

    assert market() == 1.0
    assert market("--profile", "demo") == DEMO_VOLATILITY_SCALE
    assert market("--profile", "demo", "--volatility-scale", "3") == 3.0
    assert market("--volatility-scale", "0") == 0.0
    with pytest.raises(ValueError, match=r"--volatility-scale must be a non-negative number, got -1\.0"):
        market("--volatility-scale", "-1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--profile", "wild"])
    every = config_from_args(build_parser().parse_args(["--symbols", "all"]))
    assert len(every.symbols) == len(KNOWN_SYMBOLS) >= 20
    assert {c.symbol for c in every.currencies} >= {"TRY", "USDT", "AVAX", "DOGE"}


def test_the_documented_port_is_the_default() -> None:
    assert build_parser().parse_args([]).port == 8800
    assert build_parser().parse_args(["--port", "0"]).port == 0  # `btcbot up` and the tests ask for a free one


def test_process_writes_port_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "SIM_API_KEY": "env-key", "SIM_API_SECRET": SECRET, "SIM_ADMIN_TOKEN": "cli-admin-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "btcbot.sim", "--port", "0", "--port-file", str(port_file), "--symbols", "BTCTRY"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "port file never appeared"
            time.sleep(0.05)
        port = int(port_file.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/health", timeout=5) as resp:
            assert json.load(resp)["symbols"] == ["BTCTRY"]
        state_url = f"http://127.0.0.1:{port}/sim/state?apiKey=env-key"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(state_url, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(state_url, headers={"Authorization": "Bearer cli-admin-token"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.load(resp)["balances"]["TRY"]["total"] == "1000000"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not port_file.exists()
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
