"""Where deployer keeps things on this machine.

- ``home`` (``--home`` or ``DEPLOYER_HOME``, default ``~/.deployer``): the state database,
  per-deployment runtime folders (logs, credentials). Deleting it forgets every deployment.
- ``cache`` (``DEPLOYER_CACHE``, default ``~/.cache/deployer``): engine and tool virtualenvs
  and model files (quantized ones too), shared by every home on the machine; safe to delete,
  slow to rebuild.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import InvalidNameError

#: A deployment's name: a DNS-1123 label, as the manifest's metadata.name must be.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Settings:
    home: Path
    cache: Path
    state_url: str | None = None

    @classmethod
    def from_env(cls, home: Path | None = None, state_url: str | None = None) -> Settings:
        env_home = os.environ.get("DEPLOYER_HOME")
        resolved_home = home or (Path(env_home) if env_home else Path.home() / ".deployer")
        env_cache = os.environ.get("DEPLOYER_CACHE")
        cache = Path(env_cache) if env_cache else default_cache_dir()
        return cls(
            home=Path(os.path.expanduser(resolved_home)).absolute(),
            cache=Path(os.path.expanduser(cache)).absolute(),
            state_url=state_url or os.environ.get("DEPLOYER_STATE_URL"),
        )

    @property
    def database_url(self) -> str:
        """The state store's SQLAlchemy URL: SQLite in ``home`` unless configured otherwise."""
        return self.state_url or f"sqlite:///{self.home / 'state.db'}"

    @property
    def engines_dir(self) -> Path:
        return self.cache / "engines"

    @property
    def tools_dir(self) -> Path:
        """Virtualenvs of deployer's helper tools (the quantizer), apart from the engines."""
        return self.cache / "tools"

    @property
    def models_dir(self) -> Path:
        return self.cache / "models"

    @property
    def deployments_dir(self) -> Path:
        return self.home / "deployments"

    def deployment_dir(self, name: str) -> Path:
        """The deployment's own folder (not created). Raises :class:`InvalidNameError` for a
        name that is not a deployment name, so no path outside ``deployments_dir`` is built."""
        return self.deployments_dir / check_name(name)


def check_name(name: str) -> str:
    """``name`` when it can be a deployment's: a DNS-1123 label (lower-case letters, digits and
    '-', at most 63 characters). Raises :class:`InvalidNameError` otherwise."""
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 70 else name[:64] + "..."
        raise InvalidNameError(
            f"{shown!r} is not a deployment name: lower-case letters, digits and '-', at most "
            "63 characters, starting and ending with a letter or digit",
            hint="deployer status lists the deployments by name",
        )
    return name


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "deployer"
