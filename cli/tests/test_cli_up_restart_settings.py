"""`btcbot up` refuses a bad BTCBOT_RESTART_* value before it starts anything: one line naming it, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("variable", "value"), [("BTCBOT_RESTART_MAX", "many"), ("BTCBOT_RESTART_WINDOW", "0")])
def test_a_bad_restart_setting_stops_up_at_once(tmp_path: Path, variable: str, value: str) -> None:
    env = {"PATH": "/usr/bin:/bin", variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "btcbot.cli", "up", "--state-dir", str(tmp_path / "state"), "--duration", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"btcbot up: {variable}=")
    assert not (tmp_path / "state" / "infra").exists()  # nothing was started
