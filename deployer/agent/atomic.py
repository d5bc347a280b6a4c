"""The agent's own whole-or-nothing file writes (the agent imports nothing from the rest of
deployer, whose :mod:`deployer.atomic` does the same for the controller)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def write_json(path: Path, data: Mapping[str, object]) -> None:
    """Replace ``path`` (mode 0644) with ``data`` as indented JSON: written to a temporary name
    beside it, fsynced, renamed, so a reader sees the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o644)  # whatever the umask
    os.replace(tmp, path)
