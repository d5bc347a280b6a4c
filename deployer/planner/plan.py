"""From a manifest and facts to a plan: what apply would do, and why.

Pure: no network, no processes, no clock. Everything a decision needs is in the
:class:`~deployer.manifest.models.ModelDeployment` and the :class:`Facts` gathered beforehand,
so ``deployer plan`` is free and tests are tables of (manifest, facts) -> plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from deployer.engines import registry
from deployer.engines.base import Device, EngineDecision, EngineRequest
from deployer.manifest.models import ModelDeployment
from deployer.sizing.accelerators import Accelerator
from deployer.sizing.capacity import CapacityPlan
from deployer.sizing.measured import MeasuredCost
from deployer.sizing.model_facts import ModelFacts
from deployer.units import human_bytes

if TYPE_CHECKING:
    from deployer.engines.gguf_header import GGUFModelFacts


class StepAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    SKIP = "skip"
    CHECK = "check"
    DELETE = "delete"


@dataclass(frozen=True)
class ReplicaState:
    """One replica of a deployment on a multi-host target (one SSH host), right now."""

    host: str
    endpoint: str
    running: bool
    healthy: bool
    pid: int | None = None
    #: How often its engine was started (more than 1: it was restarted after exiting).
    starts: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Observed:
    """What a target reports about a deployment right now."""

    running: bool
    healthy: bool = False
    spec_digest: str | None = None
    args: tuple[str, ...] = ()
    pid: int | None = None
    port: int | None = None
    endpoint: str | None = None
    detail: str | None = None
    #: Per-replica facts, on targets with several hosts (empty elsewhere).
    replicas: tuple[ReplicaState, ...] = ()
    #: What the running engine's spec digest was made of (``EnginePlan.inputs``), when the
    #: target recorded it; empty otherwise.
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: The engine's own port where a proxy publishes ``port`` (None: clients reach the engine).
    engine_port: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where a target runs the engine: its device, and the accelerator the plan sizes for
    (None: a GPU target that says 'auto' and whose GPUs nothing has reported yet)."""

    device: Device
    accelerator: Accelerator | None


@dataclass(frozen=True)
class Surge:
    """A target that publishes the endpoint through a proxy of its own, so a new engine can
    start beside the serving one on a second private port and take the traffic only once it
    passes its gate (the local target, through HAProxy)."""

    #: Where engines listen, privately: the proxy forwards the published port there.
    engine_host: str
    #: The serving engine's port (observed), or the first engine's.
    engine_port: int
    #: A second private port, free now, for a new engine beside the serving one.
    surge_port: int
    #: Whether a proxy-published engine serves now (a surge needs one to keep serving).
    serving: bool
    #: What the proxy does on this apply, for the reasons: "HAProxy pid 12 on port 8000".
    proxy: str = "the proxy"


@dataclass(frozen=True)
class TargetSteps:
    """The steps a target adds to a plan and how it does the common ones, as its driver
    reports them (``Target.plan_steps``): plain data, so the plan stays pure and ``deployer
    plan`` prints exactly what ``apply`` will carry out."""

    #: Before the model: ssh provisions the hosts that were never provisioned.
    before: tuple[PlannedStep, ...] = ()
    #: False where the target gets the model itself (a cluster's pods fetch it).
    fetches_model: bool = True
    #: The engine step; None checks that the engine is installed on this machine, and a
    #: target that brings its own engine (a cluster's image) sets ``checks_engine`` False.
    engine: PlannedStep | None = None
    checks_engine: bool = True
    #: Between the engine and the deploy: kubernetes renders the chart and writes Secrets.
    prepare: tuple[PlannedStep, ...] = ()
    #: How deploy does it, for its reason ("helm upgrade --install --wait --atomic").
    deploy_how: str = ""
    #: What the ready step waits for (None: the engine's health path).
    ready: str | None = None
    #: Where the smoke checks go, for their reason (" on 2 endpoint(s)").
    smoke_where: str = ""
    #: The address clients use, when it is not the engine's bind host and port (a Service).
    endpoint: str | None = None
    #: The address the engine binds where the target decides it (a pod: all interfaces).
    bind_host: str | None = None
    #: Each replica's endpoint by host, on targets with several hosts (ssh).
    replica_endpoints: tuple[tuple[str, str], ...] = ()
    #: What else changes what runs, for the spec digest (a chart, the whole manifest).
    digest_extra: tuple[tuple[str, str], ...] = ()
    #: The deploy step's reason when the target was not observed (an offline plan).
    unobserved: str = "not running"
    #: Set by a target that can roll out a changed engine beside the serving one.
    surge: Surge | None = None


@dataclass(frozen=True)
class Facts:
    """Everything :func:`make_plan` needs besides the manifest, gathered by the caller."""

    device: Device
    model_path: str
    model_fingerprint: str
    port: int
    engine_package: str
    engine_version: str
    #: Where the API key comes from ("generated", "env:NAME", "file:PATH") and a digest of its
    #: value, so a new key restarts the engine without the key itself entering the plan.
    api_key_source: str
    api_key_digest: str
    observed: Observed | None = None
    #: The model by name, for people: ``REPO@COMMIT`` of a hub model (None: ``model_path``).
    model_revision: str | None = None
    #: What getting the model takes: a local folder is checked; a hub model is fetched
    #: (create) unless its locked or resolved commit is already in the store (skip).
    model_step: PlannedStep | None = None
    #: The model's shape and size, and where they come from; None when nothing tells.
    model_shape: ModelFacts | None = None
    model_shape_source: str = ""
    #: The accelerator the plan places the model on (the CPU with this host's memory, or a
    #: catalog GPU); None when the manifest says 'auto' for a GPU target.
    accelerator_spec: Accelerator | None = None
    #: For methods deployer quantizes itself (int8, w4a16): building the artifact (create) or
    #: finding it in the store (skip), and the gate's check. ``model_path`` and
    #: ``model_fingerprint`` then name the quantized artifact and its cache key.
    quantize_step: PlannedStep | None = None
    gate_step: PlannedStep | None = None
    #: The quantized checkpoint's weight bytes when it is in the store (else estimated).
    quantized_weight_bytes: int | None = None
    #: A GGUF model's facts from its header (llama.cpp), instead of ``model_shape``.
    gguf: GGUFModelFacts | None = None
    #: What the target adds to the plan (None: this machine's defaults).
    target_steps: TargetSteps | None = None
    #: The smoke checks passed for this very manifest last time (a skip when nothing changes).
    smoke_passed: bool = False
    #: ``apply --allow-downtime``: where two engines do not fit, restart in place instead of
    #: refusing.
    allow_downtime: bool = False


class _PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlannedStep(_PlanModel):
    name: str
    action: StepAction
    reason: str


class EnginePlan(_PlanModel):
    engine: str
    package: str
    version: str
    device: Device
    module: str
    args: list[str]
    #: Where the engine listens and what it serves, as decided (never parsed back from args).
    host: str
    port: int
    model_path: str
    health_path: str
    #: Environment variables for the engine (no secrets).
    env: dict[str, str]
    #: Variables removed from the engine's environment (any case): ones it would read as
    #: settings over its argv.
    env_remove: list[str] = []
    #: Added to ``env`` for an engine started beside the serving one (a surge rollout), not
    #: part of the digest: where it runs, not what (``Engine.beside_env``).
    beside_env: dict[str, str] = {}
    #: The variable that carries the API key, filled in by the target from the key file.
    api_key_env: str
    api_key_source: str
    #: Digest of everything the engine runs with; a change means a restart.
    spec_digest: str
    #: What the digest is made of besides argv, one short readable value per part (``engine``,
    #: ``model``, ``model_files``, ``env``, ``key``, ``target``; digests where the value is
    #: not for show), so a restart can say which part changed.
    inputs: dict[str, str] = {}


class RolloutPlan(_PlanModel):
    """How a changed engine replaces the serving one, on a target that can surge."""

    #: ``surge``: the new engine beside the old, traffic moves once it passes its gate;
    #: ``in-place``: stop, then start (the endpoint is down meanwhile).
    strategy: Literal["surge", "in-place"]
    #: Why this strategy, for people.
    reason: str
    #: Set when apply must refuse: a surge does not fit and in place needs --allow-downtime.
    refused: str | None = None
    #: The serving engine's private port, and the new engine's own base URL (``.../v1``): a
    #: surge's smoke checks go there, before the proxy moves any traffic.
    serving_port: int | None = None
    engine_endpoint: str | None = None
    #: What the new engine must pass before it takes traffic: ``smoke`` or ``slo``.
    gate: str = "smoke"
    gate_seconds: int = 0

    @property
    def surges(self) -> bool:
        return self.strategy == "surge" and self.refused is None


class Plan(_PlanModel):
    deployment: str
    target: str
    model: str
    served_model_name: str
    device: Device
    accelerator: str
    accelerator_count: int
    tensor_parallel_size: int
    kv_cache_bytes: int | None
    max_model_len: int | None
    endpoint: str
    #: Every replica's endpoint by host, on targets with several hosts (ssh); else empty.
    replica_endpoints: dict[str, str] = {}
    engine: EnginePlan
    #: Memory, KV cache, concurrency and cost; None when the model's facts are unknown.
    capacity: CapacityPlan | None
    steps: list[PlannedStep]
    notes: list[str]
    #: The cost per token a benchmark of this exact revision measured (``deployer bench``);
    #: None before one exists. The capacity's cost is the assumed one.
    measured_cost: MeasuredCost | None = None
    #: The port a proxy publishes ``endpoint`` on, where the engine's own port is private
    #: (None: clients reach the engine's port).
    published_port: int | None = None
    #: How a changed engine replaces the serving one (None: nothing serves that a change
    #: replaces, or the target cannot surge).
    rollout: RolloutPlan | None = None

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.name == name)


def make_plan(deployment: ModelDeployment, facts: Facts) -> Plan:
    """Decide how ``deployment`` runs given ``facts``; raise :class:`PlanError` if it cannot."""
    spec = deployment.spec
    serving = spec.serving
    target_steps = facts.target_steps or TargetSteps()
    surge = target_steps.surge
    if surge is not None:
        bind_host, engine_port = surge.engine_host, surge.engine_port
    else:
        bind_host, engine_port = target_steps.bind_host or serving.host, facts.port
    decided, engine = _engine(deployment, facts, bind_host, engine_port)
    deploy = _deploy_step(facts.observed, engine, target_steps)
    rollout = None
    if surge is not None and deploy.action == StepAction.UPDATE and facts.observed is not None:
        rollout = _rollout(deployment, facts, facts.observed, surge, decided.capacity)
        if rollout.surges:
            decided, engine = _engine(deployment, facts, bind_host, surge.surge_port, beside=True)
    host = _client_host(serving.host)
    return Plan(
        deployment=deployment.name,
        target=spec.target.kind,
        model=_describe_model(deployment),
        served_model_name=deployment.served_model_name,
        device=facts.device,
        accelerator=decided.accelerator,
        accelerator_count=decided.count,
        tensor_parallel_size=decided.tensor_parallel,
        kv_cache_bytes=decided.kv_cache_bytes,
        max_model_len=decided.max_model_len,
        endpoint=target_steps.endpoint or f"http://{host}:{facts.port}/v1",
        replica_endpoints=dict(target_steps.replica_endpoints),
        engine=engine,
        capacity=decided.capacity,
        steps=_steps(deployment, facts, engine, deploy, rollout),
        notes=decided.notes,
        published_port=facts.port if surge is not None else None,
        rollout=rollout,
    )


def _engine(
    deployment: ModelDeployment, facts: Facts, bind_host: str, port: int, *, beside: bool = False
) -> tuple[EngineDecision, EnginePlan]:
    """The engine's decision and plan for ``deployment`` listening on ``bind_host:port``;
    ``beside``: started beside the serving one (a surge)."""
    serving = deployment.spec.serving
    chosen = registry.get(serving.engine)
    decided = chosen.decide(
        EngineRequest(
            deployment=deployment,
            device=facts.device,
            model_path=facts.model_path,
            bind_host=bind_host,
            port=port,
            model_shape=facts.model_shape,
            model_shape_source=facts.model_shape_source,
            gguf=facts.gguf,
            accelerator=facts.accelerator_spec,
            quantizes=facts.quantize_step is not None,
            quantized_weight_bytes=facts.quantized_weight_bytes,
        )
    )
    args = decided.args
    env = dict(sorted(serving.env.items()))
    inputs: dict[str, object] = {
        "engine": [facts.engine_package, facts.engine_version],
        "args": args,
        "env": env,
        "model": facts.model_fingerprint,
        "key": [facts.api_key_source, facts.api_key_digest],
    }
    if facts.target_steps is not None and facts.target_steps.digest_extra:
        inputs["target"] = dict(facts.target_steps.digest_extra)
    digest = _digest(inputs)
    parts = {
        "engine": f"{facts.engine_package} {facts.engine_version}",
        "model": facts.model_revision or facts.model_path,
        "model_files": _digest(facts.model_fingerprint)[:12],
        "env": _digest(env)[:12],
        "key": _digest(inputs["key"])[:12],
    }
    if "target" in inputs:
        parts["target"] = _digest(inputs["target"])[:12]
    engine = EnginePlan(
        engine=serving.engine,
        package=facts.engine_package,
        version=facts.engine_version,
        device=facts.device,
        module=chosen.entrypoint_module,
        args=args,
        host=bind_host,
        port=port,
        model_path=facts.model_path,
        health_path=chosen.health_path,
        env=env,
        env_remove=chosen.env_remove(),
        beside_env={
            k: v for k, v in chosen.beside_env(facts.device).items() if k not in serving.env
        }
        if beside
        else {},
        api_key_env=chosen.api_key_env,
        api_key_source=facts.api_key_source,
        spec_digest=digest,
        inputs=parts,
    )
    return decided, engine


def _rollout(
    deployment: ModelDeployment,
    facts: Facts,
    observed: Observed,
    surge: Surge,
    capacity: CapacityPlan | None,
) -> RolloutPlan:
    """How the changed ``engine`` replaces the one that serves: beside it (a surge) when a
    proxy publishes a healthy engine, the manifest asks for a surge and memory holds two
    engines; else in place (asked for, nothing healthy to keep, or ``--allow-downtime``); else
    refused."""
    rollout = deployment.spec.rollout

    def in_place(why: str, refused: str | None = None) -> RolloutPlan:
        reason = f"in place ({why}): the endpoint is down while the new engine starts"
        if refused is not None:
            reason = f"refused: {why}; apply --allow-downtime restarts in place"
        return RolloutPlan(
            strategy="in-place",
            reason=reason,
            refused=refused,
            serving_port=surge.engine_port,
            gate=rollout.gate,
        )

    if rollout.strategy == "recreate":
        return in_place("rollout.strategy recreate")
    if not observed.healthy:
        return in_place("the running engine is not healthy: nothing to keep serving")
    if not surge.serving:
        return in_place(f"{surge.proxy} does not publish the running engine yet")
    fits, memory = two_engines_fit(capacity)
    if not fits:
        if facts.allow_downtime:
            return in_place(f"--allow-downtime: {memory}")
        return in_place(
            memory,
            refused=f"a surge rollout of {deployment.name} does not fit: {memory}; an "
            "in-place restart takes the endpoint down meanwhile",
        )
    host = _client_host(surge.engine_host)
    return RolloutPlan(
        strategy="surge",
        reason=f"surge: the new engine starts beside the running one, on port "
        f"{surge.surge_port} ({memory})",
        serving_port=surge.engine_port,
        engine_endpoint=f"http://{host}:{surge.surge_port}/v1",
        gate=rollout.gate,
        gate_seconds=rollout.gate_seconds,
    )


def two_engines_fit(capacity: CapacityPlan | None) -> tuple[bool, str]:
    """Whether the memory the capacity plan sizes for holds two engines at once, and the
    figures for people. On a CPU an engine takes its rows (weights, activations, runtime, KV
    cache); on a GPU the budget it reserves. Unknown capacity is assumed to fit (and said)."""
    if capacity is None:
        return True, "the engine's memory is unknown: assumed to fit twice"
    rows = capacity.memory_per_device
    budget = [row.bytes for row in rows if row.item == "budget"]
    if capacity.accelerator.upper() == "CPU" or not budget:
        footprint = sum(row.bytes for row in rows if row.item != "budget")
    else:
        footprint = budget[0]
    memory = capacity.accelerator_memory_bytes
    need = 2 * footprint
    verdict = "fit" if need <= memory else "do not fit"
    return need <= memory, (
        f"two engines of {human_bytes(footprint)} {verdict} in {human_bytes(memory)} of "
        f"{capacity.accelerator} memory"
    )


def _client_host(bind_host: str) -> str:
    """The address a client on this machine uses to reach an engine bound to ``bind_host``."""
    if bind_host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"  # Linux binds "::" dual-stack: IPv4 loopback reaches it too
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def _describe_model(deployment: ModelDeployment) -> str:
    model = deployment.spec.model
    if model.source == "local":
        return model.path
    return f"{model.repo}@{model.revision}"


def _steps(
    deployment: ModelDeployment,
    facts: Facts,
    running: EnginePlan,
    deploy: PlannedStep,
    rollout: RolloutPlan | None,
) -> list[PlannedStep]:
    """The plan's steps in the order apply runs them: what the target does first, the model,
    quantization, the engine, what the target prepares, deploy, ready, smoke, and for a surge
    the gates the new engine must pass and the switch of traffic to it. ``running`` is the
    engine as planned."""
    target = facts.target_steps or TargetSteps()
    checks = len(deployment.spec.smoke)
    surging = rollout is not None and rollout.surges
    if not checks:
        smoke = PlannedStep(name="smoke", action=StepAction.SKIP, reason="no smoke checks declared")
    elif deploy.action == StepAction.SKIP and facts.smoke_passed:
        smoke = PlannedStep(
            name="smoke",
            action=StepAction.SKIP,
            reason="passed for this manifest already; re-run with: "
            f"deployer smoke {deployment.name}",
        )
    else:
        where = " against the new engine, before it takes traffic" if surging else ""
        smoke = PlannedStep(
            name="smoke",
            action=StepAction.CHECK,
            reason=f"{checks} check(s){where or target.smoke_where}",
        )
    model = facts.model_step or PlannedStep(
        name="model", action=StepAction.CHECK, reason=f"use {facts.model_path}"
    )
    quantize = [step for step in (facts.quantize_step, facts.gate_step) if step is not None]
    engine = target.engine or PlannedStep(
        name="engine",
        action=StepAction.CHECK,
        reason=f"{facts.engine_package} {facts.engine_version} for {facts.device}",
    )
    ready = target.ready or f"wait for {running.health_path}"
    return [
        *target.before,
        *([model] if target.fetches_model else []),
        *quantize,
        *([engine] if target.checks_engine else []),
        *target.prepare,
        *(
            [PlannedStep(name="rollout", action=StepAction.CHECK, reason=rollout.reason)]
            if rollout
            else []
        ),
        deploy,
        PlannedStep(
            name="ready",
            action=StepAction.CHECK,
            reason=f"{ready} of the new engine (port {running.port})" if surging else ready,
        ),
        smoke,
        *(_surge_steps(facts, rollout, running) if rollout is not None and surging else []),
    ]


def _surge_steps(facts: Facts, rollout: RolloutPlan, running: EnginePlan) -> list[PlannedStep]:
    """After a surge's smoke checks: the SLO gate when the manifest asks for one, then the
    switch of the published port to the new engine."""
    steps = []
    if rollout.gate == "slo":
        steps.append(
            PlannedStep(
                name="slo-gate",
                action=StepAction.CHECK,
                reason=f"a {rollout.gate_seconds} s benchmark of the new engine against spec.slo",
            )
        )
    steps.append(
        PlannedStep(
            name="switch",
            action=StepAction.UPDATE,
            reason=f"port {facts.port} moves from the engine on port {rollout.serving_port} to "
            f"port {running.port}; the old engine stops once its requests drain",
        )
    )
    return steps


def _deploy_step(observed: Observed | None, engine: EnginePlan, target: TargetSteps) -> PlannedStep:
    """Create, restart or leave alone, by what runs now and its spec digest."""
    digest = engine.spec_digest
    prefix = f"{target.deploy_how}: " if target.deploy_how else ""
    if observed is None:
        return PlannedStep(
            name="deploy", action=StepAction.CREATE, reason=f"{prefix}{target.unobserved}"
        )
    if not observed.running:
        return PlannedStep(name="deploy", action=StepAction.CREATE, reason=f"{prefix}not running")
    if observed.spec_digest != digest:
        return PlannedStep(
            name="deploy",
            action=StepAction.UPDATE,
            reason=f"{prefix}restart: "
            + describe_change(observed.args, tuple(engine.args), observed.inputs, engine.inputs),
        )
    where = f" (pid {observed.pid})" if observed.pid is not None else ""
    if not observed.healthy:
        # Still starting, or stuck: the supervisor restarts a crashed engine, and the ready step
        # reports one that never answers. Restarting here would only throw a warm start away.
        return PlannedStep(
            name="deploy",
            action=StepAction.SKIP,
            reason=f"already running at {digest[:12]}{where}, not ready yet",
        )
    return PlannedStep(
        name="deploy",
        action=StepAction.SKIP,
        reason=f"already running at {digest[:12]}{where}: unchanged",
    )


def describe_change(
    before: tuple[str, ...],
    after: tuple[str, ...],
    inputs_before: Mapping[str, str] | None = None,
    inputs_after: Mapping[str, str] | None = None,
) -> str:
    """A short human description of how two engines differ: their argument lists and, when
    both sides recorded them, the other parts of their spec digests (``EnginePlan.inputs``)."""
    old, new = _as_flags(before), _as_flags(after)
    changes = []
    for flag in sorted(old.keys() | new.keys()):
        if old.get(flag) != new.get(flag):
            changes.append(f"{flag} {old.get(flag, '(unset)')} -> {new.get(flag, '(unset)')}")
    if inputs_before and inputs_after:
        changes += _input_changes(inputs_before, inputs_after)
        if not changes:
            changes.append("the engine's inputs changed in a way this deployer cannot name")
    elif not changes:
        changes.append("model files, engine version, key or environment changed")
    return ", ".join(changes)


#: How each part of ``EnginePlan.inputs`` reads when it changed; None shows the two values.
_INPUT_CHANGES: Mapping[str, str | None] = {
    "engine": None,
    "model": None,
    "model_files": "the model's files changed",
    "env": "spec.serving.env changed",
    "key": "the API key changed",
    "target": "the target's settings changed",
}


def _input_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    changes = []
    model_named = before.get("model") != after.get("model")
    for part in sorted(before.keys() | after.keys()):
        old, new = before.get(part), after.get(part)
        if old == new or (part == "model_files" and model_named):
            continue
        said = _INPUT_CHANGES.get(part)
        changes.append(said or f"{part} {old or '(unset)'} -> {new or '(unset)'}")
    return changes


def _as_flags(args: tuple[str, ...]) -> dict[str, str]:
    flags: dict[str, str] = {}
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            current = arg
            flags[current] = "on"
        elif current is not None:
            flags[current] = arg if flags[current] == "on" else f"{flags[current]} {arg}"
    return flags


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
