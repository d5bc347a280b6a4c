"""Which driver serves which ``spec.target.kind``.

The facade asks the registry for a driver and never names one: adding a target is a new
package under ``deployer/targets/`` and one entry here (or a :func:`register` call). Drivers are
imported when first asked for, so a command that never reaches a cluster does not pay for the
Kubernetes client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from deployer.errors import StateError, UnsupportedError
from deployer.manifest.models import TargetSpec
from deployer.settings import Settings
from deployer.targets.base import Target

#: ``kind`` -> a callable (spec, settings, base_dir) -> driver.
Factory = Callable[[Any, Settings, Path], Target]

#: The drivers deployer ships, as "module:class" (imported on first use).
BUILTIN: Mapping[str, str] = {
    "local": "deployer.targets.local.target:LocalTarget",
    "ssh": "deployer.targets.ssh.target:SshTarget",
    "kubernetes": "deployer.targets.kubernetes.target:KubernetesTarget",
}

_registered: dict[str, tuple[Factory, Callable[[dict[str, Any]], BaseModel]]] = {}
_specs: TypeAdapter[Any] = TypeAdapter(TargetSpec)


def register(
    kind: str, factory: Factory, spec: Callable[[dict[str, Any]], BaseModel] | None = None
) -> None:
    """Serve ``kind`` with ``factory``; ``spec`` turns a recorded spec back into its model
    (default: the manifest's target union)."""
    _registered[kind] = (factory, spec or _specs.validate_python)


def unregister(kind: str) -> None:
    _registered.pop(kind, None)


def kinds() -> list[str]:
    return sorted({*BUILTIN, *_registered})


def driver(spec: BaseModel, settings: Settings, base_dir: Path) -> Target:
    """The driver for a manifest's ``spec.target`` (relative paths from ``base_dir``)."""
    kind = str(getattr(spec, "kind", ""))
    return _factory(kind)(spec, settings, base_dir)


def from_record(record: Mapping[str, Any], settings: Settings) -> Target:
    """The driver for a target spec the state recorded (``Target.spec_record``)."""
    kind = str(record.get("kind", ""))
    factory = _factory(kind)
    parse = _registered[kind][1] if kind in _registered else _specs.validate_python
    try:
        spec = parse(dict(record))
    except ValidationError as exc:
        raise StateError(
            f"the recorded {kind or 'unknown'} target is not valid: {exc.errors()[0]['msg']}",
            hint="deployer apply MANIFEST records it again",
        ) from exc
    return factory(spec, settings, Path("/"))


def _factory(kind: str) -> Factory:
    if kind in _registered:
        return _registered[kind][0]
    where = BUILTIN.get(kind)
    if where is None:
        raise UnsupportedError(
            f"target kind {kind!r} is not supported by this version",
            hint=f"known kinds: {', '.join(kinds())}",
        )
    module, _, name = where.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cast(Factory, cls.from_spec)
