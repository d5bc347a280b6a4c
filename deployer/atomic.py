"""Files that appear whole or not at all: write to a temporary name beside, fsync, rename."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``; a reader sees the old content or the new, never a part.

    The file is created with ``mode`` from the start (a 0600 file is never readable by others,
    not even briefly).
    """
    write_bytes(path, text.encode(), mode=mode)


def write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """:func:`write_text` of bytes (a picture, an archive)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than it was given
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, data: Mapping[str, object], *, mode: int = 0o644) -> None:
    """:func:`write_text` of ``data`` as indented JSON with sorted keys."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)
