"""``runtime.json``: what a deployment's folder records about the engine that was started.

One record for its three writers and readers: the local target writes and reads it on this
machine; the SSH target's role writes it on each host (``tasks/deploy.yml``, from the facts
:meth:`RuntimeRecord.to_dict` gives the role, plus the ``argv``, ``service_manager`` and
``version`` the role adds) and the SSH target reads it back over ssh.

The file is a JSON object. Its ``version`` is :data:`VERSION`; a file without one (written before
the record had a version) is read as version 1. A file of a later version is refused with
:class:`UnsupportedVersionError`: it was written by a newer deployer, which may have changed what
the fields mean. Fields a version-1 reader does not know are ignored, so later additions that
keep the meaning of the others need no new version. Absent fields are ``None``; ``None`` fields
are left out of the file.

Standard library only, like the rest of :mod:`deployer.agent`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

#: The name of the file in a deployment's folder.
FILE = "runtime.json"
#: The version this module writes, and the newest it reads.
VERSION = 1


class RuntimeRecordError(ValueError):
    """``runtime.json`` is not a record this deployer can read: not a JSON object, or a field
    of the wrong type. The message names the field; the caller names the file."""


class UnsupportedVersionError(RuntimeRecordError):
    """``runtime.json`` has a version newer than :data:`VERSION`."""


@dataclass(frozen=True)
class RuntimeRecord:
    """The facts of one started engine. Every field but ``version`` may be absent (``None``):
    which are set depends on the writer (see the field comments)."""

    #: The plan's spec digest: what ``apply`` compares to decide whether to restart.
    spec_digest: str | None = None
    #: The plan's engine arguments.
    args: tuple[str, ...] = ()
    #: The port the engine listens on.
    port: int | None = None
    #: The OpenAI base URL (``.../v1``) and the health URL. Written by the local target; the SSH
    #: target derives them from the inventory when absent.
    endpoint: str | None = None
    health_url: str | None = None
    #: The supervisor's pid and its process's create time (no pid reuse), and when it was
    #: started. Written by the local target.
    supervisor_pid: int | None = None
    supervisor_create_time: float | None = None
    started_at: float | None = None
    #: Written by the SSH target's role: the deployment's name, the engine's full command line on
    #: the host, and what keeps the engine running there (``"systemd"`` or ``"supervisor"``).
    deployment: str | None = None
    argv: tuple[str, ...] | None = None
    service_manager: str | None = None
    #: What the spec digest was made of, one short readable value per part (``engine``,
    #: ``model``, ``model_files``, ``env``, ``key``, ``target``; never a secret), so a later
    #: plan can say which part changed. Written by the local target and the SSH target's role.
    inputs: dict[str, str] | None = None
    #: Where a proxy publishes the engine (the local target's HAProxy), so that ``port`` is
    #: private: the port clients use, and the engine's slot (``"a"``: the deployment's folder,
    #: ``"b"``: its ``slot-b`` folder), the two places a surge rollout alternates between.
    #: Absent: clients reach the engine on ``port``.
    published_port: int | None = None
    engine_slot: str | None = None
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (lists for tuples), ``None`` fields left out."""
        data: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                data[field.name] = list(value) if isinstance(value, tuple) else value
        return data

    def to_json(self) -> str:
        """The file's text: indented JSON with sorted keys and a final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> RuntimeRecord:
        """The record of a decoded ``runtime.json``. Raises :class:`RuntimeRecordError` (or
        :class:`UnsupportedVersionError`) naming the first field that does not fit."""
        if not isinstance(data, dict):
            raise RuntimeRecordError(f"{_kind(data)}, not an object")
        version = data.get("version", 1)
        if not _is_int(version) or version < 1:
            raise RuntimeRecordError(f"version is {version!r}, not a positive integer")
        if version > VERSION:
            raise UnsupportedVersionError(
                f"version {version} is newer than this deployer reads ({VERSION}): a newer "
                "deployer wrote it"
            )
        return cls(
            spec_digest=_optional_str(data, "spec_digest"),
            args=_strings(data, "args") or (),
            port=_optional_int(data, "port"),
            endpoint=_optional_str(data, "endpoint"),
            health_url=_optional_str(data, "health_url"),
            supervisor_pid=_optional_int(data, "supervisor_pid"),
            supervisor_create_time=_optional_number(data, "supervisor_create_time"),
            started_at=_optional_number(data, "started_at"),
            deployment=_optional_str(data, "deployment"),
            argv=_strings(data, "argv"),
            service_manager=_optional_str(data, "service_manager"),
            inputs=_string_map(data, "inputs"),
            published_port=_optional_int(data, "published_port"),
            engine_slot=_optional_str(data, "engine_slot"),
            # Read as the current version: a later VERSION converts older records here.
            version=VERSION,
        )

    @classmethod
    def from_json(cls, text: str) -> RuntimeRecord:
        """The record in ``text``; :class:`RuntimeRecordError` when it is not JSON or not a
        record (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise RuntimeRecordError(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)


def _kind(value: object) -> str:
    """What JSON calls ``value``'s type, with an article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RuntimeRecordError(f"{key} is {_kind(value)}, not a string")


def _optional_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or _is_int(value):
        return value
    raise RuntimeRecordError(f"{key} is {_kind(value)}, not an integer")


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, float) or _is_int(value):
        return float(value)
    raise RuntimeRecordError(f"{key} is {_kind(value)}, not a number")


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise RuntimeRecordError(f"{key} is {_kind(value)}, not an array of strings")


def _string_map(data: dict[str, Any], key: str) -> dict[str, str] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return dict(value)
    raise RuntimeRecordError(f"{key} is {_kind(value)}, not an object of strings")
