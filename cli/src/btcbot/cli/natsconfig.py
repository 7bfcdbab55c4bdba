"""nats-server configuration rendered from the identity table (btcbot.contracts.access), for every target.

- embedded (`btcbot up`; btcbot.devstack.natsusers): a config file with the users and their permissions,
  JetStream `sync_interval: always`;
- docker-compose: the same config file plus one env file per identity (NATS_USER, NATS_PASSWORD);
- Kubernetes: a Secret with the server config and one Secret per identity (JSON documents, valid YAML).

Passwords come from `secrets` (256 bits each) and are kept in an identities file (0600) so a second render
reuses them; nothing here prints a password. The server config holds them in clear text: it is written 0600
and, in Kubernetes, mounted from a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from btcbot.contracts.access import SERVICE_IDENTITIES
from btcbot.devstack.infra import DEFAULT_NATS_URL
from btcbot.devstack.natsusers import (
    IDENTITIES_FILE,
    SERVER_CONFIG_FILE,
    NatsUser,
    generate_users,
    load_users,
    save_users,
    server_config,
    user_auth,
    write_private,
)
from btcbot.runtime.jetstream import Connection, NatsAuth, connect, nats_auth_from_env

K8S_FILE = "nats-secrets.yaml"


def compose_env(user: NatsUser) -> str:
    """An env file for one identity's containers (docker-compose `env_file`)."""
    return "".join(f"{key}={value}\n" for key, value in user.env().items())


def k8s_secrets(users: Mapping[str, NatsUser], namespace: str, config_text: str) -> str:
    """Kubernetes Secrets: the server config, and the credentials of each identity (JSON documents)."""
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "btcbot-nats-server-config", "namespace": namespace},
            "type": "Opaque",
            "stringData": {SERVER_CONFIG_FILE: config_text},
        }
    ]
    for name, user in users.items():
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"btcbot-nats-{name}", "namespace": namespace},
                "type": "Opaque",
                "stringData": user.env(),
            }
        )
    return "".join(f"---\n{json.dumps(doc, indent=2)}\n" for doc in docs)


def render(out: Path, target: str, namespace: str = "btcbot", store_dir: str | None = None) -> list[Path]:
    """Write the files of `target` (embedded | compose | k8s | all) into `out`; returns what was written."""
    ids_path = out / IDENTITIES_FILE
    users = generate_users(existing=load_users(ids_path) if ids_path.exists() else None)
    save_users(ids_path, users)
    written = [ids_path]
    config_text = server_config(users, store_dir=store_dir)
    if target in ("embedded", "compose", "all"):
        write_private(out / SERVER_CONFIG_FILE, config_text)
        written.append(out / SERVER_CONFIG_FILE)
    if target in ("compose", "all"):
        for name in (*SERVICE_IDENTITIES, "operator", "canary", "reader", "admin"):
            path = out / f"nats-{name}.env"
            write_private(path, compose_env(users[name]))
            written.append(path)
    if target in ("k8s", "all"):
        path = out / K8S_FILE
        write_private(path, k8s_secrets(users, namespace, server_config(users, store_dir="/data/jetstream")))
        written.append(path)
    return written


def run_file_auth(run: Mapping[str, object], role: str) -> NatsAuth | None:
    """The `role` identity (operator, reader or canary) recorded in a run.json of `btcbot up`, if any."""
    table = run.get("nats_auth")
    entry = table.get(role) if isinstance(table, dict) else None
    if not isinstance(entry, dict):
        return None
    return user_auth(NatsUser(role, str(entry["user"]), str(entry["password"])))


def cli_auth(env: Mapping[str, str], role: str) -> NatsAuth | None:
    """How a CLI command connects: NATS_USER/NATS_PASSWORD (or a creds or nkey file) from the environment,
    else the `role` identity of the run file named by BTCBOT_RUN_FILE, else no authentication."""
    given = nats_auth_from_env(env)
    if given is not None:
        return given
    run_file = (env.get("BTCBOT_RUN_FILE") or "").strip()
    if run_file and Path(run_file).is_file():
        return run_file_auth(json.loads(Path(run_file).read_text()), role)
    return None


async def cli_connect(env: Mapping[str, str], name: str, role: str) -> Connection:
    """A CLI command's NATS connection: NATS_URL (default local), as `role` (see cli_auth), no endless reconnect."""
    return await connect(
        env.get("NATS_URL", DEFAULT_NATS_URL), name, 10, reconnect_forever=False, auth=cli_auth(env, role)
    )
