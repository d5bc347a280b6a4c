"""GitOps over files and folders of manifests, on every target: ``plan``, ``diff`` and
``apply`` of everything under some paths, and ``--prune`` of what those paths no longer declare.

``diff`` asks "would anything change?" without changing anything: on every target it plans as
``apply`` would, observing what runs, and reports the steps that would change something (a
fetch, a provision, a restart with what differs in argv, smoke checks that would run again);
a target with a finer diff (``Diffs``: Kubernetes, object by object) adds its own. ``apply``
reconciles each deployment in order and reports each; one that fails does not stop the others
unless ``fail_fast``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, computed_field, field_serializer

from deployer.api import facts as gather
from deployer.api.deploy import ApplyResult, apply_loaded, target_of
from deployer.api.runs import open_reader
from deployer.api.types import Result
from deployer.errors import DeployerError
from deployer.events import EventBus
from deployer.manifest.loader import LoadedManifest, load_manifests
from deployer.planner import Plan, StepAction
from deployer.settings import Settings
from deployer.state import DeploymentRecord, DeploymentStatus
from deployer.targets.base import DeployRequest, Diffs

#: Step actions that change something.
_CHANGING = (StepAction.CREATE, StepAction.UPDATE, StepAction.DELETE)
#: Steps that say how a change already listed is carried out, not a change of their own: a
#: rollout's switch of traffic is how its deploy's restart takes effect.
_HOW = frozenset({"switch"})


def manifests(paths: Sequence[Path]) -> list[LoadedManifest]:
    """Every deployment under ``paths`` (files and folders), in order; names unique."""
    return load_manifests(paths)


def plans(paths: Sequence[Path], settings: Settings, *, allow_downtime: bool = False) -> list[Plan]:
    """``deployer plan`` of every deployment under ``paths`` (offline, changes nothing);
    ``allow_downtime``: as ``apply --allow-downtime`` would."""
    from deployer.api.deploy import plan_loaded

    reader = open_reader(settings)
    try:
        return [
            plan_loaded(loaded, settings, reader, allow_downtime=allow_downtime)
            for loaded in manifests(paths)
        ]
    finally:
        if reader is not None:
            reader.close()


class DeploymentDiff(Result):
    """What ``apply`` would change in one deployment, or why it could not be compared."""

    name: str = Field(serialization_alias="deployment")
    target: str
    path: Path
    #: What would change, one line each (empty: nothing would).
    changes: list[str]
    #: Why this deployment could not be compared (then ``changes`` is empty).
    error: DeployerError | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def code(self) -> str | None:
        """The error's code (see :mod:`deployer.errors`), when there is one."""
        return self.error.code if self.error else None

    @field_serializer("error")
    def _error(self, error: DeployerError | None) -> str | None:
        return error.message if error else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def diff(paths: Sequence[Path], settings: Settings) -> list[DeploymentDiff]:
    """What ``apply`` of ``paths`` would change, per deployment, read-only. An unreachable
    target is that deployment's error; the others are still compared."""
    recorded = _recorded(settings)
    out = []
    for loaded in manifests(paths):
        deployment = loaded.deployment
        error: DeployerError | None = None
        try:
            changes = _changes(loaded, settings, recorded.get(deployment.name))
        except DeployerError as exc:
            changes, error = [], exc
        out.append(
            DeploymentDiff(
                name=deployment.name,
                target=deployment.spec.target.kind,
                path=loaded.path,
                changes=changes,
                error=error,
            )
        )
    return out


def _changes(
    loaded: LoadedManifest, settings: Settings, record: DeploymentRecord | None
) -> list[str]:
    target = target_of(loaded, settings)
    target.preflight()
    digest = gather.manifest_digest(loaded)
    passed = (
        record is not None
        and record.status == DeploymentStatus.HEALTHY
        and record.manifest_digest == digest
    )
    plan = gather.make(
        loaded, target, settings, key=None, offline=True, observe=True, smoke_passed=passed
    )
    changes = [
        f"{step.name}: {step.action.value}: {step.reason}"
        for step in plan.steps
        if step.action in _CHANGING and step.name not in _HOW
    ]
    smoke = plan.step("smoke")
    if smoke.action == StepAction.CHECK and not any(c.startswith("deploy:") for c in changes):
        why = (
            "not applied yet"
            if record is None
            else f"last recorded {record.status.value}"
            if record.manifest_digest == digest
            else "the manifest differs from the one applied"
        )
        changes.append(f"smoke: check: {smoke.reason} ({why})")
    if isinstance(target, Diffs):
        request = DeployRequest(
            deployment=loaded.deployment,
            plan=plan,
            api_key="",
            events=EventBus(),
            lock=gather.locked(loaded),
        )
        changes += [change.describe() for change in target.diff(request)]
    return changes


class FolderApply(Result):
    """``apply`` of several deployments: each one's result or error, and what was pruned."""

    applied: list[tuple[LoadedManifest, ApplyResult]] = []
    failed: list[tuple[LoadedManifest, DeployerError]] = []
    #: Deployments that were not reached because an earlier one failed (``fail_fast``).
    not_run: list[LoadedManifest] = []
    pruned: list[str] = []
    dry_run: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run

    @field_serializer("applied")
    def _applied(self, applied: list[tuple[LoadedManifest, ApplyResult]]) -> list[dict[str, Any]]:
        return [result.to_json() for _, result in applied]

    @field_serializer("failed")
    def _failed(self, failed: list[tuple[LoadedManifest, DeployerError]]) -> list[dict[str, Any]]:
        return [
            {"deployment": m.deployment.name, "error": e.message, "code": e.code} for m, e in failed
        ]

    @field_serializer("not_run")
    def _not_run(self, not_run: list[LoadedManifest]) -> list[str]:
        return [m.deployment.name for m in not_run]


def apply(
    paths: Sequence[Path],
    settings: Settings,
    events: EventBus,
    *,
    prune: bool = False,
    dry_run: bool = False,
    fail_fast: bool = False,
    on_start: Callable[[LoadedManifest], None] | None = None,
    allow_downtime: bool = False,
) -> FolderApply:
    """Reconcile every deployment under ``paths`` in order; with ``prune``, destroy the
    deployments that were applied from under ``paths`` and that they no longer declare.
    ``dry_run`` (with ``prune``) changes nothing and only says what would be pruned.
    ``allow_downtime``: as for one :func:`~deployer.api.deploy.apply`."""
    from deployer.api.daytwo import destroy

    loaded = manifests(paths)
    applied: list[tuple[LoadedManifest, ApplyResult]] = []
    failed: list[tuple[LoadedManifest, DeployerError]] = []
    not_run: list[LoadedManifest] = []
    pruned: list[str] = []
    if not dry_run:
        for index, manifest in enumerate(loaded):
            if on_start is not None:
                on_start(manifest)
            try:
                result = apply_loaded(manifest, settings, events, allow_downtime=allow_downtime)
                applied.append((manifest, result))
            except DeployerError as exc:
                failed.append((manifest, exc))
                if fail_fast:
                    not_run = loaded[index + 1 :]
                    break
    if prune and (dry_run or not not_run):
        declared = {m.deployment.name for m in loaded}
        for record in _recorded(settings).values():
            if record.name in declared or not _under(record.manifest_path, paths):
                continue
            if record.status == DeploymentStatus.DESTROYED:
                continue
            if not dry_run:
                destroy(record.name, settings, events)
            pruned.append(record.name)
    return FolderApply(
        applied=applied, failed=failed, not_run=not_run, pruned=pruned, dry_run=dry_run
    )


def _recorded(settings: Settings) -> dict[str, DeploymentRecord]:
    store = open_reader(settings)
    if store is None:
        return {}
    try:
        return {r.name: r for r in store.list_deployments()}
    finally:
        store.close()


def _under(manifest_path: str | None, paths: Sequence[Path]) -> bool:
    """Whether a recorded manifest path is one of ``paths`` or inside one of their folders."""
    if not manifest_path:
        return False
    recorded = Path(manifest_path).absolute()
    for path in paths:
        root = path.absolute()
        if recorded == root or (root.is_dir() and recorded.is_relative_to(root)):
            return True
    return False
