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
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from deployer.engines import registry
from deployer.engines.base import Device, EngineRequest
from deployer.manifest.models import ModelDeployment
from deployer.sizing.accelerators import Accelerator
from deployer.sizing.capacity import CapacityPlan
from deployer.sizing.measured import MeasuredCost
from deployer.sizing.model_facts import ModelFacts

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


@dataclass(frozen=True)
class Placement:
    """Where a target runs the engine: its device, and the accelerator the plan sizes for
    (None: a GPU target that says 'auto' and whose GPUs nothing has reported yet)."""

    device: Device
    accelerator: Accelerator | None


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
    #: The variable that carries the API key, filled in by the target from the key file.
    api_key_env: str
    api_key_source: str
    #: Digest of everything the engine runs with; a change means a restart.
    spec_digest: str
    #: What the digest is made of besides argv, one short readable value per part (``engine``,
    #: ``model``, ``model_files``, ``env``, ``key``, ``target``; digests where the value is
    #: not for show), so a restart can say which part changed.
    inputs: dict[str, str] = {}


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

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.name == name)


def make_plan(deployment: ModelDeployment, facts: Facts) -> Plan:
    """Decide how ``deployment`` runs given ``facts``; raise :class:`PlanError` if it cannot."""
    spec = deployment.spec
    serving = spec.serving
    bind_host = (facts.target_steps.bind_host if facts.target_steps else None) or serving.host
    chosen = registry.get(serving.engine)
    decided = chosen.decide(
        EngineRequest(
            deployment=deployment,
            device=facts.device,
            model_path=facts.model_path,
            bind_host=bind_host,
            port=facts.port,
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
        port=facts.port,
        model_path=facts.model_path,
        health_path=chosen.health_path,
        env=env,
        env_remove=chosen.env_remove(),
        api_key_env=chosen.api_key_env,
        api_key_source=facts.api_key_source,
        spec_digest=digest,
        inputs=parts,
    )
    host = _client_host(serving.host)
    target_steps = facts.target_steps or TargetSteps()
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
        steps=_steps(deployment, facts, engine),
        notes=decided.notes,
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


def _steps(deployment: ModelDeployment, facts: Facts, running: EnginePlan) -> list[PlannedStep]:
    """The plan's steps in the order apply runs them: what the target does first, the model,
    quantization, the engine, what the target prepares, deploy, ready, smoke. ``running`` is
    the engine as planned."""
    target = facts.target_steps or TargetSteps()
    deploy = _deploy_step(facts.observed, running, target)
    checks = len(deployment.spec.smoke)
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
        smoke = PlannedStep(
            name="smoke", action=StepAction.CHECK, reason=f"{checks} check(s){target.smoke_where}"
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
    return [
        *target.before,
        *([model] if target.fetches_model else []),
        *quantize,
        *([engine] if target.checks_engine else []),
        *target.prepare,
        deploy,
        PlannedStep(
            name="ready",
            action=StepAction.CHECK,
            reason=target.ready or f"wait for {running.health_path}",
        ),
        smoke,
    ]


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
