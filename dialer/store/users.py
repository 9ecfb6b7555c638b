"""Users of the pages: argon2id passwords, browser sessions (token hashes only), the audit trail.

Every function is synchronous and short; the web layer runs them in a worker thread. Password
hashing happens outside any transaction, so no database lock is held for its tens of
milliseconds.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store, error_reason
from dialer.store.models import AuditEvent, Role, Tenant, User, WebSession

MIN_PASSWORD_LENGTH = 8
# Long enough for any passphrase; bounds the work one login request can ask of argon2.
MAX_PASSWORD_LENGTH = 1024
LANGUAGES = ("en", "zh-CN")
# A session's last_seen_at (and with it its expiry) moves at most this often, so a busy page
# does not write a row on every request.
SESSION_SLIDE_EVERY = timedelta(minutes=1)
MAX_AUDIT_ROWS = 1000

# argon2-cffi's defaults are RFC 9106's low-memory argon2id profile; a future release that raises
# them makes check_needs_rehash true, and the next login stores a stronger hash.
_hasher = PasswordHasher()
_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


@dataclass(frozen=True)
class UserRow:
    """A user as the rest of the dialer sees one; the password hash never leaves this module."""

    id: int
    tenant_id: int
    tenant: str
    username: str
    display_name: str
    role: Role
    language: str
    agent_id: str | None
    disabled: bool
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    tenant_id: int | None
    user_id: int | None
    username: str | None
    action: str
    target: str | None
    old_value: dict[str, Any] | None
    new_value: dict[str, Any] | None
    client: str | None
    at: datetime


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def hash_token(token: str) -> str:
    """What web_sessions stores of a session token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password(password: str) -> None:
    """ValueError naming what is wrong with a new password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")


def _check_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role {role!r} (known: {known})") from None


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    return language


def _check_name(what: str, value: str, max_len: int) -> str:
    if not value or value != value.strip():
        raise ValueError(f"{what} {value!r}: empty or with spaces around it")
    if len(value) > max_len:
        raise ValueError(f"{what} {value!r}: longer than {max_len} characters")
    if any(not c.isprintable() for c in value):
        raise ValueError(f"{what} {value!r}: contains control characters")
    return value


def _dummy() -> str:
    """A hash to verify against when the user does not exist, so the answer takes as long."""
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        return _dummy_hash


def _user_columns() -> tuple[Any, ...]:
    return (
        User.id,
        User.tenant_id,
        Tenant.name,
        User.username,
        User.display_name,
        User.role,
        User.language,
        User.agent_id,
        User.disabled,
        User.created_at,
        User.password_changed_at,
    )


def _user(row: Sequence[Any]) -> UserRow:
    try:
        role = Role(row[5])
    except ValueError:
        raise StoreError(
            f"user {row[3]!r} has an unknown role {row[5]!r} in the database"
        ) from None
    return UserRow(
        id=row[0],
        tenant_id=row[1],
        tenant=row[2],
        username=row[3],
        display_name=row[4],
        role=role,
        language=row[6],
        agent_id=row[7],
        disabled=bool(row[8]),
        created_at=row[9],
        password_changed_at=row[10],
    )


def _select_users() -> Any:
    return select(*_user_columns()).join(Tenant, Tenant.id == User.tenant_id)


def add_user(
    store: Store,
    tenant: str,
    username: str,
    password: str,
    role: Role | str,
    *,
    display_name: str | None = None,
    language: str = "en",
    agent_id: str | None = None,
    now: datetime | None = None,
) -> UserRow:
    """Create a user (and the tenant on first use). ValueError for bad input, StoreError when the
    username is taken in that tenant."""
    _check_name("username", username, 64)
    the_role = _check_role(role)
    _check_language(language)
    name = _check_name("display name", display_name, 200) if display_name else username
    if agent_id is not None:
        _check_name("agent id", agent_id, 64)
    elif the_role is Role.AGENT:
        # The dialer routes calls by agent id; an agent user without one could never take a call.
        raise ValueError(f"user {username!r}: role agent needs an agent id")
    check_password(password)
    password_hash = _hasher.hash(password)
    at = now or _utc_now()
    tenant_id = ensure_tenant(store, tenant, now=at)
    try:
        with store.begin() as conn:
            new_id = conn.execute(
                insert(User)
                .values(
                    tenant_id=tenant_id,
                    username=username,
                    display_name=name,
                    role=the_role.value,
                    password_hash=password_hash,
                    language=language,
                    agent_id=agent_id,
                    disabled=False,
                    created_at=at,
                    password_changed_at=at,
                )
                .returning(User.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise StoreError(f"user {username!r} already exists in tenant {tenant!r}") from exc
    except SQLAlchemyError as exc:
        raise _fail(f"adding user {username!r} to tenant {tenant!r}", exc) from exc
    found = get_user(store, int(new_id))
    assert found is not None  # just inserted
    return found


def get_user(store: Store, user_id: int) -> UserRow | None:
    try:
        with store.begin() as conn:
            row = conn.execute(_select_users().where(User.id == user_id)).first()
    except SQLAlchemyError as exc:
        raise _fail(f"user {user_id}", exc) from exc
    return _user(row) if row is not None else None


def find_user(store: Store, tenant: str, username: str) -> UserRow | None:
    try:
        with store.begin() as conn:
            row = conn.execute(
                _select_users().where(Tenant.name == tenant, User.username == username)
            ).first()
    except SQLAlchemyError as exc:
        raise _fail(f"user {username!r} of tenant {tenant!r}", exc) from exc
    return _user(row) if row is not None else None


def list_users(store: Store, tenant: str | None = None) -> list[UserRow]:
    """Every user (of one tenant when named), by tenant then username."""
    query = _select_users().order_by(Tenant.name, User.username)
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    try:
        with store.begin() as conn:
            return [_user(row) for row in conn.execute(query).all()]
    except SQLAlchemyError as exc:
        raise _fail("listing users", exc) from exc


def _end_sessions(conn: Any, user_id: int) -> int:
    result = conn.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(result.rowcount or 0)


def set_password(store: Store, user_id: int, password: str, *, now: datetime | None = None) -> int:
    """Change the password and end every session of the user; returns how many were ended."""
    check_password(password)
    password_hash = _hasher.hash(password)
    try:
        with store.begin() as conn:
            changed = conn.execute(
                update(User)
                .where(User.id == user_id)
                .values(password_hash=password_hash, password_changed_at=now or _utc_now())
            ).rowcount
            if not changed:
                raise StoreError(f"user {user_id} does not exist")
            return _end_sessions(conn, user_id)
    except SQLAlchemyError as exc:
        raise _fail(f"password of user {user_id}", exc) from exc


def set_language(store: Store, user_id: int, language: str) -> None:
    _check_language(language)
    try:
        with store.begin() as conn:
            changed = conn.execute(
                update(User).where(User.id == user_id).values(language=language)
            ).rowcount
    except SQLAlchemyError as exc:
        raise _fail(f"language of user {user_id}", exc) from exc
    if not changed:
        raise StoreError(f"user {user_id} does not exist")


def disable(store: Store, user_id: int) -> int:
    """Refuse the user's logins from now on and end their sessions; returns how many ended."""
    try:
        with store.begin() as conn:
            changed = conn.execute(
                update(User).where(User.id == user_id).values(disabled=True)
            ).rowcount
            if not changed:
                raise StoreError(f"user {user_id} does not exist")
            return _end_sessions(conn, user_id)
    except SQLAlchemyError as exc:
        raise _fail(f"disabling user {user_id}", exc) from exc


def authenticate(
    store: Store, tenant: str, username: str, password: str, *, now: datetime | None = None
) -> UserRow | None:
    """The user when the password is theirs and they are enabled, else None.

    An unknown tenant or user still costs one argon2 verification, so response times do not
    tell which usernames exist.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        with store.begin() as conn:
            row = conn.execute(
                select(*_user_columns(), User.password_hash)
                .join(Tenant, Tenant.id == User.tenant_id)
                .where(Tenant.name == tenant, User.username == username)
            ).first()
    except SQLAlchemyError as exc:
        raise _fail(f"login of {username!r} in tenant {tenant!r}", exc) from exc
    stored_hash: str = row[11] if row is not None else _dummy()
    try:
        _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None  # a password that happens to match the dummy hash
    user = _user(row)
    if user.disabled:
        return None
    if _hasher.check_needs_rehash(stored_hash):
        _rehash(store, user.id, stored_hash, password)
    return user


def _rehash(store: Store, user_id: int, old_hash: str, password: str) -> None:
    new_hash = _hasher.hash(password)
    try:
        with store.begin() as conn:
            # Only if unchanged meanwhile: a password set since then must not be overwritten.
            conn.execute(
                update(User)
                .where(User.id == user_id, User.password_hash == old_hash)
                .values(password_hash=new_hash)
            )
    except SQLAlchemyError as exc:
        raise _fail(f"re-hashing the password of user {user_id}", exc) from exc


def create_session(store: Store, user_id: int, *, ttl_s: float, now: datetime | None = None) -> str:
    """A new session for an enabled user; returns the token for the cookie (stored hashed only).

    The session ends `ttl_s` after its last use (see session_user).
    """
    if ttl_s <= 0:
        raise ValueError(f"session lifetime must be positive, got {ttl_s}")
    at = now or _utc_now()
    token = secrets.token_urlsafe(32)
    try:
        with store.begin() as conn:
            found = conn.execute(
                select(User.tenant_id, User.disabled).where(User.id == user_id)
            ).first()
            if found is None:
                raise StoreError(f"user {user_id} does not exist")
            if found.disabled:
                raise StoreError(f"user {user_id} is disabled")
            # Housekeeping: the user's expired sessions go when a new one starts.
            conn.execute(
                delete(WebSession).where(WebSession.user_id == user_id, WebSession.expires_at <= at)
            )
            conn.execute(
                insert(WebSession).values(
                    token_hash=hash_token(token),
                    user_id=user_id,
                    tenant_id=found.tenant_id,
                    created_at=at,
                    expires_at=at + timedelta(seconds=ttl_s),
                    last_seen_at=at,
                )
            )
    except SQLAlchemyError as exc:
        raise _fail(f"session of user {user_id}", exc) from exc
    return token


def session_user(store: Store, token: str, *, now: datetime | None = None) -> UserRow | None:
    """The user of a live session; None when the token is unknown, expired or the user disabled.

    Use slides the expiry: it stays `ttl_s` after the last use, written at most once a minute.
    """
    at = now or _utc_now()
    token_hash = hash_token(token)
    try:
        with store.begin() as conn:
            row = conn.execute(
                select(*_user_columns(), WebSession.expires_at, WebSession.last_seen_at)
                .join(Tenant, Tenant.id == User.tenant_id)
                .join(WebSession, WebSession.user_id == User.id)
                .where(WebSession.token_hash == token_hash)
            ).first()
            if row is None:
                return None
            expires_at: datetime = row[11]
            last_seen_at: datetime = row[12]
            if expires_at <= at:
                conn.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
                return None
            user = _user(row)
            if user.disabled:
                return None
            if at - last_seen_at >= SESSION_SLIDE_EVERY:
                conn.execute(
                    update(WebSession)
                    .where(WebSession.token_hash == token_hash)
                    .values(last_seen_at=at, expires_at=at + (expires_at - last_seen_at))
                )
            return user
    except SQLAlchemyError as exc:
        raise _fail("session lookup", exc) from exc


def end_session(store: Store, token: str) -> bool:
    """Forget a session (logout); False when it was not there."""
    try:
        with store.begin() as conn:
            result = conn.execute(
                delete(WebSession).where(WebSession.token_hash == hash_token(token))
            )
    except SQLAlchemyError as exc:
        raise _fail("ending a session", exc) from exc
    return bool(result.rowcount)


def end_sessions_of_user(store: Store, user_id: int) -> int:
    try:
        with store.begin() as conn:
            return _end_sessions(conn, user_id)
    except SQLAlchemyError as exc:
        raise _fail(f"ending the sessions of user {user_id}", exc) from exc


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


def record_audit(
    store: Store,
    tenant_id: int | None,
    user_id: int | None,
    username: str | None,
    action: str,
    target: str | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    client: str | None = None,
    now: datetime | None = None,
) -> int:
    """Append one audit event; returns its id. Over-long texts are cut to their columns."""
    if not action:
        raise ValueError("audit action is empty")
    try:
        with store.begin() as conn:
            new_id = conn.execute(
                insert(AuditEvent)
                .values(
                    tenant_id=tenant_id,
                    user_id=user_id,
                    username=_clip(username, 64),
                    action=action[:64],
                    target=_clip(target, 200),
                    old_value=dict(old) if old is not None else None,
                    new_value=dict(new) if new is not None else None,
                    client=_clip(client, 64),
                    at=now or _utc_now(),
                )
                .returning(AuditEvent.id)
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise _fail(f"audit event {action!r}", exc) from exc
    return int(new_id)


def list_audit(store: Store, tenant_id: int, limit: int = 100) -> list[AuditEntry]:
    """The tenant's latest audit events, newest first (at most MAX_AUDIT_ROWS)."""
    if limit < 1:
        raise ValueError(f"audit limit must be at least 1, got {limit}")
    a = AuditEvent
    query = (
        select(
            a.id,
            a.tenant_id,
            a.user_id,
            a.username,
            a.action,
            a.target,
            a.old_value,
            a.new_value,
            a.client,
            a.at,
        )
        .where(a.tenant_id == tenant_id)
        .order_by(a.at.desc(), a.id.desc())
        .limit(min(limit, MAX_AUDIT_ROWS))
    )
    try:
        with store.begin() as conn:
            return [AuditEntry(*row) for row in conn.execute(query).all()]
    except SQLAlchemyError as exc:
        raise _fail(f"audit of tenant {tenant_id}", exc) from exc
