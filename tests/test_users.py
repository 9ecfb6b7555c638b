"""Users of the pages: argon2id passwords, sessions that end, the audit trail, `dialer users`."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from dialer.cli import main
from dialer.errors import StoreError
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role, User, WebSession

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


def _agent(store: Store, username: str = "alice", tenant: str = "acme") -> users.UserRow:
    return users.add_user(store, tenant, username, PASSWORD, Role.AGENT, agent_id="agent1", now=T0)


def _stored_hash(store: Store, user_id: int) -> str:
    with store.begin() as conn:
        return str(
            conn.execute(sa.select(User.password_hash).where(User.id == user_id)).scalar_one()
        )


def test_password_is_stored_as_argon2id_only(store: Store) -> None:
    user = _agent(store)
    stored = _stored_hash(store, user.id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert user.role is Role.AGENT
    assert user.tenant == "acme"
    assert user.display_name == "alice"  # defaults to the username
    assert not hasattr(user, "password_hash")


def test_right_password_admits_and_anything_else_is_refused(store: Store) -> None:
    user = _agent(store)
    users.add_user(store, "other", "alice", "another password", Role.SUPERVISOR)
    found = users.authenticate(store, "acme", "alice", PASSWORD)
    assert found is not None and found.id == user.id
    assert users.authenticate(store, "acme", "alice", PASSWORD + "x") is None
    assert users.authenticate(store, "acme", "alice", PASSWORD.upper()) is None
    assert users.authenticate(store, "acme", "bob", PASSWORD) is None
    assert users.authenticate(store, "nosuch", "alice", PASSWORD) is None
    # the same username in another tenant is another person with another password
    assert users.authenticate(store, "other", "alice", PASSWORD) is None


def test_an_unknown_user_takes_about_as_long_as_a_wrong_password(store: Store) -> None:
    _agent(store)
    users.authenticate(store, "acme", "nobody", "x" * 10)  # the dummy hash is made once

    def timed(username: str) -> float:
        start = time.perf_counter()
        for _ in range(3):
            assert users.authenticate(store, "acme", username, "wrong password") is None
        return time.perf_counter() - start

    known, unknown = timed("alice"), timed("nobody")
    # Without the dummy verification an unknown name would answer ~50 times faster.
    assert unknown > known * 0.4, (known, unknown)


def test_disabled_user_cannot_log_in_and_loses_sessions(store: Store) -> None:
    user = _agent(store)
    token = users.create_session(store, user.id, ttl_s=3600, now=T0)
    assert users.disable(store, user.id) == 1
    assert users.authenticate(store, "acme", "alice", PASSWORD) is None
    assert users.session_user(store, token, now=T0) is None
    with pytest.raises(StoreError, match="disabled"):
        users.create_session(store, user.id, ttl_s=3600, now=T0)
    listed = users.list_users(store, "acme")
    assert [u.disabled for u in listed] == [True]


def test_bad_new_users_are_refused_with_the_reason(store: Store) -> None:
    with pytest.raises(ValueError, match="at least 8 characters"):
        users.add_user(store, "acme", "bob", "short", Role.SUPERVISOR)
    with pytest.raises(ValueError, match="needs an agent id"):
        users.add_user(store, "acme", "bob", PASSWORD, Role.AGENT)
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        users.add_user(store, "acme", "bob", PASSWORD, "boss")
    with pytest.raises(ValueError, match="unknown language"):
        users.add_user(store, "acme", "bob", PASSWORD, Role.QA, language="fr")
    with pytest.raises(ValueError, match="username"):
        users.add_user(store, "acme", " bob", PASSWORD, Role.QA)
    _agent(store)
    with pytest.raises(StoreError, match="'alice' already exists in tenant 'acme'"):
        _agent(store)
    assert [u.username for u in users.list_users(store)] == ["alice"]


def test_a_hash_with_old_parameters_is_upgraded_at_login(store: Store) -> None:
    user = _agent(store)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with store.begin() as conn:
        conn.execute(sa.update(User).where(User.id == user.id).values(password_hash=weak))
    assert users.authenticate(store, "acme", "alice", PASSWORD) is not None
    upgraded = _stored_hash(store, user.id)
    assert upgraded != weak
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert users.authenticate(store, "acme", "alice", PASSWORD) is not None


def test_session_token_is_stored_only_as_its_sha256(store: Store) -> None:
    user = _agent(store)
    token = users.create_session(store, user.id, ttl_s=3600, now=T0)
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    with store.begin() as conn:
        stored = conn.execute(sa.select(WebSession.token_hash)).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    found = users.session_user(store, token, now=T0 + timedelta(minutes=5))
    assert found is not None and found.username == "alice"
    assert users.session_user(store, "not-a-token", now=T0) is None
    assert users.session_user(store, stored[0], now=T0) is None  # the hash is no token


def test_session_expires_after_its_lifetime_without_use(store: Store) -> None:
    user = _agent(store)
    token = users.create_session(store, user.id, ttl_s=600, now=T0)
    idle = users.create_session(store, user.id, ttl_s=600, now=T0)
    # used every 5 minutes, a 10-minute session lives on
    for minutes in (5, 10, 15):
        assert users.session_user(store, token, now=T0 + timedelta(minutes=minutes)) is not None
    assert users.session_user(store, token, now=T0 + timedelta(minutes=24)) is not None
    # left alone for 10 minutes, it is over, and stays over
    assert users.session_user(store, idle, now=T0 + timedelta(minutes=10)) is None
    assert users.session_user(store, idle, now=T0) is None
    assert users.session_user(store, token, now=T0 + timedelta(minutes=40)) is None


def test_logout_and_new_password_end_sessions(store: Store) -> None:
    user = _agent(store)
    other = _agent(store, "bob")
    first = users.create_session(store, user.id, ttl_s=3600, now=T0)
    second = users.create_session(store, user.id, ttl_s=3600, now=T0)
    bobs = users.create_session(store, other.id, ttl_s=3600, now=T0)
    assert users.end_session(store, first) is True
    assert users.end_session(store, first) is False
    assert users.session_user(store, first, now=T0) is None
    assert users.session_user(store, second, now=T0) is not None
    assert users.set_password(store, user.id, "a new passphrase", now=T0) == 1
    assert users.session_user(store, second, now=T0) is None
    assert users.session_user(store, bobs, now=T0) is not None
    assert users.authenticate(store, "acme", "alice", PASSWORD) is None
    assert users.authenticate(store, "acme", "alice", "a new passphrase") is not None
    with pytest.raises(ValueError, match="at least 8"):
        users.set_password(store, user.id, "1234567")
    assert users.end_sessions_of_user(store, other.id) == 1


def test_language_is_kept(store: Store) -> None:
    user = _agent(store)
    users.set_language(store, user.id, "zh-CN")
    found = users.get_user(store, user.id)
    assert found is not None and found.language == "zh-CN"
    with pytest.raises(ValueError, match="unknown language 'de'"):
        users.set_language(store, user.id, "de")
    with pytest.raises(StoreError, match="does not exist"):
        users.set_language(store, user.id + 100, "en")


def test_audit_lists_a_tenants_events_newest_first(store: Store) -> None:
    alice = _agent(store)
    bob = _agent(store, "bob", tenant="other")
    for i in range(3):
        users.record_audit(
            store,
            alice.tenant_id,
            alice.id,
            "alice",
            "campaign_controls",
            "campaign 1",
            {"max_dial_ratio": i},
            {"max_dial_ratio": i + 1},
            "10.0.0.5",
            T0 + timedelta(seconds=i),
        )
    users.record_audit(store, bob.tenant_id, bob.id, "bob", "forbidden", now=T0)
    events = users.list_audit(store, alice.tenant_id, limit=2)
    assert [e.new_value for e in events] == [{"max_dial_ratio": 3}, {"max_dial_ratio": 2}]
    assert events[0].username == "alice" and events[0].client == "10.0.0.5"
    assert events[0].at == T0 + timedelta(seconds=2)
    assert [e.action for e in users.list_audit(store, bob.tenant_id)] == ["forbidden"]


# ---- dialer users ----


@pytest.fixture
def config_file(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = tmp_path / "dialer.toml"
    path.write_text(f'database_url = "{database_url}"\n', encoding="utf-8")
    return path


def _cli(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", *argv])


def test_cli_adds_lists_and_changes_passwords(
    config_file: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf = ["--config", str(config_file)]
    add = ["add", "--tenant", "acme", "--role", "agent", "--agent-id", "agent1", "alice"]
    assert _cli(monkeypatch, PASSWORD + "\n", *conf, *add, "--password-stdin") == 0
    assert "added agent 'alice' to tenant 'acme', agent id agent1" in capsys.readouterr().out
    sup = ["add", "--tenant", "acme", "--role", "supervisor", "--display-name", "Su Pei", "sue"]
    assert _cli(monkeypatch, "passphrase two\n", *sup, "--password-stdin", *conf) == 0
    capsys.readouterr()

    assert _cli(monkeypatch, "", *conf, "list") == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["TENANT", "USERNAME", "ROLE"]
    assert "alice" in table and "agent1" in table and "Su Pei" in table
    assert "argon2" not in table

    assert _cli(monkeypatch, "", "list", "--json", "--tenant", "acme", *conf) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["username"], u["role"], u["agent_id"]) for u in listed] == [
        ("alice", "agent", "agent1"),
        ("sue", "supervisor", None),
    ]
    assert all("hash" not in key for u in listed for key in u)

    store = open_store(database_url)
    try:
        alice = users.find_user(store, "acme", "alice")
        assert alice is not None
        token = users.create_session(store, alice.id, ttl_s=3600)
        passwd = ["passwd", "--tenant", "acme", "alice", "--password-stdin"]
        assert _cli(monkeypatch, "brand new secret\n", *conf, *passwd) == 0
        assert "1 session(s) ended" in capsys.readouterr().out
        assert users.session_user(store, token) is None
        assert users.authenticate(store, "acme", "alice", PASSWORD) is None
        assert users.authenticate(store, "acme", "alice", "brand new secret") is not None

        assert _cli(monkeypatch, "", *conf, "disable", "--tenant", "acme", "sue") == 0
        assert users.authenticate(store, "acme", "sue", "passphrase two") is None
    finally:
        store.close()


def test_cli_refuses_bad_passwords_and_never_takes_one_from_argv(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = ["--config", str(config_file)]
    add = ["add", "--tenant", "acme", "--role", "qa", "quinn"]
    with pytest.raises(SystemExit):
        _cli(monkeypatch, "", *conf, *add, "--password", PASSWORD)
    capsys.readouterr()

    assert _cli(monkeypatch, "short\n", *conf, *add, "--password-stdin") == 2
    assert "at least 8 characters" in capsys.readouterr().err

    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert _cli(monkeypatch, "", *conf, *add) == 2
    assert "the two passwords differ" in capsys.readouterr().err

    answers = iter([PASSWORD, PASSWORD])
    assert _cli(monkeypatch, "", *conf, *add) == 0
    capsys.readouterr()
    assert _cli(monkeypatch, "", *conf, "passwd", "--tenant", "acme", "nobody") == 2
    assert "no user 'nobody' in tenant 'acme'" in capsys.readouterr().err
    assert _cli(monkeypatch, PASSWORD + "\n", *conf, *add, "--password-stdin") == 2
    assert "already exists" in capsys.readouterr().err
