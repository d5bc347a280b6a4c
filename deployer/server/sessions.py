"""Browser sessions: a token exchanged once for an HttpOnly, SameSite=Strict cookie, and the CSRF
token every state-changing form carries.

A session cookie is ``<token id>.<expiry>.<mac>``, signed with the server's own key (32 random
bytes in ``<home>/server-session.key``, mode 0600, made on first use). It holds no token, and it
is checked against the token on every request: revoking the token ends its sessions. The CSRF
token of a session is a second MAC over the cookie, so a page from another site can neither read
nor forge it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from deployer.secrets import read_owner_only, write_owner_only
from deployer.server.auth import Principal
from deployer.settings import Settings
from deployer.state import StateStore

COOKIE = "deployer_session"
#: Seconds a session lasts.
LIFETIME = 12 * 3600


class Sessions:
    """Issues and checks session cookies and CSRF tokens with the server's key."""

    def __init__(self, settings: Settings) -> None:
        self._key = _server_key(settings.home / "server-session.key")

    def issue(self, who: Principal, now: float | None = None) -> str:
        expiry = int((now or time.time()) + LIFETIME)
        body = f"{who.token_id}.{expiry}"
        return f"{body}.{self._mac('session', body)}"

    def check(self, store: StateStore, cookie: str | None) -> Principal | None:
        """The principal of a valid, unexpired session whose token is still good."""
        if not cookie or cookie.count(".") != 2:
            return None
        token_id, expiry, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", f"{token_id}.{expiry}")):
            return None
        if not (token_id.isdigit() and expiry.isdigit()) or int(expiry) < time.time():
            return None
        record = store.get_token(int(token_id))
        if record is None or record.revoked_at is not None:
            return None
        return Principal(name=record.name, role=record.role, token_id=record.id)

    def csrf(self, cookie: str) -> str:
        """The CSRF token of the session ``cookie``."""
        return self._mac("csrf", cookie)

    def csrf_ok(self, cookie: str | None, presented: str | None) -> bool:
        return bool(cookie and presented) and hmac.compare_digest(
            self.csrf(cookie or ""), presented or ""
        )

    def _mac(self, purpose: str, body: str) -> str:
        return hmac.new(self._key, f"{purpose}:{body}".encode(), hashlib.sha256).hexdigest()


def _server_key(path: Path) -> bytes:
    if not path.is_file():
        write_owner_only(path, secrets.token_hex(32))
    return bytes.fromhex(read_owner_only(path))
