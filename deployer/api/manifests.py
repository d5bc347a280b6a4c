"""Manifests and models: ``validate``, ``schema``, ``lock``, ``fetch`` and ``quantize``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import computed_field, field_serializer

from deployer.api import facts as gather
from deployer.api.types import Result
from deployer.errors import ManifestError, NotFoundError, UnsupportedError
from deployer.events import EventBus
from deployer.hub.fetch import FetchResult, LockMismatchError
from deployer.hub.lock import LockedModel, ModelLock, lock_path, read_lock, write_lock
from deployer.manifest.loader import LoadedManifest, load_manifest, load_manifests
from deployer.manifest.models import ARTIFACT_METHODS
from deployer.manifest.schema import json_schema
from deployer.quantize import run as quantize_run
from deployer.quantize.artifact import QuantizeRecord
from deployer.quantize.run import QuantizeJob
from deployer.settings import Settings


def validate(paths: Sequence[Path]) -> list[LoadedManifest]:
    """Load and validate every manifest under ``paths``; raises ManifestError listing problems."""
    return load_manifests(paths)


class ValidationReport(Result):
    """What ``validate`` found: the valid manifests, or every problem (``ManifestError.problems``)
    of invalid ones."""

    manifests: list[LoadedManifest] = []
    problems: list[ManifestError] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return not self.problems

    @field_serializer("manifests")
    def _manifests(self, manifests: list[LoadedManifest]) -> list[dict[str, Any]]:
        return [{"name": m.deployment.name, "path": str(m.path), "line": m.line} for m in manifests]

    @field_serializer("problems")
    def _problems(self, problems: list[ManifestError]) -> list[dict[str, Any]]:
        return [
            {"location": p.location, "field": p.field, "message": p.reason, "hint": p.hint}
            for p in problems
        ]

    def to_json(self) -> dict[str, Any]:
        """``valid``, with the manifests when valid and the problems when not."""
        return self.model_dump(
            mode="json", include={"valid", "manifests" if self.valid else "problems"}
        )


def schema() -> dict[str, Any]:
    return json_schema()


class LockReport(Result):
    """What ``lock`` did: the lockfile, and each deployment's action and commit."""

    path: Path
    #: deployment name -> (action: "created" | "updated" | "unchanged", commit)
    entries: dict[str, tuple[str, str]]


def lock(path: Path, settings: Settings, events: EventBus, *, update: bool = False) -> LockReport:
    """Write or check ``path``'s lockfile for every hub-sourced deployment in it.

    Without ``update`` a deployment already locked must still resolve to its locked commit:
    a moved branch raises LockMismatchError (exit 1, for CI gates); with ``update`` it moves.
    Deterministic: an unchanged hub gives a byte-identical file.
    """
    manifests = [
        m for m in load_manifests([path]) if m.deployment.spec.model.source == "huggingface"
    ]
    if not manifests:
        raise UnsupportedError(
            f"{path} has no deployment with spec.model.source: huggingface to lock",
            hint="local folders are used as they are and need no lock",
        )
    file = lock_path(path)
    current = read_lock(file) or ModelLock()
    entries = dict(current.deployments)
    report: dict[str, tuple[str, str]] = {}
    for loaded in manifests:
        name = loaded.deployment.name
        old = entries.get(name)
        fresh = gather.fetcher(loaded, settings, events).lock()
        if old is not None and not update and _identity(old) != _identity(fresh):
            raise LockMismatchError(
                f"{name}: {fresh.repo}@{fresh.revision} is now {fresh.commit[:12]}, but "
                f"{file.name} pins {old.commit[:12]}",
                hint="review the new revision, then run: deployer lock --update " + str(path),
            )
        entries[name] = fresh
        action = "created" if old is None else ("unchanged" if old == fresh else "updated")
        report[name] = (action, fresh.commit)
    new_lock = ModelLock(deployments=entries)
    if new_lock != current or not file.exists():
        write_lock(file, new_lock, path)
    return LockReport(path=file, entries=report)


def _identity(entry: LockedModel) -> tuple[str, list[tuple[str, int, str]]]:
    return entry.commit, [(f.path, f.size, f.sha256) for f in entry.files]


def fetch(path: Path, settings: Settings, events: EventBus) -> FetchResult:
    """Download and verify a manifest's model into the store (its lock's commit, if locked)."""
    loaded = load_manifest(path)
    return gather.fetcher(loaded, settings, events).fetch(gather.locked(loaded))


class QuantizeOutcome(Result):
    """What ``deployer quantize`` did: the job, the artifact's record, whether it was built now
    (False: found in the store), and the gate's verdict in one line."""

    job: QuantizeJob
    record: QuantizeRecord
    created: bool
    gate: str

    @field_serializer("record")
    def _record(self, record: QuantizeRecord) -> dict[str, Any]:
        """The record as its file in the artifact's folder has it."""
        return dataclasses.asdict(record)

    def to_json(self) -> dict[str, Any]:
        """The record's fields, with ``created`` and ``gate``."""
        dumped = self.model_dump(mode="json", include={"record", "created", "gate"})
        return {**dumped.pop("record"), **dumped}


def quantize(path: Path, settings: Settings, events: EventBus) -> QuantizeOutcome:
    """Build (or find) the quantized artifact of ``path``'s manifest and hold it to the gate.

    The quantize step of ``apply`` alone: nothing is deployed. A hub model must be fetched
    first. Raises QualityGateError (after storing the artifact) when the gate refuses it.
    """
    loaded = load_manifest(path)
    spec = loaded.deployment.spec.quantize
    if spec.method not in ARTIFACT_METHODS:
        raise UnsupportedError(
            f"{loaded.deployment.name}: spec.quantize.method is {spec.method}; deployer "
            "quantizes int8 and w4a16 itself",
            hint="set spec.quantize.method: int8 or w4a16 (fp8 is done by the engine on a GPU)",
        )
    source = gather.model_source(loaded, settings, events, offline=True)
    job = quantize_run.job_for(spec, source, settings=settings, base_dir=loaded.base_dir)
    if job is None or not source.path.is_dir():
        raise NotFoundError(
            f"{loaded.deployment.name}: the model is not in the store yet",
            hint=f"run: deployer fetch {path}",
        )
    existing = quantize_run.stored(job, settings)
    record = existing or quantize_run.ensure_artifact(job, settings, events)
    outcome = QuantizeOutcome(
        job=job,
        record=record,
        created=existing is None,
        gate=quantize_run.describe_gate(job, record),
    )
    quantize_run.check_gate(job, record)
    return outcome
