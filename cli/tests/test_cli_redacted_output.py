"""Everything the CLI prints passes through the kit's `redact`: results, errors and tracebacks."""

from __future__ import annotations

import io
import os
import sys
import traceback
from pathlib import Path

import pytest

from btcbot.cli.main import RedactingStream, redact_output
from btcbot.cli.up import write_private
from btcbot.runtime import redact as r


def test_cli_streams_mask_given_secrets_and_credential_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    r.forget_secrets()
    try:
        redact_output({"BTCTURK_API_SECRET": "c2VjcmV0LXZhbHVlLTE=", "NATS_URL": "nats://cliToken123@h:4222"})
        assert isinstance(sys.stdout, RedactingStream)
        redact_output({})  # idempotent: never wrapped twice
        assert not isinstance(sys.stdout._inner, RedactingStream)  # type: ignore[attr-defined]
        print("secret c2VjcmV0LXZhbHVlLTE= and cliToken123 and redis://:pw-form-1@h/0")
        try:
            raise RuntimeError("failed with c2VjcmV0LXZhbHVlLTE=")
        except RuntimeError:
            traceback.print_exc()
    finally:
        r.forget_secrets()
    assert out.getvalue() == "secret *** and *** and redis://:***@h/0\n"
    assert "RuntimeError: failed with ***" in err.getvalue()
    assert "c2VjcmV0LXZhbHVlLTE=" not in err.getvalue()


def test_run_file_is_private_from_creation(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    old = os.umask(0)  # even with a permissive umask
    try:
        write_private(path, '{"api_secret": "x"}')
        write_private(path, '{"api_secret": "y"}')  # replaced in place, still private
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == '{"api_secret": "y"}'
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]
