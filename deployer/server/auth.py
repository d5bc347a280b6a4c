"""Server tokens: made here, shown once, stored as a SHA-256 only, checked on every request.

A token is ``dps_`` and 43 URL-safe characters of 32 random bytes: too much entropy for a plain
hash to be searched back, so no slow hash is needed, and a lookup is one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import InvalidNameError
from deployer.secrets import register, write_owner_only
from deployer.settings import Settings
from deployer.state import Role, StateStore, TokenRecord

PREFIX = "dps_"
#: Characters of a token kept in the clear, to tell tokens apart in a listing.
SHOWN = len(PREFIX) + 4


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's name and role."""

    name: str
    role: Role
    token_id: int


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(store: StateStore, name: str, role: Role) -> tuple[str, TokenRecord]:
    """A new token for ``name`` with ``role``: the token (to show once) and its stored record."""
    token = PREFIX + secrets.token_urlsafe(32)
    register(token)
    return token, store.add_token(name, role, digest(token), token[:SHOWN])


def authenticate(store: StateStore, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None otherwise."""
    if not token.startswith(PREFIX):
        return None
    record = store.find_token(digest(token))
    if record is None or record.revoked_at is not None:
        return None
    register(token)  # a real token is never echoed into a log or an error from here on
    return Principal(name=record.name, role=record.role, token_id=record.id)


def create_token(settings: Settings, name: str, role: str) -> tuple[str, TokenRecord]:
    """``deployer server token create``: a new token (shown once) and its stored record."""
    with StateStore(settings.database_url) as store:
        return create(store, name, _role(role))


#: Where the server puts the admin token it makes when none exists, readable by its owner only.
FIRST_TOKEN_FILE = "server-admin.token"  # noqa: S105 (a file name)


def first_token(settings: Settings) -> Path | None:
    """On a state with no usable token: make an admin token named ``first-admin`` and keep it
    in ``home/server-admin.token`` (0600), never printed (a server's output is often a log);
    its path. None when a token already exists."""
    with StateStore(settings.database_url) as store:
        if any(t.revoked_at is None for t in store.list_tokens()):
            return None
        token, _record = create(store, "first-admin", Role.ADMIN)
    path = settings.home / FIRST_TOKEN_FILE
    write_owner_only(path, token)
    return path


def list_tokens(settings: Settings) -> list[TokenRecord]:
    with StateStore(settings.database_url) as store:
        return store.list_tokens()


def revoke_token(settings: Settings, token_id: int) -> TokenRecord:
    with StateStore(settings.database_url) as store:
        return store.revoke_token(token_id)


def _role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidNameError(f"no role {name!r}", hint=f"choose one of {choices}") from None
