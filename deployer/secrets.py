"""Secrets: generate, store owner-only, and mask everywhere.

Every secret value deployer handles (a resolved token, a generated API key) is registered here,
and every path that writes text a person or a file will see (the runner's logs, events, the state
store, rendered files) passes it through :func:`mask`. This is pyinfra's ``MaskString`` idea made
global to the process: registering is cheap and masking is a string replace.
"""

from __future__ import annotations

import secrets as _secrets
import threading
from pathlib import Path

from deployer import atomic, inputs

MASK = "********"

_lock = threading.Lock()
_values: set[str] = set()


def register(value: str) -> str:
    """Remember ``value`` as a secret so :func:`mask` hides it; returns it unchanged."""
    if len(value) >= 4:  # a shorter "secret" would mask ordinary words
        with _lock:
            _values.add(value)
    return value


def mask(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``********``."""
    if not _values:
        return text
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def generate_api_key() -> str:
    """A new random API key (``dk-`` and 43 URL-safe characters), registered as a secret."""
    return register("dk-" + _secrets.token_urlsafe(32))


def write_owner_only(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` so that only its owner can read it (mode 0600).

    The file is created with that mode (never world-readable, not even briefly) and replaced
    atomically, so a reader sees the old value or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic.write_text(path, value, mode=0o600)


def read_owner_only(path: Path) -> str:
    """Read a secret written by :func:`write_owner_only` and register it for masking."""
    return register(inputs.read_text(path, inputs.SECRET).strip())
