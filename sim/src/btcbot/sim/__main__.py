"""Command line: `python -m btcbot.sim` / `btcturk-sim`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import logging
import os
import signal
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

from aiohttp import web

from btcbot.sim.app import create_app
from btcbot.sim.config import MARKET_PROFILES, Account, SimConfig, currencies_for, default_symbols
from btcbot.sim.dataset import load_dataset

log = logging.getLogger("btcbot.sim")

DEFAULT_FUNDS = "TRY=1000000,BTC=1,ETH=20,USDT=10000"


def parse_funds(text: str) -> dict[str, Decimal]:
    """`TRY=1000000,BTC=1` -> {"TRY": Decimal("1000000"), "BTC": Decimal("1")}."""
    funds: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        asset, sep, amount = part.partition("=")
        if not sep:
            raise ValueError(f"expected ASSET=AMOUNT, got {part!r}")
        try:
            value = Decimal(amount)
        except InvalidOperation as exc:
            raise ValueError(f"bad amount in {part!r}") from exc
        if not value.is_finite() or value < 0:
            raise ValueError(f"bad amount in {part!r}")
        funds[asset.strip().upper()] = value
    return funds


def build_parser() -> argparse.ArgumentParser:
    """The CLI options."""
    p = argparse.ArgumentParser(prog="btcturk-sim", description="BTCTurk-compatible exchange simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=int, default=8800, help="port to listen on (default 8800; 0: a free one, see --port-file)"
    )
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--symbols",
        default="BTCTRY,ETHTRY,BTCUSDT,USDTTRY",
        help="comma-separated pairs, or `all` for every known pair (see data/exchangeinfo.json)",
    )
    p.add_argument(
        "--profile",
        choices=sorted(MARKET_PROFILES),
        default="realistic",
        help="market profile: realistic (each pair's own volatility) or demo (15x: a 30 bps move comes in seconds)",
    )
    p.add_argument(
        "--volatility-scale",
        type=float,
        help="multiply every pair's volatility by this (overrides the profile's scale)",
    )
    p.add_argument("--tick-interval", type=float, default=0.2)
    p.add_argument("--api-key", default=os.environ.get("SIM_API_KEY"))
    p.add_argument("--api-secret", default=os.environ.get("SIM_API_SECRET"), help="base64, like BTCTurk's")
    p.add_argument("--fund", default=DEFAULT_FUNDS, help="initial balances of the account")
    p.add_argument("--no-rate-limits", action="store_true", help="do not enforce BTCTurk's rate limits")
    p.add_argument(
        "--dataset",
        metavar="PATH|builtin",
        help="play back recorded trades and quotes (JSON lines) instead of the random walk on their pairs",
    )
    p.add_argument("--speed", type=float, default=1.0, help="playback pace: recorded time x this (default 1.0)")
    p.add_argument(
        "--admin-token",
        default=os.environ.get("SIM_ADMIN_TOKEN"),
        help="token the /sim/* admin endpoints require (env SIM_ADMIN_TOKEN); unset: they answer 401",
    )
    p.add_argument(
        "--state-file",
        type=Path,
        help="restore the exchange (wallets, orders, trades, ids, prices) from here if it exists; save on exit",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Turn parsed options into a SimConfig; ValueError on bad input."""
    symbols = default_symbols([s.strip() for s in args.symbols.split(",") if s.strip()])
    accounts: tuple[Account, ...] = ()
    if args.api_key or args.api_secret:
        if not (args.api_key and args.api_secret):
            raise ValueError("--api-key and --api-secret go together")
        try:
            base64.b64decode(args.api_secret, validate=True)
        except binascii.Error as exc:
            raise ValueError("--api-secret must be base64") from exc
        accounts = (Account(args.api_key, args.api_secret, parse_funds(args.fund)),)
    if args.tick_interval <= 0:
        raise ValueError("--tick-interval must be positive")
    if not args.speed > 0 or args.speed == float("inf"):
        raise ValueError("--speed must be a positive number")
    market = MARKET_PROFILES[args.profile]
    if args.volatility_scale is not None:
        if not 0 <= args.volatility_scale < float("inf"):
            raise ValueError(f"--volatility-scale must be a non-negative number, got {args.volatility_scale}")
        market = dataclasses.replace(market, volatility_scale=args.volatility_scale)
    dataset = None
    if args.dataset:
        dataset = load_dataset(args.dataset)
        if not set(dataset.pairs) & {s.name for s in symbols}:
            raise ValueError(f"--dataset {args.dataset} has no records for {args.symbols} (it has {dataset.pairs})")
    return SimConfig(
        symbols=symbols,
        currencies=currencies_for(symbols),
        accounts=accounts,
        seed=args.seed,
        tick_interval=args.tick_interval,
        market=market,
        rate_limits_enabled=not args.no_rate_limits,
        dataset=dataset,
        playback_speed=args.speed,
        admin_token=args.admin_token or None,
    )


def _write_port_file(path: Path, port: int) -> None:
    # Write then rename so a supervisor polling the file never reads half a number.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


async def serve(
    config: SimConfig, host: str, port: int, port_file: Path | None, state_file: Path | None = None
) -> None:
    """Run the simulator until SIGTERM or SIGINT (then save to `state_file`, if given)."""
    runner = web.AppRunner(create_app(config, state_file=state_file), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    log.info("listening on http://%s:%d (symbols %s)", host, bound, ",".join(s.name for s in config.symbols))
    if config.dataset is not None:
        log.info(
            "playing %s for %s at %gx, looping",
            config.dataset.source,
            ",".join(p for p in config.dataset.pairs if config.symbol(p)),
            config.playback_speed,
        )
    if not config.accounts:
        log.warning("no account configured: private endpoints will answer 401")
    if not config.admin_token:
        log.warning("no admin token (--admin-token / SIM_ADMIN_TOKEN): /sim/* admin endpoints will answer 401")
    if port_file is not None:
        _write_port_file(port_file, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        if port_file is not None:
            port_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `btcturk-sim`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        asyncio.run(serve(config, args.host, args.port, args.port_file, args.state_file))
    except ValueError as exc:  # a state file that is not a saved state
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
