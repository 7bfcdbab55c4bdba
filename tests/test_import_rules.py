"""The import graph, enforced (STYLE.md §6): contracts imports only stdlib and msgspec; services never import
each other; only the service kit imports nats; domain modules stay pure; no cycles anywhere."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")
# Modules that hold a service's pure logic must not reach for I/O, clocks or the environment.
PURE_FORBIDDEN = {
    "asyncio",
    "nats",
    "redis",
    "httpx",
    "aiohttp",
    "asyncpg",
    "websockets",
    "os",
    "time",
    "btcbot.runtime",
}
SHELL_MODULES = {
    "registry",  # reads installed packages' entry points and the environment (strategy plug-ins)
    "__init__",
    "__main__",
    "app",
    "handlers",
    "settings",
    "store",
    "migrations",
    "exchange",
    "sources",
    "feed",
    "userfeed",
    "poller",
    "polling",
    "tasks",
    "journal",
    "journal_reader",  # execution's journal, read-only, for the CLI (it knows the Redis key layout)
    "edge",
    "client",
    "gateway",
    "venue",
    "adapters",
    "io",
    "metrics",  # records into the process's meter (docs/metrics.md): an edge, like logging
    "queries",  # a service's read module for the CLI (the ledger's tables stay the ledger's): an edge
}


def package_sources() -> dict[str, Path]:
    """Module name -> file for every first-party module."""
    found: dict[str, Path] = {}
    for src in [*ROOT.glob("libs/*/src"), *ROOT.glob("services/*/src"), ROOT / "sim/src", ROOT / "cli/src"]:
        for path in src.rglob("*.py"):
            rel = path.relative_to(src).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    """Absolute names imported by a module (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


MODULES = package_sources()
IMPORTS = {m: imports_of(p, m) for m, p in MODULES.items()}


def top(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "btcbot" else parts[0]


def test_the_tree_was_found() -> None:
    assert {"btcbot.contracts", "btcbot.runtime", "btcbot.devstack", *(f"btcbot.{s}" for s in SERVICES)} <= set(MODULES)


def test_contracts_import_only_stdlib_and_msgspec() -> None:
    allowed = set(sys.stdlib_module_names) | {"msgspec", "btcbot.contracts", "__future__"}
    for module, names in IMPORTS.items():
        if module.startswith("btcbot.contracts"):
            bad = {n for n in names if top(n) not in allowed and n.split(".")[0] not in allowed}
            assert not bad, f"{module} imports {bad}"


def test_services_never_import_each_other_or_the_cli_or_the_simulator() -> None:
    for module, names in IMPORTS.items():
        owner = top(module)
        if owner.removeprefix("btcbot.") not in SERVICES:
            continue
        for name in names:
            other = top(name)
            if other.startswith("btcbot.") and other != owner:
                assert other.removeprefix("btcbot.") not in (*SERVICES, "cli", "sim"), f"{module} imports {name}"


def test_libraries_never_import_services() -> None:
    for module, names in IMPORTS.items():
        if top(module) in ("btcbot.contracts", "btcbot.runtime", "btcbot.btcturk", "btcbot.devstack"):
            for name in names:
                assert top(name).removeprefix("btcbot.") not in (*SERVICES, "cli", "sim"), f"{module} imports {name}"


def test_the_devstack_builds_only_on_contracts_and_the_runtime() -> None:
    # `btcbot up` and the tests share it: it starts services as processes, it never imports one (or the CLI).
    allowed = {"btcbot.devstack", "btcbot.runtime", "btcbot.contracts"}
    for module, names in IMPORTS.items():
        if top(module) == "btcbot.devstack":
            ours = {n for n in names if n.split(".")[0] == "btcbot"}
            assert {top(n) for n in ours} <= allowed, f"{module} imports {ours - allowed}"


def test_only_the_runtime_imports_nats() -> None:
    for module, names in IMPORTS.items():
        if any(n == "nats" or n.startswith("nats.") for n in names):
            assert top(module) == "btcbot.runtime", f"{module} imports nats"


def test_domain_modules_stay_pure() -> None:
    for module, names in IMPORTS.items():
        owner = top(module).removeprefix("btcbot.")
        leaf = module.rsplit(".", 1)[-1]
        if owner not in SERVICES or leaf in SHELL_MODULES:
            continue
        bad = {n for n in names if n.split(".")[0] in PURE_FORBIDDEN or top(n) in PURE_FORBIDDEN}
        assert not bad, f"domain module {module} imports {bad}; move I/O to the shell (app/handlers)"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in IMPORTS.items():
        for name in names:
            target = name
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*path, node])
        visiting.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for module in sorted(MODULES):
        visit(module, [])
