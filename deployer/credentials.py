"""The engine's API key: resolved from a manifest reference, or generated and kept owner-only."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from deployer import inputs, secrets
from deployer.errors import ManifestError
from deployer.manifest.models import SecretRef

KEY_FILE = "api-key"


@dataclass(frozen=True)
class ApiKey:
    value: str
    #: "generated", "env:NAME" or "file:PATH": safe to show and to record.
    source: str
    #: Where a generated key lives (mode 0600); None for referenced keys.
    path: Path | None

    @property
    def digest(self) -> str:
        """A digest that changes when the key does, for restart decisions; not the key."""
        return hashlib.sha256(b"deployer-api-key\0" + self.value.encode()).hexdigest()


def resolve_secret(ref: SecretRef, *, field: str, base_dir: Path) -> str:
    """The value a :class:`SecretRef` points at, registered for masking.

    Raises :class:`ManifestError` naming ``field`` when the variable is unset or the file is
    missing or empty; the message never contains the value.
    """
    if ref.env is not None:
        value = os.environ.get(ref.env, "").strip()
        if not value:
            raise ManifestError(
                f"{field}: environment variable {ref.env} is not set",
                hint=f"export {ref.env}=... before running deployer",
            )
        return secrets.register(value)
    assert ref.file is not None
    path = (base_dir / inputs.expand_user(ref.file)).resolve()
    try:
        value = inputs.read_text(path, inputs.SECRET).strip()
    except FileNotFoundError:
        raise ManifestError(
            f"{field}: cannot read {path}: no such file",
            hint="create the file (chmod 600) or fix the path",
        ) from None
    except ManifestError as exc:
        raise ManifestError(f"{field}: cannot read {path}: {exc.reason}", hint=exc.hint) from None
    if not value:
        raise ManifestError(f"{field}: {path} is empty", hint="write the secret into the file")
    return secrets.register(value)


def api_key(ref: SecretRef | None, *, key_dir: Path, base_dir: Path) -> ApiKey:
    """The key the engine will require.

    With a reference, its value. Without one, the key generated for this deployment: read from
    ``key_dir/api-key`` if it exists, else generated and written there with mode 0600. Idempotent.
    """
    if ref is not None:
        value = resolve_secret(ref, field="spec.serving.apiKey", base_dir=base_dir)
        return ApiKey(value=value, source=ref.describe(), path=None)
    path = key_dir / KEY_FILE
    if path.is_file():
        return ApiKey(value=secrets.read_owner_only(path), source="generated", path=path)
    value = secrets.generate_api_key()
    secrets.write_owner_only(path, value)
    return ApiKey(value=value, source="generated", path=path)


def stored_api_key(key_dir: Path) -> str | None:
    """The generated key of a deployment, if it has one."""
    path = key_dir / KEY_FILE
    return secrets.read_owner_only(path) if path.is_file() else None
