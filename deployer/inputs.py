"""The one way deployer reads a file a user handed it: regular files only, bounded, UTF-8 checked.

Manifests, inventories, lockfiles, token and key files, model configs, calibration and
evaluation texts all come through here, each with the size limit of its :class:`FileKind`.
A path is followed through symlinks and then checked: a named pipe, a device, a socket or a
folder is refused with one clear error (before anything blocks on it), and a file over its
kind's limit is refused before it is read whole, so ``/dev/zero`` or a multi-gigabyte file
costs nothing. Every refusal is a :class:`~deployer.errors.ManifestError` located at the path,
with a hint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import ManifestError
from deployer.units import human_bytes

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class FileKind:
    """What a file is for, and so how large it may be."""

    noun: str
    """What the file is, for messages: 'manifest', 'inventory', ..."""
    limit: int
    """Largest size in bytes deployer reads."""
    max_nodes: int = 20_000
    """For YAML: most values one document may hold, each alias counted as what it repeats."""

    @property
    def a(self) -> str:
        """The noun with its article, for messages: 'a manifest', 'an inventory'."""
        return f"{'an' if self.noun[0] in 'aeiou' else 'a'} {self.noun}"


MANIFEST = FileKind("manifest", 1 * MiB)
INVENTORY = FileKind("inventory", 4 * MiB, max_nodes=100_000)
LOCKFILE = FileKind("lockfile", 16 * MiB, max_nodes=100_000)
SECRET = FileKind("secret file", 64 * KiB)
MODEL_CONFIG = FileKind("model config", 16 * MiB)
TEXT = FileKind("calibration or evaluation text", 256 * MiB)
#: Deeper JSON than this is refused: no model config or record nests anywhere near it.
JSON_MAX_DEPTH = 100

#: Every kind, for the docs and the tests.
KINDS = (MANIFEST, INVENTORY, LOCKFILE, SECRET, MODEL_CONFIG, TEXT)

_FILE_TYPES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def expand_user(value: str | Path) -> Path:
    """``value`` with a leading ``~`` or ``~user`` expanded; a user this machine does not know
    leaves it as written (a path that then does not exist), never an exception."""
    return Path(os.path.expanduser(value))


def check_file(path: Path, kind: FileKind) -> int:
    """The size of the regular file at ``path`` (symlinks followed), after checking it is one
    and within ``kind``'s limit. For files deployer hashes or hands on rather than reads.

    Raises :class:`FileNotFoundError` when nothing is there (callers decide whether that is an
    error) and :class:`ManifestError` for anything else wrong. Reads nothing, never blocks.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _os_problem(path, kind, exc) from None
    _check_type(path, kind, info.st_mode)
    _check_size(path, kind, info.st_size)
    return info.st_size


def read_bytes(path: Path, kind: FileKind) -> bytes:
    """The content of the regular file at ``path``, at most ``kind.limit`` bytes.

    Opens without blocking (a named pipe swapped in after a check still cannot hang the read),
    checks the opened file itself, and reads one byte past the limit so that a file that grows,
    or reports no size (``/proc``), is still bounded. Raises :class:`FileNotFoundError` when
    nothing is there and :class:`ManifestError` for anything else wrong.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # A socket cannot be opened at all (ENXIO): say what it is, as for a pipe or a device.
        with contextlib.suppress(OSError):
            _check_type(path, kind, path.stat().st_mode)
        raise _os_problem(path, kind, exc) from None
    try:
        info = os.fstat(fd)
        _check_type(path, kind, info.st_mode)
        _check_size(path, kind, info.st_size)
        os.set_blocking(fd, True)
        chunks, remaining = [], kind.limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise _os_problem(path, kind, exc) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    _check_size(path, kind, len(data))
    return data


def read_text(path: Path, kind: FileKind) -> str:
    """:func:`read_bytes` decoded as UTF-8 (a leading byte-order mark dropped).

    Raises :class:`ManifestError` at the line of the first byte that is not UTF-8.
    """
    data = read_bytes(path, kind)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            "not UTF-8 text",
            location=f"{path}:{line}:1",
            hint=f"save the {kind.noun} as UTF-8",
        ) from None


def read_json(path: Path, kind: FileKind) -> Any:
    """:func:`read_text` parsed as JSON, at most :data:`JSON_MAX_DEPTH` levels deep.

    Raises :class:`ManifestError` for text that is not JSON or nests deeper.
    """
    text = read_text(path, kind)
    try:
        value = json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError:
        value = None
        deep = True
    except ValueError as exc:
        raise ManifestError(
            f"not valid JSON: {exc}", location=str(path), hint=f"check the {kind.noun}'s syntax"
        ) from None
    else:
        deep = json_depth(value) > JSON_MAX_DEPTH
    if deep:
        raise ManifestError(
            f"JSON nested more than {JSON_MAX_DEPTH} levels deep",
            location=str(path),
            hint=f"this is not {kind.a} deployer can use",
        )
    return value


def _bounded_int(text: str) -> int:
    """JSON integers beyond 64 bits are no size or count a model has; they only overflow."""
    if len(text.lstrip("-")) > 19 or not -(2**63) <= (number := int(text)) < 2**63:
        raise ValueError(f"number {text[:12]}... is out of range (at most 2**63)")
    return number


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:12]} is out of range")
    return number


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def read_json_object(path: Path, kind: FileKind) -> dict[str, Any]:
    """:func:`read_json` of a file that must hold one JSON object (a model's ``config.json``).

    Raises :class:`ManifestError` as :func:`read_json` does, and for any other JSON value.
    """
    value = read_json(path, kind)
    if not isinstance(value, dict):
        raise ManifestError(
            "not a JSON object", location=str(path), hint=f"this is not {kind.a} deployer can use"
        )
    return value


def json_depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests: 0 for a scalar. Iterative: any depth is safe."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_type(path: Path, kind: FileKind, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    what = next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")
    raise ManifestError(
        f"is {what}, not a regular file",
        location=str(path),
        hint=f"deployer reads {kind.a} from a regular file; give the file's own path",
    )


def _check_size(path: Path, kind: FileKind, size: int) -> None:
    if size > kind.limit:
        raise ManifestError(
            f"{kind.noun} is larger than {human_bytes(kind.limit)}, the most deployer reads",
            location=str(path),
            hint=f"{kind.a} is at most {human_bytes(kind.limit)}; check that this is the "
            "file you meant",
        )


def _os_problem(path: Path, kind: FileKind, exc: OSError) -> ManifestError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        hint = "give the user deployer runs as read access to the file"
    else:
        hint = f"check that the path is a readable {kind.noun}"
    return ManifestError(f"cannot read: {reason}", location=str(path), hint=hint)
