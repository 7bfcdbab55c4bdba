"""`btcbot nats-config`: the NATS server config and per-identity credentials."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "render the NATS server config and per-identity credentials (compose, Kubernetes)"


def add_arguments(natscfg: argparse.ArgumentParser) -> None:
    """Options of `btcbot nats-config`."""
    natscfg.add_argument("--out", type=Path, required=True, help="directory to write into (files are 0600)")
    natscfg.add_argument("--target", choices=("embedded", "compose", "k8s", "all"), default="all")
    natscfg.add_argument("--namespace", default="btcbot", help="Kubernetes namespace of the Secrets")
    natscfg.add_argument("--store-dir", help="JetStream store directory in the server config")


def run(args: argparse.Namespace) -> int:
    """Write the files and print their paths."""
    from btcbot.cli.natsconfig import render

    for path in render(args.out, args.target, args.namespace, args.store_dir):
        print(path)
    return 0
