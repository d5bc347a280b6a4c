"""``plan`` and ``apply``: the plan is the program, and one executor carries it out.

``apply`` plans exactly as ``deployer plan`` does (observing the target this time), then runs
the plan's steps in order, each through the pipeline (recorded, evented, retried when
temporary). A step either is the target's own (``Target.step_runners``) or one of the common
ones below. A step whose outcome changes the facts (provisioning hosts, building a quantized
artifact) re-plans, and the executor goes on with the new plan's remaining steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import computed_field, field_serializer

from deployer import credentials, inputs
from deployer.api import facts as gather
from deployer.api import pricing
from deployer.api.runs import open_store, recorded
from deployer.api.types import Result, smoke_json
from deployer.engines.install import EnginePackage, find_engine
from deployer.errors import (
    DeployerError,
    EngineStartError,
    NotFoundError,
    RolledBackError,
    RolloutRefusedError,
    SmokeFailedError,
)
from deployer.events import EventBus
from deployer.hub.lock import LockedModel, lock_path
from deployer.manifest.loader import LoadedManifest, load_manifest
from deployer.manifest.models import ARTIFACT_METHODS, SmokeCheck
from deployer.pipeline import Pipeline
from deployer.planner import Plan, PlannedStep, StepAction
from deployer.settings import Settings
from deployer.smoke import SmokeReport, run_checks
from deployer.state import DeploymentRecord, DeploymentStatus
from deployer.targets import registry
from deployer.targets.base import DeployRequest, RollsBack, StepRunner, Surges, Target

if TYPE_CHECKING:
    from deployer.quantize.run import QuantizeJob
    from deployer.smoke.gate import GateVerdict
    from deployer.state import StateStore


class ApplyResult(Result):
    """What ``apply`` did: the plan it carried out, whether the engine changed, the smoke
    report (None when the checks were skipped, and why), and where the API key comes from."""

    plan: Plan
    changed: bool
    smoke: SmokeReport | None
    smoke_skipped_reason: str | None
    endpoint: str
    api_key_source: str
    api_key_path: Path | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deployment(self) -> str:
        return self.plan.deployment

    @field_serializer("smoke")
    def _smoke(self, report: SmokeReport | None) -> dict[str, Any] | None:
        return smoke_json(report) if report is not None else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"api_key_path"})


def target_of(loaded: LoadedManifest, settings: Settings) -> Target:
    return registry.driver(loaded.deployment.spec.target, settings, loaded.base_dir)


def plan(path: Path, settings: Settings, *, allow_downtime: bool = False) -> Plan:
    """What ``apply`` would do now, without changing anything: no key is generated, and the hub,
    hosts and clusters are not contacted (the lock, the store and deployer's catalog give the
    model's facts). ``allow_downtime``: what ``apply --allow-downtime`` would do."""
    return plan_loaded(load_manifest(path), settings, allow_downtime=allow_downtime)


def plan_loaded(
    loaded: LoadedManifest,
    settings: Settings,
    reader: StateStore | None = None,
    *,
    allow_downtime: bool = False,
) -> Plan:
    """``plan`` of a manifest already loaded; ``reader``: a state already open, else one is
    opened (read-only) for the measured cost."""
    made = gather.make(
        loaded,
        target_of(loaded, settings),
        settings,
        key=None,
        offline=True,
        allow_downtime=allow_downtime,
    )
    return pricing.with_measured_cost(made, loaded, settings, reader)


def apply(
    path: Path, settings: Settings, events: EventBus, *, allow_downtime: bool = False
) -> ApplyResult:
    """Make the deployment in ``path`` real and prove it answers.

    Idempotent: with nothing changed the engine is left alone (same process) and the smoke
    checks that passed for this manifest are not re-run. A changed manifest restarts the engine:
    on a target that surges (the local one), beside the serving engine, which keeps the traffic
    until the new one passes its gate; ``allow_downtime`` restarts in place where two engines do
    not fit (else RolloutRefusedError). Raises EngineStartError, HealthTimeoutError or
    SmokeFailedError (after recording the failure), RolledBackError when a surge's new engine
    failed its gate (the old one serves on), and ConcurrentRunError when another deployer is
    applying the same deployment.
    """
    return apply_loaded(load_manifest(path), settings, events, allow_downtime=allow_downtime)


def apply_loaded(
    loaded: LoadedManifest, settings: Settings, events: EventBus, *, allow_downtime: bool = False
) -> ApplyResult:
    """``apply`` of a manifest already loaded (one document of a file or folder)."""
    target = target_of(loaded, settings)
    target.preflight()
    store = open_store(settings)
    try:
        previous = store.get_deployment(loaded.deployment.name)
        with recorded(
            store,
            loaded.deployment.name,
            "apply",
            events,
            on_failure=lambda exc: _record_failed_first(store, loaded, target, exc),
        ) as pipeline:
            run = _Apply(loaded, target, settings, store, pipeline, previous, allow_downtime)
            return run.run()
    finally:
        store.close()


def _record_failed_first(
    store: StateStore, loaded: LoadedManifest, target: Target, error: BaseException
) -> None:
    """A first apply that failed leaves a FAILED deployment, never a generated key or folder for
    a deployment that ``status`` and ``destroy`` do not know: ``status`` shows why, a retry
    keeps the same key, ``destroy`` removes it. A deployment already recorded keeps its own
    record (its failure is the run's)."""
    name = loaded.deployment.name
    record = store.get_deployment(name)
    if record is not None and record.status != DeploymentStatus.DESTROYED:
        return
    store.upsert_deployment(
        name,
        target_kind=target.kind,
        target_spec=target.spec_record(),
        status=DeploymentStatus.FAILED,
        manifest_path=str(loaded.path.absolute()),
        message=f"first apply failed: {str(error) or type(error).__name__}",
    )


@dataclass
class _Apply:
    """One apply: the executor and the common steps."""

    loaded: LoadedManifest
    target: Target
    settings: Settings
    store: StateStore
    pipeline: Pipeline
    previous: DeploymentRecord | None
    allow_downtime: bool = False
    report: SmokeReport | None = None
    results: dict[str, object] = field(default_factory=dict)

    def run(self) -> ApplyResult:
        deployment = self.loaded.deployment
        self.key = credentials.api_key(
            deployment.spec.serving.api_key,
            key_dir=self.settings.deployment_dir(deployment.name),
            base_dir=self.loaded.base_dir,
        )
        self.digest = gather.manifest_digest(self.loaded)
        self.plan = self._plan()
        common: dict[str, Callable[[PlannedStep], object]] = {
            "fetch": self._fetch,
            "model": lambda step: None,
            "quantize": self._quantize,
            "gate": self._gate,
            "engine": self._engine,
            "deploy": self._deploy,
            "ready": self._ready,
            "smoke": self._smoke,
            "rollout": self._rollout,
            "slo-gate": self._slo_gate,
        }
        own = self.target.step_runners()
        done: set[str] = set()
        while (step := next((s for s in self.plan.steps if s.name not in done), None)) is not None:
            done.add(step.name)
            if step.action == StepAction.SKIP:
                self.pipeline.skip(step.name, step.reason)
                continue
            result = self.pipeline.step(
                step.name, step.action, step.reason, functools.partial(self._run, step, own, common)
            )
            if step.name in ("provision", "quantize"):
                # What the step made (the hosts' facts, the artifact) is what the rest plans by.
                self.plan = self._plan()
            self.results[step.name] = result
        return self._finish()

    def _run(
        self,
        step: PlannedStep,
        own: Mapping[str, StepRunner],
        common: Mapping[str, Callable[[PlannedStep], object]],
    ) -> object:
        """Step ``step``: the target's own runner, else the common one."""
        if step.name in own:
            return own[step.name](self.request())
        return common[step.name](step)

    def _plan(self) -> Plan:
        previous = self.previous
        passed = (
            previous is not None
            and previous.status == DeploymentStatus.HEALTHY
            and previous.manifest_digest == self.digest
        )
        return gather.make(
            self.loaded,
            self.target,
            self.settings,
            key=self.key,
            events=self.pipeline.events,
            smoke_passed=passed,
            allow_downtime=self.allow_downtime,
        )

    @property
    def surging(self) -> bool:
        """Whether this apply rolls a new engine out beside the serving one."""
        return self.plan.rollout is not None and self.plan.rollout.surges

    @functools.cached_property
    def hub_token(self) -> str | None:
        """Resolved once per apply, when a step first needs it."""
        return gather.hub_token(self.loaded)

    @functools.cached_property
    def lock(self) -> LockedModel | None:
        """Read once per apply, when a step first needs it."""
        return gather.locked(self.loaded)

    def request(self) -> DeployRequest:
        return DeployRequest(
            deployment=self.loaded.deployment,
            plan=self.plan,
            api_key=self.key.value,
            events=self.pipeline.events,
            hub_token=self.hub_token,
            lock=self.lock,
        )

    @property
    def changed(self) -> bool:
        return self.plan.step("deploy").action != StepAction.SKIP

    # --- the common steps ----------------------------------------------------------------------

    def _fetch(self, step: PlannedStep) -> object:
        fetcher = gather.fetcher(self.loaded, self.settings, self.pipeline.events)
        return fetcher.fetch(gather.locked(self.loaded))

    def _job(self) -> QuantizeJob:
        from deployer.quantize import run as quantize_run  # only for a quantized model

        spec = self.loaded.deployment.spec.quantize
        source = gather.model_source(self.loaded, self.settings, self.pipeline.events, offline=True)
        job = quantize_run.job_for(
            spec, source, settings=self.settings, base_dir=self.loaded.base_dir
        )
        if job is None:
            raise NotFoundError(
                f"cannot quantize {self.loaded.deployment.name}: its config.json is not in the "
                "store",
                hint=f"run: deployer fetch {self.loaded.path}",
            )
        return job

    def _quantize(self, step: PlannedStep) -> object:
        from deployer.quantize import run as quantize_run

        job = self._job()
        return quantize_run.stored(job, self.settings) or quantize_run.ensure_artifact(
            job, self.settings, self.pipeline.events
        )

    def _gate(self, step: PlannedStep) -> None:
        from deployer.quantize import run as quantize_run

        job = self._job()
        record = quantize_run.stored(job, self.settings)
        if record is None:
            raise NotFoundError(
                f"the quantized artifact of {self.loaded.deployment.name} is not in the store",
                hint=f"run: deployer quantize {self.loaded.path}",
            )
        quantize_run.check_gate(job, record)

    def _engine(self, step: PlannedStep) -> object:
        engine = self.plan.engine
        return find_engine(
            self.settings,
            EnginePackage(
                engine=engine.engine,
                package=engine.package,
                version=engine.version,
                device=engine.device,
            ),
        )

    def _deploy(self, step: PlannedStep) -> None:
        if self.surging:
            # The old engine serves until the switch: the record keeps saying so.
            self.pipeline.events.log(step.reason, step="deploy")
        else:
            self._save(DeploymentStatus.DEPLOYING, step.reason)
        try:
            self.target.deploy(self.request())
        except DeployerError as exc:
            if self.surging:
                self._roll_back(f"the new engine did not start: {exc.message}", exc.details)
            raise

    def _ready(self, step: PlannedStep) -> None:
        timeout = self.loaded.deployment.spec.serving.startup_timeout_seconds
        try:
            self.target.wait_ready(self.request(), timeout)
        except EngineStartError as exc:
            if self.surging:
                self._roll_back(f"the new engine did not become ready: {exc.message}", exc.details)
            if self.changed:
                self.target.destroy(self.loaded.deployment.name, self.pipeline.events)
            self.store.set_status(self.loaded.deployment.name, DeploymentStatus.FAILED, exc.message)
            raise

    def _smoke(self, step: PlannedStep) -> SmokeReport:
        with self.target.smoke_endpoints(self.loaded.deployment.name, self.plan) as endpoints:
            self.report = smoke_each(
                endpoints,
                self.plan.served_model_name,
                self.loaded.deployment.spec.smoke,
                self.key.value,
                self.pipeline.events,
            )
        if (self.surging or self.replaced_release) and not self.report.passed:
            self._roll_back(
                f"the new engine failed its smoke gate ({self.report.summary()})",
                self.report.describe(),
            )
        return self.report

    @property
    def replaced_release(self) -> bool:
        """Whether this apply replaced a revision that a target keeping revisions
        (:class:`RollsBack`: Kubernetes) can go back to."""
        previous = self.previous
        return (
            isinstance(self.target, RollsBack)
            and self.changed
            and previous is not None
            and previous.manifest_digest is not None
            and previous.manifest_digest != self.digest
        )

    def _rollout(self, step: PlannedStep) -> None:
        """How the changed engine replaces the serving one; refuses a surge that does not fit
        unless in place was allowed (the plan decided, with ``allow_downtime``)."""
        rollout = self.plan.rollout
        if rollout is not None and rollout.refused is not None:
            raise RolloutRefusedError(
                rollout.refused,
                hint=f"deployer apply --allow-downtime {self.loaded.path} restarts it in place, "
                "or set spec.rollout.strategy: recreate",
            )

    def _slo_gate(self, step: PlannedStep) -> GateVerdict:
        """The SLO gate of a surge: a short benchmark of the new engine (``rollout.gate: slo``);
        a verdict that fails, or no verdict at all, rolls back."""
        from deployer.api.bench import slo_gate  # only for rollout.gate: slo

        rollout, slo = self.plan.rollout, self.loaded.deployment.spec.slo
        if rollout is None or rollout.engine_endpoint is None or slo is None:
            raise RolloutRefusedError(
                "the SLO gate has no new engine or no spec.slo to measure",
                hint="declare spec.slo, or use rollout.gate: smoke",
            )
        try:
            verdict = slo_gate(
                self.loaded,
                rollout.engine_endpoint,
                self.key.value,
                rollout.gate_seconds,
                self.settings,
                self.pipeline.events,
            )
        except DeployerError as exc:
            self._roll_back(f"the SLO gate could not run: {exc.message}", exc.hint)
        if not verdict.passed:
            self._roll_back(f"the new engine failed its SLO gate: {verdict.describe()}", None)
        return verdict

    def _roll_back(self, why: str, details: str | None) -> NoReturn:
        """A changed engine that failed its gate: a surge's new engine stops and the old one
        keeps serving; on a target that keeps revisions (Kubernetes) the previous one is
        brought back. The record says which revision serves, and the run fails."""
        name = self.loaded.deployment.name
        back = None
        if isinstance(self.target, Surges):
            self.target.abandon(name, self.pipeline.events)
        elif isinstance(self.target, RollsBack):
            back = self.target.roll_back(name, self.pipeline.events)
        observed = self.target.observe(name)
        previous = self.previous
        serving = (
            f"manifest {previous.manifest_digest[:12]}"
            if previous is not None and previous.manifest_digest
            else "the previous revision"
        )
        spec = (observed.spec_digest or "")[:12]
        where = back or f"pid {observed.pid}, port {observed.engine_port or observed.port}"
        message = (
            f"rollout to manifest {self.digest[:12]} rolled back: {why}; still serving "
            f"{serving} (spec {spec}, {where})"
        )
        status = previous.status if previous is not None else DeploymentStatus.HEALTHY
        if back is not None and previous is not None:
            # The deploy recorded the new revision; the previous one serves again.
            self.store.upsert_deployment(
                name,
                target_kind=previous.target_kind,
                status=status,
                manifest_path=previous.manifest_path,
                manifest_digest=previous.manifest_digest,
                spec_digest=previous.spec_digest,
                endpoint=previous.endpoint,
                served_model_name=previous.served_model_name,
                message=message,
            )
        else:
            self.store.set_status(name, status, message)
        kept = f"{back} serves again" if back else f"the running engine keeps serving ({where})"
        raise RolledBackError(
            f"{name}: {why}; rolled back: {kept}",
            hint=f"see the new engine's answers above; deployer status {name} names the "
            "revision that serves",
            details=details,
        )

    # --- the outcome ---------------------------------------------------------------------------

    def _save(self, status: DeploymentStatus, message: str | None) -> None:
        self.store.upsert_deployment(
            self.loaded.deployment.name,
            target_kind=self.target.kind,
            target_spec=self.target.spec_record(),
            status=status,
            manifest_path=str(self.loaded.path.absolute()),
            manifest_digest=self.digest,
            spec_digest=self.plan.engine.spec_digest,
            endpoint=self.plan.endpoint,
            served_model_name=self.plan.served_model_name,
            message=message,
        )

    def _finish(self) -> ApplyResult:
        name = self.loaded.deployment.name
        report = self.report
        smoke = self.plan.step("smoke")
        skipped = smoke.reason if report is None else None
        healthy = report is None or report.passed
        self._save(
            DeploymentStatus.HEALTHY if healthy else DeploymentStatus.UNHEALTHY,
            report.summary() if report else skipped,
        )
        if healthy:
            keep_revision(self.store, self.loaded, self.digest, self.pipeline.run_id)
        if report is not None and not report.passed:
            raise SmokeFailedError(
                f"{name} is running but {report.summary()}",
                hint=f"the engine is left running; inspect it with: deployer logs {name}",
                details=report.describe(),
            )
        return ApplyResult(
            plan=self.plan,
            changed=self.changed,
            smoke=report,
            smoke_skipped_reason=skipped,
            endpoint=self.plan.endpoint,
            api_key_source=self.key.source,
            api_key_path=self.key.path,
        )


def keep_revision(
    store: StateStore, loaded: LoadedManifest, digest: str, run_id: int | None
) -> None:
    """Keep the manifest file and its lock, as applied, as the deployment's next revision."""
    lock = lock_path(loaded.path)
    store.add_revision(
        loaded.deployment.name,
        run_id=run_id,
        manifest_path=str(
            loaded.origin / loaded.path.name if loaded.origin else loaded.path.absolute()
        ),
        manifest_digest=digest,
        manifest_text=inputs.read_text(loaded.path, inputs.MANIFEST),
        lock_text=inputs.read_text(lock, inputs.LOCKFILE) if lock.is_file() else None,
    )


def smoke_each(
    endpoints: list[str],
    model: str,
    checks: list[SmokeCheck],
    api_key: str | None,
    events: EventBus,
) -> SmokeReport:
    """Run ``checks`` against every endpoint from this machine; the first failing report, else
    the last one."""
    reports: list[SmokeReport] = []
    for endpoint in endpoints:
        events.log(f"smoke checks against {endpoint}", step="smoke")
        report = run_checks(endpoint, model, checks, api_key=api_key, events=events)
        if not report.passed:
            return report
        reports.append(report)
    return reports[-1]


__all__ = [
    "ARTIFACT_METHODS",
    "ApplyResult",
    "apply",
    "apply_loaded",
    "plan",
    "plan_loaded",
    "smoke_each",
    "target_of",
]
