"""`dialer db`: bring the schema up to date, show where it is, or take it back."""

from __future__ import annotations

import argparse
from pathlib import Path

from dialer.config import load_config
from dialer.store.db import (
    create_store_engine,
    current_revision,
    downgrade,
    head_revision,
    safe_url,
    upgrade,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = sub.add_parser("upgrade", help="apply pending migrations")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    current = sub.add_parser("current", help="print the database's schema revision and the newest")
    down = sub.add_parser("downgrade", help="revert migrations ('base' drops every table)")
    down.add_argument("revision", help="target revision, e.g. -1 or base")
    for action in (up, current, down):
        # Accepted after the action too; SUPPRESS keeps an absent one from hiding the outer one.
        action.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, help="TOML config file"
        )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = config.effective_database_url
    engine = create_store_engine(url)
    try:
        if args.db_command == "upgrade":
            upgrade(engine, args.revision)
            print(f"{safe_url(url)}: at revision {current_revision(engine)}")
        elif args.db_command == "downgrade":
            downgrade(engine, args.revision)
            print(f"{safe_url(url)}: at revision {current_revision(engine) or 'base (empty)'}")
        else:
            current = current_revision(engine)
            head = head_revision()
            state = "up to date" if current == head else f"behind (newest is {head})"
            print(f"{safe_url(url)}: at revision {current or 'base (empty)'}, {state}")
            return 0 if current == head else 1
    finally:
        engine.dispose()
    return 0
