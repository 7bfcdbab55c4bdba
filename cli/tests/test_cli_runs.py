"""Named runs: names, the state root, which run a command finds, and what `up` plans to start or resume."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from btcbot.cli.runplan import plan_run
from btcbot.cli.runs import (
    RunError,
    check_run_name,
    database_name,
    find_run,
    list_runs,
    merge_run,
    new_run_name,
    run_dir,
    set_current,
    state_root,
)

NOW = datetime(2026, 12, 7, 2, 45, 12, tzinfo=UTC)


def _write_run(root: Path, name: str, **data: object) -> Path:
    directory = run_dir(root, name)
    directory.mkdir(parents=True)
    path = directory / "run.json"
    path.write_text(json.dumps({"name": name, **data}))
    return path


def test_generated_names_sort_by_start_time_and_are_valid() -> None:
    first = new_run_name(NOW, "a1b2")
    later = new_run_name(datetime(2026, 12, 7, 2, 45, 13, tzinfo=UTC), "0000")
    assert first == "20261207-024512-a1b2"
    assert sorted([later, first]) == [first, later]
    assert check_run_name(first) == first
    assert database_name(first) == "btcbot_20261207_024512_a1b2"


@pytest.mark.parametrize("bad", ["", "Demo", "-x", "a b", "../up", "x" * 49])
def test_a_bad_name_is_one_line_naming_the_option(bad: str) -> None:
    with pytest.raises(RunError, match="--name"):
        check_run_name(bad)


def test_state_root_option_then_environment_then_default() -> None:
    assert state_root(Path("/a"), {"BTCBOT_STATE_DIR": "/b"}) == Path("/a")
    assert state_root(None, {"BTCBOT_STATE_DIR": "/b"}) == Path("/b")
    assert state_root(None, {}) == Path(".state")


def test_discovery_order_run_file_then_environment_then_current(tmp_path: Path) -> None:
    one = _write_run(tmp_path, "one", nats_url="nats://h:1")
    two = _write_run(tmp_path, "two", nats_url="nats://h:2")
    set_current(tmp_path, "two")
    env = {"BTCBOT_STATE_DIR": str(tmp_path)}
    found = find_run(None, env)
    assert found is not None
    assert found.run.name == "two"
    assert found.source.endswith("current")
    by_env = find_run(None, {**env, "BTCBOT_RUN_FILE": str(one)})
    assert by_env is not None
    assert (by_env.run.name, by_env.source) == ("one", "BTCBOT_RUN_FILE")
    explicit = find_run(two, {**env, "BTCBOT_RUN_FILE": str(one)})
    assert explicit is not None
    assert (explicit.run.name, explicit.source) == ("two", "--run-file")


def test_servers_named_in_the_environment_win_over_the_current_run(tmp_path: Path) -> None:
    _write_run(tmp_path, "one")
    set_current(tmp_path, "one")
    assert find_run(None, {"BTCBOT_STATE_DIR": str(tmp_path), "NATS_URL": "nats://elsewhere:4222"}) is None
    assert find_run(None, {"BTCBOT_STATE_DIR": str(tmp_path / "empty")}) is None


def test_a_missing_run_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run file at"):
        find_run(tmp_path / "nope.json", {})


def test_merge_gives_servers_exchange_and_the_run_file(tmp_path: Path) -> None:
    path = _write_run(
        tmp_path,
        "one",
        nats_url="nats://h:1",
        database_url="postgresql://u@h/db",
        redis_url="redis://h/0",
        sim_url="http://127.0.0.1:9",
        api_key="k",
        api_secret="s",
        key_prefix="btcbot-one",
    )
    found = find_run(path, {})
    assert found is not None
    env = merge_run({"NATS_URL": "nats://other:4222", "HOME": "/root"}, found.run)
    assert env["NATS_URL"] == "nats://h:1"
    assert env["BTCBOT_RUN_FILE"] == str(path)
    assert env["BTCBOT_KEY_PREFIX"] == "btcbot-one"
    assert env["BTCTURK_BASE_URL"] == "http://127.0.0.1:9"
    assert env["HOME"] == "/root"


def test_live_means_the_recorded_up_still_runs(tmp_path: Path) -> None:
    _write_run(tmp_path, "a-live", pid=os.getpid(), status="running")
    _write_run(tmp_path, "b-stopped", pid=os.getpid(), status="stopped")
    _write_run(tmp_path, "c-gone", pid=2**22 + 12345, status="running")
    assert [(r.name, r.live) for r in list_runs(tmp_path)] == [
        ("a-live", True),
        ("b-stopped", False),
        ("c-gone", False),
    ]


def test_a_new_run_gets_its_own_database_and_prefix(tmp_path: Path) -> None:
    plan = plan_run(name="demo", resume=None, state_dir=None, root_option=tmp_path, env={}, now=NOW)
    assert (plan.name, plan.directory, plan.database, plan.key_prefix) == (
        "demo",
        tmp_path / "runs" / "demo",
        "btcbot_demo",
        "btcbot-demo",
    )
    given = plan_run(
        name=None, resume=None, state_dir=None, root_option=tmp_path, env={"BTCBOT_KEY_PREFIX": "p"}, now=NOW
    )
    assert given.key_prefix == "p"
    assert given.name.startswith("20261207-024512-")


def test_a_name_in_use_is_refused_and_resume_continues_it(tmp_path: Path) -> None:
    _write_run(tmp_path, "demo", status="stopped", database_name="btcbot_demo", key_prefix="kp", api_key="k")
    with pytest.raises(RunError, match="--resume demo"):
        plan_run(name="demo", resume=None, state_dir=None, root_option=tmp_path, env={}, now=NOW)
    plan = plan_run(name=None, resume="demo", state_dir=None, root_option=tmp_path, env={}, now=NOW)
    assert plan.resume
    assert (plan.database, plan.key_prefix, plan.previous["api_key"]) == ("btcbot_demo", "kp", "k")
    assert plan.sim_state_file == tmp_path / "runs" / "demo" / "sim-state.json"


def test_resume_refuses_a_live_run_an_unknown_one_and_other_choices(tmp_path: Path) -> None:
    _write_run(tmp_path, "live", status="running", pid=os.getpid())
    with pytest.raises(RunError, match="still live"):
        plan_run(name=None, resume="live", state_dir=None, root_option=tmp_path, env={}, now=NOW)
    with pytest.raises(RunError, match="no run of that name"):
        plan_run(name=None, resume="nope", state_dir=None, root_option=tmp_path, env={}, now=NOW)
    with pytest.raises(RunError, match="do not combine"):
        plan_run(name="x", resume="live", state_dir=None, root_option=tmp_path, env={}, now=NOW)


def test_state_dir_is_the_run_directory_with_a_unique_name(tmp_path: Path) -> None:
    plan = plan_run(name=None, resume=None, state_dir=tmp_path / "state", root_option=None, env={}, now=NOW)
    assert plan.directory == tmp_path / "state"
    assert plan.root is None
    assert plan.database.startswith("btcbot_20261207_024512_")


def test_status_lists_runs_marks_the_current_one_and_shows_progress(tmp_path: Path) -> None:
    from btcbot.cli.runctl import status_lines

    _write_run(tmp_path, "a", status="stopped", pid=1, infra={"nats": {"url": "nats://u:secret@h:1", "embedded": True}})
    _write_run(tmp_path, "b", status="running", pid=os.getpid(), started="2026-12-07T02:45:12+00:00")
    (run_dir(tmp_path, "b") / "progress.txt").write_text("books/s 3.1 intents 4 fills 2\n")
    set_current(tmp_path, "b")
    lines = status_lines(tmp_path)
    assert lines[0].startswith("  a  stopped  pid 1")
    assert "secret" not in lines[0]
    assert lines[1].startswith(f"* b  live  pid {os.getpid()}  started 2026-12-07T02:45:12+00:00")
    assert lines[1].endswith("last: books/s 3.1 intents 4 fills 2")
    assert status_lines(tmp_path / "none") == [f"no runs under {tmp_path / 'none'}"]


def test_a_nats_older_than_2_10_is_refused_and_an_unreachable_one_left_to_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import btcbot.runtime.jetstream as jetstream
    from btcbot.cli.runs import nats_too_old
    from btcbot.runtime.errors import DependencyUnavailable

    async def old(url: str, timeout: float, auth: object) -> tuple[str, None]:
        return "2.9.10", None

    monkeypatch.setattr(jetstream, "server_facts", old)
    reason = nats_too_old({"NATS_URL": "nats://127.0.0.1:4222"})
    assert reason is not None
    assert "2.9.10" in reason
    assert "2.10" in reason

    async def gone(url: str, timeout: float, auth: object) -> tuple[str, None]:
        raise DependencyUnavailable("connection refused")

    monkeypatch.setattr(jetstream, "server_facts", gone)
    assert nats_too_old({"NATS_URL": "nats://127.0.0.1:1"}) is None
