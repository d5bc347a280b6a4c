"""The facade the CLI and the dashboard call: validate, plan, apply, status, smoke, destroy.

Each function takes plain inputs and :class:`~deployer.settings.Settings`, reports long work as
events on the given bus, returns typed results, and raises :class:`~deployer.errors.DeployerError`
for anything a user can act on. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer import credentials, inputs
from deployer.engines.install import EnginePackage, default_package, detect_device, find_engine
from deployer.errors import (
    DeployerError,
    EngineStartError,
    NotFoundError,
    SmokeFailedError,
    StateError,
    UnsupportedError,
)
from deployer.events import EventBus, EventKind
from deployer.hub.fetch import Fetcher, FetchResult, LockMismatchError
from deployer.hub.lock import LockedModel, ModelLock, lock_path, read_lock, write_lock
from deployer.hub.safetensors_header import parse_header
from deployer.hub.source import ModelSourceFacts, hub_facts, local_facts, locked_entry
from deployer.hub.store import ModelStore
from deployer.kube import render as kube_render
from deployer.kube.helm import find_helm
from deployer.kube.values import chart_values, describe_pin
from deployer.manifest.loader import LoadedManifest, load_manifest, load_manifests
from deployer.manifest.models import (
    ARTIFACT_METHODS,
    KubernetesTargetSpec,
    SmokeCheck,
    SshTargetSpec,
)
from deployer.manifest.schema import json_schema
from deployer.pipeline import Pipeline
from deployer.planner import (
    Facts,
    Observed,
    Plan,
    PlannedStep,
    ReplicaState,
    StepAction,
    make_plan,
)
from deployer.planner.accelerators import Accelerator, cpu_accelerator, host_memory_bytes, lookup
from deployer.planner.catalog import builtin_config
from deployer.planner.model_facts import ModelFacts, facts_from_config, facts_from_folder
from deployer.planner.plan import Device
from deployer.quantize import run as quantize_run
from deployer.quantize.artifact import QuantizeRecord
from deployer.quantize.run import QuantizeJob
from deployer.settings import Settings, check_name
from deployer.smoke import SmokeReport, run_checks
from deployer.state import (
    DeploymentRecord,
    DeploymentStatus,
    RunRecord,
    RunStatus,
    StepRecord,
)
from deployer.targets.kubernetes import Cluster, KubernetesTarget, ObjectChange, Release, compare
from deployer.targets.local import LocalTarget
from deployer.targets.local.target import free_port
from deployer.targets.ssh.target import SshTarget
from deployer.units import human_bytes

if TYPE_CHECKING:
    from deployer.state import StateStore


#: The port a remote target's engine listens on when the manifest names none (vLLM's default).
REMOTE_DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    changed: bool
    smoke: SmokeReport | None
    smoke_skipped_reason: str | None
    endpoint: str
    api_key_source: str
    api_key_path: Path | None


@dataclass(frozen=True)
class DeploymentView:
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


# --- manifests ---------------------------------------------------------------------------------


def validate(paths: Sequence[Path]) -> list[LoadedManifest]:
    """Load and validate every manifest under ``paths``; raises ManifestError listing problems."""
    return load_manifests(paths)


def schema() -> dict[str, Any]:
    return json_schema()


# --- plan and apply ----------------------------------------------------------------------------


def plan(path: Path, settings: Settings) -> Plan:
    """What ``apply`` would do now, without changing anything: no key is generated, and the hub
    is not contacted (the lock, the store and deployer's catalog give the model's facts)."""
    loaded = load_manifest(path)
    kind = loaded.deployment.spec.target.kind
    target = _target(loaded, settings) if kind in ("local", "ssh") else None
    return _plan(loaded, target, settings, key=None, offline=True)


def apply(path: Path, settings: Settings, events: EventBus) -> ApplyResult:
    """Make the deployment in ``path`` real and prove it answers.

    Idempotent: with nothing changed the engine is left alone (same process) and the smoke
    checks that passed for this manifest are not re-run. A changed manifest restarts the engine.
    Raises EngineStartError, HealthTimeoutError or SmokeFailedError (after recording the failure)
    and ConcurrentRunError when another deployer is applying the same deployment.
    """
    loaded = load_manifest(path)
    deployment = loaded.deployment
    name = deployment.name
    if isinstance(deployment.spec.target, KubernetesTargetSpec):
        return _apply_kubernetes(loaded, settings, events)
    target = _target(loaded, settings)
    store = _store(settings)
    try:
        previous = store.get_deployment(name)
        run = store.start_run(name, "apply")
        events.emit(EventKind.RUN_STARTED, f"apply {name}", run_id=run.id)
        pipeline = Pipeline(store, run.id, events)
        try:
            result = _apply(loaded, target, settings, store, pipeline, previous)
        except BaseException as exc:
            status = (
                RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            )
            store.finish_run(run.id, status, str(exc) or type(exc).__name__)
            _record_failed_first(store, loaded, target.kind, exc)
            raise
        store.finish_run(run.id, RunStatus.SUCCEEDED)
        events.emit(EventKind.RUN_FINISHED, f"apply {name}: done", run_id=run.id)
        return result
    finally:
        store.close()


def _record_failed_first(
    store: StateStore, loaded: LoadedManifest, kind: str, error: BaseException
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
        target_kind=kind,
        status=DeploymentStatus.FAILED,
        manifest_path=str(loaded.path),
        message=f"first apply failed: {str(error) or type(error).__name__}",
    )


def _apply(
    loaded: LoadedManifest,
    target: LocalTarget | SshTarget,
    settings: Settings,
    store: StateStore,
    pipeline: Pipeline,
    previous: DeploymentRecord | None,
) -> ApplyResult:
    deployment = loaded.deployment
    name = deployment.name
    key = credentials.api_key(
        deployment.spec.serving.api_key,
        key_dir=settings.deployment_dir(name),
        base_dir=loaded.base_dir,
    )
    if isinstance(target, SshTarget):
        _provision_step(target, pipeline)
    the_plan = _plan(loaded, target, settings, key=key, events=pipeline.events)
    model_step = the_plan.steps[0]
    if model_step.name == "fetch":
        fetcher = _fetcher(loaded, settings, pipeline.events)
        locked = _locked(loaded)
        if model_step.action == StepAction.SKIP:
            pipeline.skip("fetch", model_step.reason)
        else:
            pipeline.step(
                "fetch", model_step.action, model_step.reason, lambda: fetcher.fetch(locked)
            )
    else:
        pipeline.step("model", StepAction.CHECK, model_step.reason, lambda: None)
    if loaded.deployment.spec.quantize.method in ARTIFACT_METHODS:
        the_plan = _quantize_steps(loaded, target, settings, pipeline, the_plan, key)
    if isinstance(target, SshTarget):
        pipeline.skip("engine", "installed on the hosts by the deploy playbook")
    else:
        pipeline.step(
            "engine",
            StepAction.CHECK,
            the_plan.step("engine").reason,
            lambda: find_engine(settings, _package(the_plan)),
        )
    deploy = the_plan.step("deploy")
    changed = deploy.action != StepAction.SKIP
    manifest_digest = _manifest_digest(loaded)
    if changed:
        store.upsert_deployment(
            name,
            target_kind=target.kind,
            status=DeploymentStatus.DEPLOYING,
            manifest_path=str(loaded.path),
            manifest_digest=manifest_digest,
            spec_digest=the_plan.engine.spec_digest,
            endpoint=the_plan.endpoint,
            served_model_name=the_plan.served_model_name,
            message=deploy.reason,
        )
        pipeline.step(
            "deploy",
            deploy.action,
            deploy.reason,
            lambda: target.deploy(the_plan, pipeline.events, key.value),
        )
    else:
        pipeline.skip("deploy", deploy.reason)
    try:
        pipeline.step(
            "ready",
            StepAction.CHECK,
            "wait for /health",
            lambda: target.wait_ready(
                the_plan, pipeline.events, deployment.spec.serving.startup_timeout_seconds
            ),
        )
    except EngineStartError as exc:
        target.destroy(name, pipeline.events) if changed else None
        store.set_status(name, DeploymentStatus.FAILED, exc.message)
        raise

    report: SmokeReport | None = None
    skipped_reason: str | None = None
    checks = deployment.spec.smoke
    if not checks:
        skipped_reason = "no smoke checks declared"
        pipeline.skip("smoke", skipped_reason)
    elif (
        not changed
        and previous is not None
        and previous.status == DeploymentStatus.HEALTHY
        and previous.manifest_digest == manifest_digest
    ):
        skipped_reason = f"passed for this manifest already; re-run with: deployer smoke {name}"
        pipeline.skip("smoke", skipped_reason)
    else:
        endpoints = _endpoints(target, the_plan)
        report = pipeline.step(
            "smoke",
            StepAction.CHECK,
            f"{len(checks)} check(s) on {len(endpoints)} endpoint(s)",
            lambda: _smoke_each(
                endpoints, the_plan.served_model_name, checks, key.value, pipeline.events
            ),
        )
    status = (
        DeploymentStatus.HEALTHY if report is None or report.passed else DeploymentStatus.UNHEALTHY
    )
    store.upsert_deployment(
        name,
        target_kind=target.kind,
        status=status,
        manifest_path=str(loaded.path),
        manifest_digest=manifest_digest,
        spec_digest=the_plan.engine.spec_digest,
        endpoint=the_plan.endpoint,
        served_model_name=the_plan.served_model_name,
        message=report.summary() if report else skipped_reason,
    )
    if report is not None and not report.passed:
        raise SmokeFailedError(
            f"{name} is running but {report.summary()}",
            hint=f"the engine is left running; inspect it with: deployer logs {name}",
            details=report.describe(),
        )
    return ApplyResult(
        plan=the_plan,
        changed=changed,
        smoke=report,
        smoke_skipped_reason=skipped_reason,
        endpoint=the_plan.endpoint,
        api_key_source=key.source,
        api_key_path=key.path,
    )


def _plan(
    loaded: LoadedManifest,
    target: LocalTarget | SshTarget | None,
    settings: Settings,
    *,
    key: credentials.ApiKey | None,
    events: EventBus | None = None,
    offline: bool = False,
) -> Plan:
    """The plan for ``loaded``; ``target`` None plans for a remote target without observing it."""
    deployment = loaded.deployment
    spec = deployment.spec
    source = _model_facts(loaded, settings, events or EventBus(), offline=offline)
    device = _device(spec.resources.accelerator, local=isinstance(target, LocalTarget))
    accelerator_spec = _accelerator_spec(spec.resources.accelerator, device)
    hardware = target.hardware() if isinstance(target, SshTarget) else None
    if hardware is not None:
        # What the hosts have, as provision found it: their device for 'auto', and for the CPU
        # their memory (not this machine's).
        host_device, host_accelerator = hardware
        if spec.resources.accelerator == "auto":
            device = host_device
        if device == host_device and (spec.resources.accelerator == "auto" or device == "cpu"):
            accelerator_spec = host_accelerator or accelerator_spec
    package = default_package(spec.serving.engine, spec.serving.version, device)
    # Offline plans of ssh targets do not contact the hosts (their endpoints come from the
    # inventory); apply observes them.
    observable = target is not None and not (offline and isinstance(target, SshTarget))
    observed = target.observe(deployment.name) if target is not None and observable else None
    port = spec.serving.port or (observed.port if observed else None)
    if port is None and isinstance(target, LocalTarget):
        port = target.previous_port(deployment.name)
        if port is None:
            host = spec.serving.host if spec.serving.host != "0.0.0.0" else "127.0.0.1"  # noqa: S104
            port = free_port(host)
    port = port or REMOTE_DEFAULT_PORT
    if key is None:
        stored = credentials.stored_api_key(settings.deployment_dir(deployment.name))
        key_source = spec.serving.api_key.describe() if spec.serving.api_key else "generated"
        key_digest = (
            credentials.ApiKey(stored, "generated", None).digest if stored else "not generated yet"
        )
    else:
        key_source, key_digest = key.source, key.digest
    step_name = "fetch" if spec.model.source == "huggingface" else "model"
    shape, shape_source = _model_shape(loaded, source, settings)
    facts = Facts(
        device=device,
        model_path=str(source.path),
        model_fingerprint=source.fingerprint,
        model_step=PlannedStep(
            name=step_name, action=StepAction(source.action), reason=source.reason
        ),
        port=port,
        engine_package=package.package,
        engine_version=package.version,
        api_key_source=key_source,
        api_key_digest=key_digest,
        observed=observed,
        model_shape=shape,
        model_shape_source=shape_source,
        accelerator_spec=accelerator_spec,
    )
    facts = _with_quantize(facts, loaded, source, settings)
    decided = make_plan(deployment, facts)
    if isinstance(target, SshTarget):
        # The engine answers on each host's address: the plan's endpoint is the first replica's.
        endpoints = {replica.name: replica.base_url(port) for replica in target.replicas()}
        decided = decided.model_copy(
            update={"endpoint": next(iter(endpoints.values())), "replica_endpoints": endpoints}
        )
    return decided


# --- quantization ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizeOutcome:
    """What ``deployer quantize`` did: the job, the artifact's record, whether it was built now
    (False: found in the store), and the gate's verdict in one line."""

    job: QuantizeJob
    record: QuantizeRecord
    created: bool
    gate: str


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
    source = _model_facts(loaded, settings, events, offline=True)
    job = quantize_run.job_for(spec, source, settings=settings, base_dir=loaded.base_dir)
    if job is None or not source.path.is_dir():
        raise NotFoundError(
            f"{loaded.deployment.name}: the model is not in the store yet",
            hint=f"run: deployer fetch {path}",
        )
    existing = quantize_run.stored(job, settings)
    record = existing or quantize_run.ensure_artifact(job, settings, events)
    outcome = QuantizeOutcome(
        job, record, existing is None, quantize_run.describe_gate(job, record)
    )
    quantize_run.check_gate(job, record)
    return outcome


def _with_quantize(
    facts: Facts, loaded: LoadedManifest, source: ModelSourceFacts, settings: Settings
) -> Facts:
    """``facts`` for a method deployer quantizes itself: the engine serves the artifact (its
    path in the store and its key), the plan gets the quantize and gate steps, and the capacity
    plan the artifact's measured size once it exists. Other methods: ``facts`` unchanged."""
    spec = loaded.deployment.spec.quantize
    if spec.method not in ARTIFACT_METHODS:
        return facts
    if loaded.deployment.spec.target.kind == "kubernetes":
        raise UnsupportedError(
            f"{loaded.path}: quantize method {spec.method} is not supported on kubernetes "
            "targets yet (the cluster's pods cannot fetch deployer's local artifact)",
            hint="use quantize method none or fp8 there; int8 and w4a16 work on local and ssh",
        )
    job = quantize_run.job_for(spec, source, settings=settings, base_dir=loaded.base_dir)
    gate = PlannedStep(
        name="gate",
        action=StepAction.CHECK,
        reason=f"perplexity may rise at most +{spec.gate.max_perplexity_increase:.0%} "
        f"({spec.gate.text.describe()})",
    )
    if job is None:
        return dataclasses.replace(
            facts,
            model_path=f"(the {spec.method} artifact, decided once the model is fetched)",
            model_fingerprint=f"{source.fingerprint}:{spec.method}",
            quantize_step=PlannedStep(
                name="quantize",
                action=StepAction.CREATE,
                reason=f"{spec.method} once the model is fetched",
            ),
            gate_step=gate,
        )
    record = quantize_run.stored(job, settings)
    if record is not None:
        step = PlannedStep(
            name="quantize",
            action=StepAction.SKIP,
            reason=f"artifact {job.short_key} in store ({job.recipe.describe()}, "
            f"{human_bytes(record.artifact_bytes)})",
        )
        gate = gate.model_copy(update={"reason": quantize_run.describe_gate(job, record)})
    else:
        step = PlannedStep(
            name="quantize",
            action=StepAction.CREATE,
            reason=f"{job.recipe.describe()} on {job.samples} samples of "
            f"{job.calibration.label} (artifact {job.short_key}; minutes)",
        )
    return dataclasses.replace(
        facts,
        model_path=str(job.artifact_path),
        model_fingerprint=job.key,
        quantize_step=step,
        gate_step=gate,
        quantized_weight_bytes=record.weight_bytes if record else None,
    )


def _quantize_steps(
    loaded: LoadedManifest,
    target: LocalTarget | SshTarget,
    settings: Settings,
    pipeline: Pipeline,
    the_plan: Plan,
    key: credentials.ApiKey,
) -> Plan:
    """Run apply's quantize and gate steps; the plan to deploy with (re-planned when the
    artifact was just built or the model just fetched, so it names the artifact and its size).

    The gate raises QualityGateError before anything is deployed.
    """
    spec = loaded.deployment.spec.quantize
    source = _model_facts(loaded, settings, pipeline.events, offline=True)
    job = quantize_run.job_for(spec, source, settings=settings, base_dir=loaded.base_dir)
    if job is None:
        raise NotFoundError(
            f"cannot quantize {loaded.deployment.name}: its config.json is not in the store",
            hint=f"run: deployer fetch {loaded.path}",
        )
    planned = the_plan.step("quantize")
    record = quantize_run.stored(job, settings)
    if record is not None and planned.action == StepAction.SKIP:
        pipeline.skip("quantize", planned.reason)
    else:
        record = pipeline.step(
            "quantize",
            StepAction.CREATE,
            planned.reason,
            lambda: quantize_run.ensure_artifact(job, settings, pipeline.events),
        )
    found = record
    pipeline.step(
        "gate",
        StepAction.CHECK,
        quantize_run.describe_gate(job, found),
        lambda: quantize_run.check_gate(job, found),
    )
    if planned.action == StepAction.SKIP:
        return the_plan
    return _plan(loaded, target, settings, key=key, events=pipeline.events)


def _provision_step(target: SshTarget, pipeline: Pipeline) -> None:
    """Provision the hosts that were never provisioned (their facts are what the plan uses)."""
    missing = target.unprovisioned()
    if not missing:
        pipeline.skip("provision", "every host's facts are recorded (deployer provision)")
        return
    pipeline.step(
        "provision",
        StepAction.CREATE,
        f"not provisioned yet: {', '.join(missing)}",
        lambda: target.provision(missing, pipeline.events),
    )


def _endpoints(target: LocalTarget | SshTarget, the_plan: Plan) -> list[str]:
    """Every replica's base URL: one for the local target, one per host for ssh."""
    if isinstance(target, SshTarget):
        return target.endpoints(int(the_plan.endpoint.rsplit(":", 1)[1].split("/", 1)[0]))
    return [the_plan.endpoint]


def _smoke_each(
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


def _accelerator_spec(name: str, device: Device) -> Accelerator | None:
    if device == "cpu":
        return cpu_accelerator(host_memory_bytes())
    return None if name == "auto" else lookup(name)


def _model_shape(
    loaded: LoadedManifest, source: ModelSourceFacts, settings: Settings
) -> tuple[ModelFacts | None, str]:
    """The model's shape and size from the best evidence at hand, without downloading weights:
    its files (a folder or a fetched snapshot), else the config and weight headers a lock kept
    in the store, else deployer's copy of the published config."""
    model = loaded.deployment.spec.model
    if source.path.is_dir():
        return facts_from_folder(
            source.path
        ), f"config.json and safetensors headers in {source.path}"
    if model.source != "huggingface":
        return None, ""
    store = ModelStore(settings.models_dir)
    locked = source.locked
    config_file = locked.file("config.json") if locked else None
    if locked is not None and config_file is not None and store.has_blob(config_file.sha256):
        config = inputs.read_json(store.blob_path(config_file.sha256), inputs.MODEL_CONFIG)
        headers = []
        for file in locked.files:
            if not file.path.endswith(".safetensors"):
                continue
            raw = store.cached_header(file.sha256)
            if raw is None:
                break
            headers.append(parse_header(raw, path=Path(file.path), file_size=file.size))
        else:
            return (
                facts_from_config(config, headers),
                "config.json and safetensors headers kept by deployer lock",
            )
        return facts_from_config(config), "config.json of the locked commit (architecture estimate)"
    config = builtin_config(model.repo)
    if config is None:
        return None, ""
    return (
        facts_from_config(config),
        f"deployer's copy of {model.repo}'s published config.json (architecture estimate; "
        "deployer lock reads the real weight headers)",
    )


def _model_facts(
    loaded: LoadedManifest, settings: Settings, events: EventBus, *, offline: bool = False
) -> ModelSourceFacts:
    model = loaded.deployment.spec.model
    if model.source == "local":
        return local_facts(model, loaded.resolve_path(model.path), base_dir=loaded.base_dir)
    return hub_facts(
        model,
        locked=_locked(loaded),
        store=ModelStore(settings.models_dir),
        token=None if offline else _hub_token(loaded),
        events=events,
        offline=offline,
    )


def _locked(loaded: LoadedManifest) -> LockedModel | None:
    model = loaded.deployment.spec.model
    if model.source != "huggingface":
        return None
    path = lock_path(loaded.path)
    return locked_entry(model, read_lock(path), loaded.deployment.name, path)


def _hub_token(loaded: LoadedManifest) -> str | None:
    model = loaded.deployment.spec.model
    if model.source != "huggingface" or model.token is None:
        return None
    return credentials.resolve_secret(
        model.token, field="spec.model.token", base_dir=loaded.base_dir
    )


def _fetcher(loaded: LoadedManifest, settings: Settings, events: EventBus) -> Fetcher:
    model = loaded.deployment.spec.model
    if model.source != "huggingface":
        raise UnsupportedError(
            f"{loaded.deployment.name}: spec.model.source is {model.source}; only hub models "
            "are fetched or locked",
            hint="a local folder is used where it is",
        )
    return Fetcher(
        model,
        store=ModelStore(settings.models_dir),
        token=_hub_token(loaded),
        events=events,
        base_dir=loaded.base_dir,
    )


@dataclass(frozen=True)
class LockReport:
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
        fresh = _fetcher(loaded, settings, events).lock()
        if old is not None and not update and _lock_identity(old) != _lock_identity(fresh):
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


def _lock_identity(entry: LockedModel) -> tuple[str, list[tuple[str, int, str]]]:
    return entry.commit, [(f.path, f.size, f.sha256) for f in entry.files]


def fetch(path: Path, settings: Settings, events: EventBus) -> FetchResult:
    """Download and verify a manifest's model into the store (its lock's commit, if locked)."""
    loaded = load_manifest(path)
    return _fetcher(loaded, settings, events).fetch(_locked(loaded))


def _device(accelerator: str, *, local: bool) -> Device:
    """CPU when asked for; on this machine, what it has; elsewhere, a GPU unless 'auto'."""
    if accelerator.lower() == "cpu":
        return "cpu"
    if local or accelerator == "auto":
        return detect_device() if local else "cuda"
    return "cuda"


def _package(the_plan: Plan) -> EnginePackage:
    return EnginePackage(
        engine=the_plan.engine.engine,
        package=the_plan.engine.package,
        version=the_plan.engine.version,
        device=the_plan.engine.device,
    )


def _target(loaded: LoadedManifest, settings: Settings) -> LocalTarget | SshTarget:
    spec = loaded.deployment.spec.target
    if isinstance(spec, SshTargetSpec):
        return SshTarget(settings, spec, loaded.base_dir)
    if spec.kind == "kubernetes":
        raise UnsupportedError(
            f"{loaded.path}: this command does not reach kubernetes targets yet",
            hint="deployer apply runs the smoke checks through a port-forward; "
            "deployer status and logs read the cluster",
        )
    if spec.kind != "local":
        raise UnsupportedError(
            f"{loaded.path}: target kind {spec.kind} is not supported by this version yet",
            hint="use target: {kind: local} to serve on this machine, or kind: ssh",
        )
    return LocalTarget(settings)


def _record_target(record: DeploymentRecord, settings: Settings) -> LocalTarget | SshTarget:
    """The target a recorded deployment runs on: ssh ones are rebuilt from their manifest."""
    if record.target_kind == "ssh" and record.manifest_path:
        return _target(load_manifest(Path(record.manifest_path)), settings)
    return LocalTarget(settings)


def _manifest_digest(loaded: LoadedManifest) -> str:
    canonical = loaded.deployment.model_dump_json(by_alias=True, exclude_defaults=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- day two -----------------------------------------------------------------------------------


def status(settings: Settings, name: str | None = None) -> list[DeploymentView]:
    """Recorded deployments with live facts from their targets; ``name`` narrows to one."""
    if name is not None:
        check_name(name)
    store = _reader(settings)
    if store is None:
        if name is not None:
            raise _unknown(name, [])
        return []
    try:
        records = [_get(store, name)] if name else store.list_deployments()
        last_runs = {r.name: next(iter(store.list_runs(r.name, limit=1)), None) for r in records}
    finally:
        store.close()
    target = LocalTarget(settings)
    views = []
    for record in records:
        observed = _observe_record(record, target, settings)
        views.append(
            DeploymentView(
                record=record,
                running=bool(observed and observed.running),
                healthy=bool(observed and observed.healthy),
                pid=observed.pid if observed else None,
                detail=observed.detail if observed else None,
                replicas=observed.replicas if observed else (),
                last_run=last_runs[record.name],
            )
        )
    return views


def _observe_record(
    record: DeploymentRecord, local: LocalTarget, settings: Settings
) -> Observed | None:
    """Live facts of a recorded deployment: local ones here, ssh ones over ssh (an unreachable
    host is a detail, not an error); None for other targets."""
    if record.target_kind == "local":
        return local.observe(record.name)
    if record.target_kind == "kubernetes" and record.status != DeploymentStatus.DESTROYED:
        try:
            target, namespace = _kube_record_target(record, settings)
        except DeployerError as exc:
            return Observed(running=False, detail=exc.message)
        return target.observe(record.name, namespace)
    if record.target_kind != "ssh" or record.status == DeploymentStatus.DESTROYED:
        return None
    try:
        return _record_target(record, settings).observe(record.name)
    except DeployerError as exc:
        return Observed(running=False, detail=exc.message)


def history(
    settings: Settings, name: str, limit: int = 10
) -> list[tuple[RunRecord, list[StepRecord]]]:
    """The latest runs of ``name`` with their steps, newest first."""
    check_name(name)
    store = _reader(settings)
    if store is None:
        raise _unknown(name, [])
    try:
        _get(store, name)
        return [(run, store.list_steps(run.id)) for run in store.list_runs(name, limit=limit)]
    finally:
        store.close()


def smoke(
    name: str, settings: Settings, events: EventBus, manifest: Path | None = None
) -> SmokeReport:
    """Run the smoke checks of ``name`` again (from ``manifest`` or the one it was applied from).

    Records the outcome as the deployment's health; raises SmokeFailedError when a check fails.
    """
    check_name(name)
    store = _store(settings)
    try:
        record = _get(store, name)
        path = manifest or (Path(record.manifest_path) if record.manifest_path else None)
        if path is None:
            raise NotFoundError(f"no manifest recorded for {name}", hint="pass --manifest PATH")
        loaded = load_manifest(path)
        if loaded.deployment.name != name:
            raise NotFoundError(
                f"{path} describes {loaded.deployment.name}, not {name}",
                hint="pass the manifest of this deployment with --manifest",
            )
        target = _target(loaded, settings)
        endpoint = target.endpoint(name)
        key = (
            credentials.api_key(
                loaded.deployment.spec.serving.api_key,
                key_dir=settings.deployment_dir(name),
                base_dir=loaded.base_dir,
            )
            if loaded.deployment.spec.serving.api_key
            else None
        )
        # Every replica answers for itself: on ssh targets each host is checked.
        endpoints = [endpoint.base_url]
        if isinstance(target, SshTarget):
            endpoints = [r.endpoint for r in target.observe(name).replicas if r.endpoint]
        run = store.start_run(name, "smoke")
        pipeline = Pipeline(store, run.id, events)
        report = pipeline.step(
            "smoke",
            StepAction.CHECK,
            f"{len(loaded.deployment.spec.smoke)} check(s) on {len(endpoints)} endpoint(s)",
            lambda: _smoke_each(
                endpoints,
                loaded.deployment.served_model_name,
                loaded.deployment.spec.smoke,
                key.value if key else endpoint.api_key,
                events,
            ),
        )
        store.finish_run(run.id, RunStatus.SUCCEEDED if report.passed else RunStatus.FAILED)
        store.set_status(
            name,
            DeploymentStatus.HEALTHY if report.passed else DeploymentStatus.UNHEALTHY,
            report.summary(),
        )
    finally:
        store.close()
    if not report.passed:
        raise SmokeFailedError(
            f"{name}: {report.summary()}",
            hint=f"inspect the engine with: deployer logs {name}",
            details=report.describe(),
        )
    return report


def destroy(name: str, settings: Settings, events: EventBus) -> bool:
    """Stop ``name`` and forget its runtime files and key; keeps its history and logs.

    Raises NotFoundError for a name deployer never deployed; returns False when it was already
    stopped.
    """
    check_name(name)
    store = _store(settings)
    try:
        record = _get(store, name)
        run = store.start_run(name, "destroy")
        pipeline = Pipeline(store, run.id, events)
        if record.target_kind == "kubernetes":
            return _destroy_kubernetes(record, settings, store, run.id, pipeline)
        target = _record_target(record, settings)
        try:
            existed = pipeline.step(
                "destroy",
                StepAction.DELETE,
                f"stop {name}",
                lambda: target.destroy(record.name, events),
            )
        except BaseException as exc:
            store.finish_run(run.id, RunStatus.FAILED, str(exc))
            raise
        store.set_status(name, DeploymentStatus.DESTROYED, "destroyed")
        store.finish_run(run.id, RunStatus.SUCCEEDED)
        return existed
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
    store = _reader(settings)
    try:
        record = store.get_deployment(name) if store is not None else None
    finally:
        if store is not None:
            store.close()
    if record is not None and record.target_kind == "ssh":
        target = _record_target(record, settings)
        if isinstance(target, SshTarget):
            return target.logs(name, lines, follow, host=host)
    if record is not None and record.target_kind == "kubernetes" and host is None:
        kube, namespace = _kube_record_target(record, settings)
        if follow:
            raise UnsupportedError(
                f"{name} runs on Kubernetes; deployer does not follow pod logs",
                hint=f"kubectl -n {namespace} logs -f deployment/{name} -c vllm",
            )
        return kube.logs(name, namespace, lines)
    if host is not None:
        raise UnsupportedError(
            f"{name} does not run on SSH hosts; --host applies to ssh targets only",
            hint=f"deployer logs {name}",
        )
    return LocalTarget(settings).logs(name, lines, follow)


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


def _store(settings: Settings) -> StateStore:
    """The state store for commands that write (created when missing)."""
    # SQLAlchemy is the heaviest import deployer has; commands that never touch state (validate,
    # plan, lock, fetch) start faster without it.
    from deployer.state import StateStore

    return StateStore(settings.database_url)


def _reader(settings: Settings) -> StateStore | None:
    """The state store for commands that only read: None when there is none yet. Creates no
    folder, file or table, and reads a database the user may not write."""
    from deployer.state import StateStore
    from deployer.state.database import missing_sqlite_file

    store = StateStore.open_existing(settings.database_url)
    if store is not None or settings.state_url is None:
        return store
    # No database in deployer's own home means nothing deployed yet; a database named explicitly
    # (--state-url, DEPLOYER_STATE_URL) that is not there is a mistake worth saying.
    missing = missing_sqlite_file(settings.state_url)
    if missing is not None:
        raise StateError(
            f"state database {missing} does not exist",
            hint="check --state-url / DEPLOYER_STATE_URL (deployer apply creates the database)",
        )
    return store


def _get(store: StateStore, name: str) -> DeploymentRecord:
    record = store.get_deployment(name)
    if record is None:
        raise _unknown(name, store.list_deployments(include_destroyed=True))
    return record


def _unknown(name: str, known: Sequence[DeploymentRecord]) -> NotFoundError:
    names = ", ".join(d.name for d in known)
    return NotFoundError(
        f"no deployment named {name!r}",
        hint=f"known deployments: {names}" if names else "deployer apply MANIFEST creates one",
    )


# --- kubernetes: render, diff ------------------------------------------------------------------


@dataclass(frozen=True)
class RenderReport:
    """What ``render`` produced: the files and how they compare with the output folder."""

    out_dir: Path
    pin: str
    objects: int
    kube_versions: Sequence[str]
    created: list[str]
    updated: list[str]
    unchanged: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def render(
    path: Path,
    out_dir: Path,
    settings: Settings,
    *,
    formats: str = "all",
    git_url: str | None = None,
    git_path: str | None = None,
    git_branch: str = "main",
    check: bool = False,
) -> RenderReport:
    """Write the Kubernetes artifacts of the manifest at ``path`` into ``out_dir``.

    Offline and deterministic: the plan comes from the manifest, its lock and deployer's
    catalog; the same inputs give the same bytes. With ``check`` nothing is written and the
    report says what would change (``deployer render --check`` exits 2 then). Raises PlanError
    for a manifest a cluster cannot serve, NotFoundError without a usable helm.
    """
    loaded = load_manifest(path)
    wanted = kube_render.Format(formats).expand()
    git = _git_source(git_url, git_path, git_branch, out_dir) if git_url else None
    request, _ = _render_input(loaded, settings, wanted, git)
    needs_helm = wanted & {kube_render.Format.manifests, kube_render.Format.argocd}
    result = kube_render.render(request, find_helm(settings) if needs_helm else None)
    kube_render.write(result, out_dir, check_only=check)
    return RenderReport(
        out_dir=out_dir,
        pin=describe_pin(request.values),
        objects=result.objects,
        kube_versions=result.versions,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )


def _render_input(
    loaded: LoadedManifest,
    settings: Settings,
    formats: set[kube_render.Format],
    git: kube_render.GitSource | None = None,
) -> tuple[kube_render.RenderInput, Plan]:
    """The chart's values for a kubernetes manifest, planned offline from its lock."""
    deployment = loaded.deployment
    spec = deployment.spec.target
    if not isinstance(spec, KubernetesTargetSpec):
        raise UnsupportedError(
            f"{loaded.path}: spec.target.kind is {spec.kind}; only kubernetes targets are "
            "rendered to Kubernetes artifacts",
            hint="set spec.target: {kind: kubernetes, namespace: NAME}",
        )
    # Planned from the manifest, its lock and deployer's catalog only, never from this machine's
    # model store (an empty one stands in): two machines must render the same bytes.
    with tempfile.TemporaryDirectory(prefix="deployer-render-") as empty:
        no_store = dataclasses.replace(settings, cache=Path(empty))
        the_plan = _plan(loaded, None, no_store, key=None, offline=True)
    request = kube_render.RenderInput(
        name=deployment.name,
        namespace=spec.namespace,
        manifest_file=loaded.path.name,
        values=chart_values(deployment, the_plan, _locked(loaded)),
        formats=formats,
        git=git,
    )
    return request, the_plan


def _git_source(url: str, path: str | None, branch: str, out_dir: Path) -> kube_render.GitSource:
    where = path if path is not None else kube_render.git_path(out_dir)
    if where is None:
        raise UnsupportedError(
            f"{out_dir} is not inside a Git checkout, so its path in {url} is unknown",
            hint="pass --git-path PATH (the output folder's path inside that repository)",
        )
    return kube_render.GitSource(url=url, path=where.strip("/"), branch=branch)


@dataclass(frozen=True)
class KubeDiff:
    """``deployer diff``: each rendered object against the cluster."""

    context: str
    namespace: str
    changes: list[ObjectChange]

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


def diff(path: Path, settings: Settings) -> KubeDiff:
    """What ``apply`` would change in the cluster: rendered objects vs live ones. Read-only.

    Raises ClusterUnreachableError (one line naming the context) without a reachable cluster.
    """
    loaded = load_manifest(path)
    request, _ = _render_input(loaded, settings, {kube_render.Format.manifests})
    rendered = kube_render.render(request, find_helm(settings))
    objects = kube_render.load_objects(rendered.files[f"manifests/{request.name}.yaml"].decode())
    spec = loaded.deployment.spec.target
    assert isinstance(spec, KubernetesTargetSpec)  # _render_input refused the others
    cluster = Cluster(spec.context)
    cluster.check_reachable()
    changes = [compare(obj, cluster.live(obj, request.namespace)) for obj in objects]
    return KubeDiff(context=cluster.name, namespace=request.namespace, changes=changes)


def _apply_kubernetes(loaded: LoadedManifest, settings: Settings, events: EventBus) -> ApplyResult:
    """Render, validate, create the Secrets, ``helm upgrade --install --wait --atomic``, wait for
    the rollout, smoke-check through a port-forward, record. Not run against a cluster in
    deployer's tests: none can run where they run."""
    deployment = loaded.deployment
    name = deployment.name
    spec = deployment.spec.target
    assert isinstance(spec, KubernetesTargetSpec)
    request, the_plan = _render_input(loaded, settings, {kube_render.Format.manifests})
    helm = find_helm(settings)
    rendered = kube_render.render(request, helm)
    target = KubernetesTarget(spec, helm)
    target.check_reachable()
    hub_token = _hub_token(loaded)
    key = credentials.api_key(
        deployment.spec.serving.api_key,
        key_dir=settings.deployment_dir(name),
        base_dir=loaded.base_dir,
    )
    values = request.values
    release = Release(
        name=name,
        namespace=spec.namespace,
        values_text=kube_render.dump_yaml(values.as_yaml_data()),
        startup_seconds=values.engine.startup_seconds,
    )
    service_url = f"http://{name}.{spec.namespace}.svc:{values.engine.port}/v1"
    store = _store(settings)
    try:
        run = store.start_run(name, "apply")
        events.emit(EventKind.RUN_STARTED, f"apply {name}", run_id=run.id)
        pipeline = Pipeline(store, run.id, events)
        try:
            pipeline.step(
                "render",
                StepAction.CHECK,
                f"{rendered.objects} objects valid for Kubernetes {', '.join(rendered.versions)}",
                lambda: None,
            )

            def secrets() -> None:
                target.cluster.ensure_secret(
                    spec.namespace, values.api_key.existing_secret, {"api-key": key.value}
                )
                if hub_token and values.hub_token.existing_secret:
                    target.cluster.ensure_secret(
                        spec.namespace, values.hub_token.existing_secret, {"token": hub_token}
                    )

            pipeline.step("secrets", StepAction.CHECK, "API key and hub token as Secrets", secrets)
            store.upsert_deployment(
                name,
                target_kind="kubernetes",
                status=DeploymentStatus.DEPLOYING,
                manifest_path=str(loaded.path),
                manifest_digest=_manifest_digest(loaded),
                spec_digest=the_plan.engine.spec_digest,
                endpoint=service_url,
                served_model_name=the_plan.served_model_name,
                message=describe_pin(values),
            )
            pipeline.step(
                "deploy",
                StepAction.UPDATE,
                "helm upgrade --install --wait --atomic",
                lambda: target.deploy(release, pipeline.events),
            )
            pipeline.step(
                "ready",
                StepAction.CHECK,
                "every replica ready",
                lambda: target.wait_rollout(release, values.engine.startup_seconds),
            )
            report = None
            if deployment.spec.smoke:
                with target.port_forward(spec.namespace, name, values.engine.port) as local:
                    report = pipeline.step(
                        "smoke",
                        StepAction.CHECK,
                        f"{len(deployment.spec.smoke)} check(s) through a port-forward",
                        lambda: _smoke_each(
                            [local],
                            the_plan.served_model_name,
                            deployment.spec.smoke,
                            key.value,
                            pipeline.events,
                        ),
                    )
            else:
                pipeline.skip("smoke", "no smoke checks declared")
        except BaseException as exc:
            store.finish_run(run.id, RunStatus.FAILED, str(exc) or type(exc).__name__)
            _record_failed_first(store, loaded, "kubernetes", exc)
            raise
        healthy = report is None or report.passed
        store.set_status(
            name,
            DeploymentStatus.HEALTHY if healthy else DeploymentStatus.UNHEALTHY,
            report.summary() if report else "no smoke checks declared",
        )
        store.finish_run(run.id, RunStatus.SUCCEEDED if healthy else RunStatus.FAILED)
    finally:
        store.close()
    if report is not None and not report.passed:
        raise SmokeFailedError(
            f"{name} is running but {report.summary()}",
            hint=f"kubectl -n {spec.namespace} logs deployment/{name} -c vllm",
            details=report.describe(),
        )
    return ApplyResult(
        plan=the_plan,
        changed=True,
        smoke=report,
        smoke_skipped_reason=None if report else "no smoke checks declared",
        endpoint=service_url,
        api_key_source=key.source,
        api_key_path=key.path,
    )


def _kube_record_target(
    record: DeploymentRecord, settings: Settings
) -> tuple[KubernetesTarget, str]:
    """The release of a recorded kubernetes deployment, from the manifest it was applied from."""
    if not record.manifest_path:
        raise NotFoundError(f"no manifest recorded for {record.name}", hint="helm status it")
    spec = load_manifest(Path(record.manifest_path)).deployment.spec.target
    if not isinstance(spec, KubernetesTargetSpec):
        raise UnsupportedError(f"{record.manifest_path} no longer targets kubernetes")
    return KubernetesTarget(spec, find_helm(settings)), spec.namespace


def _destroy_kubernetes(
    record: DeploymentRecord,
    settings: Settings,
    store: StateStore,
    run_id: int,
    pipeline: Pipeline,
) -> bool:
    """``helm uninstall`` of a recorded kubernetes deployment (its manifest gives the context)."""
    target, namespace = _kube_record_target(record, settings)
    try:
        target.check_reachable()
        existed = pipeline.step(
            "destroy",
            StepAction.DELETE,
            f"helm uninstall {record.name}",
            lambda: target.destroy(record.name, namespace),
        )
    except BaseException as exc:
        store.finish_run(run_id, RunStatus.FAILED, str(exc))
        raise
    store.set_status(record.name, DeploymentStatus.DESTROYED, "helm uninstall")
    store.finish_run(run_id, RunStatus.SUCCEEDED)
    return existed
