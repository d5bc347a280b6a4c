"""The lockfile: the exact files each deployment of a manifest serves, meant to be committed.

``deployer lock model.yaml`` writes ``model.lock.yaml`` beside it. For every deployment whose
model comes from a hub it records the commit its revision resolved to, and every file's path,
size and sha256, the licence and the endpoint. Fetches check every byte against it. Output is
deterministic (same inputs, same bytes) and never holds a secret.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from deployer import atomic, inputs
from deployer.errors import ManifestError

SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
COMMIT = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]

_HEADER = """\
# deployer lockfile: the exact model files each deployment in {manifest} serves.
# Written by `deployer lock`; commit it. `deployer lock --update` moves it to the hub's revision.
"""


class _LockModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class LockedFile(_LockModel):
    path: str
    size: Annotated[int, Field(ge=0)]
    sha256: SHA256


class LockedModel(_LockModel):
    repo: str
    revision: str
    commit: COMMIT
    endpoint: str
    license: str | None = None
    files: list[LockedFile]

    def file(self, path: str) -> LockedFile | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class ModelLock(_LockModel):
    api_version: Literal["deployer/v1alpha1"] = "deployer/v1alpha1"
    kind: Literal["ModelLock"] = "ModelLock"
    deployments: dict[str, LockedModel] = Field(default_factory=dict)


def lock_path(manifest: Path) -> Path:
    """``model.yaml`` -> ``model.lock.yaml`` (beside it)."""
    return manifest.with_name(f"{manifest.stem}.lock.yaml")


def read_lock(path: Path) -> ModelLock | None:
    """The lock at ``path``, or None when there is none; ManifestError when it is invalid."""
    from deployer.manifest.yaml_reader import read_plain

    hint = "regenerate it with: deployer lock --update MANIFEST"
    try:
        data = read_plain(path, inputs.LOCKFILE)
    except FileNotFoundError:
        return None
    except ManifestError as exc:
        raise ManifestError(
            f"not a valid deployer lockfile ({exc.reason})", location=exc.location, hint=hint
        ) from None
    try:
        return ModelLock.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise ManifestError(
            f"not a valid deployer lockfile ({where}: {first['msg']})",
            location=str(path),
            hint=hint,
        ) from None


def write_lock(path: Path, lock: ModelLock, manifest: Path) -> None:
    """Write ``lock`` to ``path`` atomically, deterministically (sorted names and files)."""
    from ruamel.yaml import YAML

    data = lock.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["deployments"] = {
        name: {**entry, "files": sorted(entry["files"], key=lambda f: f["path"])}
        for name, entry in sorted(data["deployments"].items())
    }
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep field order
    out = StringIO()
    yaml.dump(data, out)
    atomic.write_text(path, _HEADER.format(manifest=manifest.name) + out.getvalue())
