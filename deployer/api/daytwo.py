"""Day two: ``status``, ``history``, ``smoke``, ``destroy``, ``logs`` and ``key`` of recorded
deployments. Each reaches its deployment through the target spec the state recorded at apply,
so a manifest that has moved or changed since does not matter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import computed_field, field_serializer

from deployer import credentials, secrets
from deployer.api.deploy import smoke_each
from deployer.api.pricing import measured_for
from deployer.api.runs import get, open_reader, open_store, reading, recorded, unknown
from deployer.api.types import Result, smoke_json
from deployer.errors import DeployerError, NotFoundError, SmokeFailedError
from deployer.events import EventBus
from deployer.manifest.loader import load_manifest
from deployer.planner import Observed, ReplicaState, StepAction
from deployer.settings import Settings, check_name
from deployer.sizing.measured import MeasuredCost
from deployer.smoke import SmokeReport
from deployer.state import DeploymentRecord, DeploymentStatus, RunRecord, StepRecord
from deployer.targets import registry
from deployer.targets.base import WHOLE_LOG as WHOLE_LOG
from deployer.targets.base import Target

if TYPE_CHECKING:
    from deployer.metrics.engine_load import EngineLoad


class DeploymentView(Result):
    """A deployment as recorded, with what its target reports right now."""

    record: DeploymentRecord
    running: bool
    healthy: bool
    pid: int | None
    detail: str | None
    #: Each host's facts, for deployments on several hosts (ssh).
    replicas: tuple[ReplicaState, ...] = ()
    #: The deployment's latest run; a run whose process is gone reads as interrupted.
    last_run: RunRecord | None = None
    #: The engine's command line as the target started it (what runs), secrets masked.
    args: tuple[str, ...] = ()
    #: The spec digest the target reports for what runs (beside the recorded one).
    running_spec_digest: str | None = None
    #: The model the engine was started from: its hub commit (a locked or fetched revision) or
    #: its folder, as the target recorded it at start.
    running_model: str | None = None
    #: The cost per token the latest complete benchmark of the applied revision measured
    #: (``deployer bench``); None before one (``status`` fills it, a server's page does not).
    measured_cost: MeasuredCost | None = None
    #: The engine's own private port where a proxy publishes the endpoint (the local target's
    #: HAProxy); the endpoint clients use stays the same across rollouts.
    engine_port: int | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str:
        return self.record.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        return self.record.status.value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def target(self) -> str:
        return self.record.target_kind

    @computed_field  # type: ignore[prop-decorator]
    @property
    def endpoint(self) -> str | None:
        return self.record.endpoint

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model(self) -> str | None:
        return self.record.served_model_name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def message(self) -> str | None:
        return self.record.message

    @computed_field  # type: ignore[prop-decorator]
    @property
    def manifest_digest(self) -> str | None:
        """The sha256 of the manifest as last applied (what was intended)."""
        return self.record.manifest_digest

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spec_digest(self) -> str | None:
        """The digest of what the engine was started with (what runs)."""
        return self.record.spec_digest

    @computed_field  # type: ignore[prop-decorator]
    @property
    def updated_at(self) -> str:
        """When the record last changed, in ISO 8601 (``datetime.isoformat``)."""
        return self.record.updated_at.isoformat()

    @field_serializer("last_run")
    def _last_run(self, run: RunRecord | None) -> dict[str, Any] | None:
        if run is None:
            return None
        return {
            "id": run.id,
            "operation": run.operation,
            "status": run.status.value,
            "error": run.error,
        }

    def live_endpoints(self) -> list[str]:
        """Where it answers now: every running replica's endpoint (multi-host targets), else its
        own while it runs."""
        if not self.running:
            return []
        if self.replicas:
            return [r.endpoint for r in self.replicas if r.running and r.endpoint]
        return [self.endpoint] if self.endpoint else []

    def to_json(self) -> dict[str, Any]:
        # engine_port only where a proxy publishes the endpoint.
        unset = {"engine_port"} if self.engine_port is None else set()
        return self.model_dump(mode="json", exclude={"record", "detail", *unset})


class SmokeResult(Result):
    """What ``smoke`` found: the deployment's smoke report."""

    deployment: str
    report: SmokeReport

    def to_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, **smoke_json(self.report)}


class DestroyResult(Result):
    """What ``destroy`` did: whether the deployment was still there to stop."""

    deployment: str
    existed: bool


def record_target(record: DeploymentRecord, settings: Settings) -> Target:
    """The driver of a recorded deployment, from the target spec recorded at apply (older
    records: from the manifest they were applied from)."""
    if record.target_spec is not None:
        return registry.from_record(record.target_spec, settings)
    if record.target_kind == "local" or not record.manifest_path:
        if record.target_kind != "local":
            raise NotFoundError(
                f"no target recorded for {record.name}", hint="deployer apply MANIFEST records it"
            )
        return registry.from_record({"kind": "local"}, settings)
    loaded = load_manifest(Path(record.manifest_path))
    return registry.driver(loaded.deployment.spec.target, settings, loaded.base_dir)


def status(
    settings: Settings, name: str | None = None, *, include_destroyed: bool = False
) -> list[DeploymentView]:
    """Recorded deployments with live facts from their targets; ``name`` narrows to one (a
    destroyed one too), ``include_destroyed`` lists destroyed ones beside the others, each with
    its last run."""
    if name is not None:
        check_name(name)
    store = open_reader(settings)
    if store is None:
        if name is not None:
            raise unknown(name, [])
        return []
    try:
        records = (
            [get(store, name)]
            if name
            else store.list_deployments(include_destroyed=include_destroyed)
        )
        last_runs = store.latest_runs([r.name for r in records])
        costs = {r.name: measured_for(store, r.name, r.manifest_digest) for r in records}
    finally:
        store.close()
    return [
        _view(record, last_runs.get(record.name), settings).model_copy(
            update={"measured_cost": costs[record.name]}
        )
        for record in records
    ]


class StatusPage(Result):
    """One page of :func:`status_page`: its deployments and how many there are in all."""

    views: list[DeploymentView]
    total: int


def status_page(
    settings: Settings, *, limit: int, offset: int = 0, include_destroyed: bool = False
) -> StatusPage:
    """A page of :func:`status` (by name): live facts are gathered for its deployments only,
    and the state is read in two queries whatever the page's size."""
    store = open_reader(settings)
    if store is None:
        return StatusPage(views=[], total=0)
    try:
        records = store.list_deployments(include_destroyed=include_destroyed)
        page = records[offset : offset + limit]
        last_runs = store.latest_runs([r.name for r in page])
    finally:
        store.close()
    views = [_view(record, last_runs.get(record.name), settings) for record in page]
    return StatusPage(views=views, total=len(records))


def _view(
    record: DeploymentRecord, last_run: RunRecord | None, settings: Settings
) -> DeploymentView:
    observed = _observe(record, settings)
    return DeploymentView(
        record=record,
        running=bool(observed and observed.running),
        healthy=bool(observed and observed.healthy),
        pid=observed.pid if observed else None,
        detail=observed.detail if observed else None,
        replicas=observed.replicas if observed else (),
        last_run=last_run,
        args=tuple(secrets.mask(a) for a in observed.args) if observed else (),
        running_spec_digest=observed.spec_digest if observed else None,
        running_model=observed.inputs.get("model") if observed else None,
        engine_port=observed.engine_port if observed else None,
    )


def engine_load(views: list[DeploymentView]) -> dict[str, EngineLoad | str]:
    """The engine load behind each endpoint of the running deployments (every running replica
    of a multi-host one), read from its metrics now, by endpoint; an endpoint whose metrics could
    not be read gets the reason instead (the others are still read)."""
    from deployer.metrics.engine_load import ScrapeError, scrape  # watching only

    endpoints = [endpoint for view in views for endpoint in view.live_endpoints()]
    loads: dict[str, EngineLoad | str] = {}
    for endpoint in dict.fromkeys(endpoints):
        try:
            loads[endpoint] = scrape(endpoint)
        except ScrapeError as exc:
            loads[endpoint] = str(exc)
    return loads


def _observe(record: DeploymentRecord, settings: Settings) -> Observed | None:
    """Live facts of a recorded deployment (an unreachable host or cluster is a detail, not an
    error); None for a destroyed one."""
    if record.status == DeploymentStatus.DESTROYED:
        return None
    try:
        return record_target(record, settings).observe(record.name)
    except DeployerError as exc:
        return Observed(running=False, detail=exc.message)


def history(
    settings: Settings, name: str, limit: int = 10
) -> list[tuple[RunRecord, list[StepRecord]]]:
    """The latest runs of ``name`` with their steps, newest first."""
    with reading(settings, name) as store:
        return [(run, store.list_steps(run.id)) for run in store.list_runs(name, limit=limit)]


def smoke(
    name: str, settings: Settings, events: EventBus, manifest: Path | None = None
) -> SmokeResult:
    """Run the smoke checks of ``name`` again (from ``manifest`` or the one it was applied from).

    Records the run (failed when a check fails, interrupted on Ctrl-C) and the outcome as the
    deployment's health; raises SmokeFailedError when a check fails.
    """
    check_name(name)
    store = open_store(settings)
    try:
        record = get(store, name)
        path = manifest or (Path(record.manifest_path) if record.manifest_path else None)
        if path is None:
            raise NotFoundError(f"no manifest recorded for {name}", hint="pass --manifest PATH")
        loaded = load_manifest(path)
        if loaded.deployment.name != name:
            raise NotFoundError(
                f"{path} describes {loaded.deployment.name}, not {name}",
                hint="pass the manifest of this deployment with --manifest",
            )
        target = record_target(record, settings)
        spec = loaded.deployment.spec
        key = (
            credentials.api_key(
                spec.serving.api_key,
                key_dir=settings.deployment_dir(name),
                base_dir=loaded.base_dir,
            ).value
            if spec.serving.api_key
            else credentials.stored_api_key(settings.deployment_dir(name))
        )
        with (
            target.smoke_endpoints(name) as endpoints,
            recorded(store, name, "smoke", events) as pipeline,
        ):
            if not endpoints:
                raise NotFoundError(
                    f"deployment {name} is not running", hint=f"deployer status {name}"
                )
            report = pipeline.step(
                "smoke",
                StepAction.CHECK,
                f"{len(spec.smoke)} check(s) on {len(endpoints)} endpoint(s)",
                lambda: smoke_each(
                    endpoints, loaded.deployment.served_model_name, spec.smoke, key, events
                ),
            )
            store.set_status(
                name,
                DeploymentStatus.HEALTHY if report.passed else DeploymentStatus.UNHEALTHY,
                report.summary(),
            )
            if not report.passed:
                raise SmokeFailedError(
                    f"{name}: {report.summary()}",
                    hint=f"inspect the engine with: deployer logs {name}",
                    details=report.describe(),
                )
    finally:
        store.close()
    return SmokeResult(deployment=name, report=report)


def destroy(name: str, settings: Settings, events: EventBus) -> bool:
    """Stop ``name`` and forget its runtime files and key; keeps its history and logs.

    Raises NotFoundError for a name deployer never deployed; returns False when it was already
    stopped.
    """
    check_name(name)
    store = open_store(settings)
    try:
        record = get(store, name)
        with recorded(store, name, "destroy", events) as pipeline:
            target = record_target(record, settings)
            existed = pipeline.step(
                "destroy", StepAction.DELETE, f"stop {name}", lambda: target.destroy(name, events)
            )
            store.set_status(name, DeploymentStatus.DESTROYED, "destroyed")
        return bool(existed)
    finally:
        store.close()


def logs(
    name: str,
    settings: Settings,
    lines: int = 100,
    follow: bool = False,
    host: str | None = None,
) -> Iterator[str]:
    """The engine's log lines; on ssh targets every replica's (or ``host``'s), each line
    prefixed with its host when there are several. Reads only: creates nothing."""
    check_name(name)
    store = open_reader(settings)
    try:
        record = store.get_deployment(name) if store is not None else None
    finally:
        if store is not None:
            store.close()
    if record is None:
        target = registry.from_record({"kind": "local"}, settings)
    else:
        target = record_target(record, settings)
    return target.logs(name, lines, follow, host=host)


def api_key(name: str, settings: Settings) -> str:
    """The generated API key of ``name``; NotFoundError when it has none."""
    check_name(name)
    key = credentials.stored_api_key(settings.deployment_dir(name))
    if key is None:
        raise NotFoundError(
            f"{name} has no generated API key",
            hint="it is not deployed, or its manifest references the key (spec.serving.apiKey)",
        )
    return key
