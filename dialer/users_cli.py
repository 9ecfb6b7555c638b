"""`dialer users add|list|passwd|disable`: the people who sign in to the pages."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from dialer.config import load_config
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a user (the password is asked for, never an argument)")
    add.add_argument("username")
    add.add_argument("--tenant", required=True, help="tenant name (created on first use)")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--agent-id", help="for role agent: the agent id calls are routed to")
    add.add_argument("--display-name", help="the name the pages show (default: the username)")
    add.add_argument("--language", default="en", choices=users.LANGUAGES)
    listing = sub.add_parser("list", help="users and their roles (never their passwords)")
    listing.add_argument("--tenant", help="only this tenant's users")
    listing.add_argument("--json", action="store_true")
    passwd = sub.add_parser("passwd", help="set a new password and end the user's sessions")
    passwd.add_argument("username")
    passwd.add_argument("--tenant", required=True)
    disable = sub.add_parser("disable", help="refuse the user's logins and end their sessions")
    disable.add_argument("username")
    disable.add_argument("--tenant", required=True)
    for p in (add, passwd):
        p.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input (for scripts)",
        )
    for p in (add, listing, passwd, disable):
        # Accepted after the action too; SUPPRESS keeps an absent one from hiding the outer one.
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config file")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # Only the line end goes: spaces are part of a passphrase.
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Same password again: ") != password:
            raise ValueError("the two passwords differ")
    users.check_password(password)
    return password


def _find(store: Store, tenant: str, username: str) -> users.UserRow:
    user = users.find_user(store, tenant, username)
    if user is None:
        raise ValueError(f"no user {username!r} in tenant {tenant!r}")
    return user


def _print_table(rows: list[users.UserRow]) -> None:
    header = ("TENANT", "USERNAME", "ROLE", "AGENT ID", "LANGUAGE", "STATUS", "NAME")
    lines = [header] + [
        (
            u.tenant,
            u.username,
            u.role.value,
            u.agent_id or "-",
            u.language,
            "disabled" if u.disabled else "active",
            u.display_name,
        )
        for u in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _run(args: argparse.Namespace, store: Store) -> int:
    if args.action == "list":
        rows = users.list_users(store, args.tenant)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "tenant": u.tenant,
                            "username": u.username,
                            "display_name": u.display_name,
                            "role": u.role.value,
                            "agent_id": u.agent_id,
                            "language": u.language,
                            "disabled": u.disabled,
                            "created_at": u.created_at.isoformat(),
                            "password_changed_at": u.password_changed_at.isoformat(),
                        }
                        for u in rows
                    ],
                    indent=2,
                )
            )
        elif rows:
            _print_table(rows)
        else:
            print("no users" + (f" in tenant {args.tenant!r}" if args.tenant else ""))
        return 0
    if args.action == "add":
        password = _read_password(args.password_stdin)
        user = users.add_user(
            store,
            args.tenant,
            args.username,
            password,
            args.role,
            display_name=args.display_name,
            language=args.language,
            agent_id=args.agent_id,
        )
        agent = f", agent id {user.agent_id}" if user.agent_id else ""
        print(f"added {user.role.value} {user.username!r} to tenant {user.tenant!r}{agent}")
        return 0
    user = _find(store, args.tenant, args.username)
    if args.action == "passwd":
        ended = users.set_password(store, user.id, _read_password(args.password_stdin))
        print(f"password of {user.username!r} changed; {ended} session(s) ended")
    else:
        ended = users.disable(store, user.id)
        print(f"{user.username!r} disabled; {ended} session(s) ended")
    return 0


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    try:
        return _run(args, store)
    except ValueError as exc:
        print(f"dialer users {args.action}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
