"""From a manifest and facts to a plan: what apply would do, and why.

Pure: no network, no processes, no clock. Everything a decision needs is in the
:class:`~deployer.manifest.models.ModelDeployment` and the :class:`Facts` gathered beforehand,
so ``deployer plan`` is free and tests are tables of (manifest, facts) -> plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deployer.engines import llamacpp, vllm
from deployer.engines.gguf_header import GGUFModelFacts
from deployer.errors import PlanError
from deployer.manifest.models import LlamaCppServingSpec, ModelDeployment, ServingSpec
from deployer.planner.accelerators import Accelerator
from deployer.planner.capacity import CapacityPlan, place, place_gguf
from deployer.planner.model_facts import ModelFacts

Device = Literal["cpu", "cuda"]

#: The CPU build of vLLM reserves most of the host's memory for the KV cache unless told a size;
#: this default holds 2048-token contexts for several sequences of a small model.
DEFAULT_CPU_KV_CACHE_BYTES = 512 * 1024**2


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

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.name == name)


@dataclass(frozen=True)
class _EngineDecision:
    """What the engine-specific half of the plan decided."""

    args: list[str]
    module: str
    api_key_env: str
    health_path: str
    env_remove: list[str]
    accelerator: str
    count: int
    tensor_parallel: int
    kv_cache_bytes: int | None
    max_model_len: int | None
    capacity: CapacityPlan | None
    notes: list[str]


def make_plan(deployment: ModelDeployment, facts: Facts) -> Plan:
    """Decide how ``deployment`` runs given ``facts``; raise :class:`PlanError` if it cannot."""
    spec = deployment.spec
    serving = spec.serving
    bind_host = (facts.target_steps.bind_host if facts.target_steps else None) or serving.host
    if isinstance(serving, LlamaCppServingSpec):
        decided = _llamacpp(deployment, serving, facts, bind_host)
    else:
        decided = _vllm(deployment, serving, facts, bind_host)
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
    engine = EnginePlan(
        engine=serving.engine,
        package=facts.engine_package,
        version=facts.engine_version,
        device=facts.device,
        module=decided.module,
        args=args,
        host=bind_host,
        port=facts.port,
        model_path=facts.model_path,
        health_path=decided.health_path,
        env=env,
        env_remove=decided.env_remove,
        api_key_env=decided.api_key_env,
        api_key_source=facts.api_key_source,
        spec_digest=digest,
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
        steps=_steps(deployment, facts, digest, args, decided.health_path),
        notes=decided.notes,
    )


def _llamacpp(
    deployment: ModelDeployment, serving: LlamaCppServingSpec, facts: Facts, bind_host: str
) -> _EngineDecision:
    """llama.cpp: one GGUF file on the CPU, sized from the file's header."""
    if facts.device != "cpu":
        raise PlanError(
            f"{deployment.name}: deployer serves llama.cpp on CPUs (its CUDA build is defined "
            "but not tested)",
            hint="set spec.resources.accelerator: cpu, or use engine vllm on GPUs",
        )
    if deployment.spec.quantize.method != "none":
        raise PlanError(
            f"{deployment.name}: a GGUF file is quantized already; spec.quantize is for vLLM",
            hint="remove spec.quantize, or pick a GGUF file of another quantization",
        )
    if not facts.model_path.endswith(".gguf"):
        raise PlanError(
            f"{deployment.name}: llama.cpp serves a .gguf file, not {facts.model_path}",
            hint="set spec.model.path to the .gguf file",
        )
    llamacpp.check_env(serving.env)
    n_ctx = serving.max_model_len or llamacpp.DEFAULT_N_CTX
    capacity = None
    notes: list[str] = []
    if facts.gguf is not None and facts.accelerator_spec is not None:
        capacity = place_gguf(deployment, facts.gguf, facts.accelerator_spec, n_ctx=n_ctx)
    else:
        notes.append("no capacity plan: the GGUF file's header is not at hand")
    args = llamacpp.build_args(
        llamacpp.LlamaCppSettings(
            model_path=facts.model_path,
            served_model_name=deployment.served_model_name,
            host=bind_host,
            port=facts.port,
            n_ctx=n_ctx,
            threads=serving.threads,
        ),
        serving.args,
    )
    return _EngineDecision(
        args=args,
        module=llamacpp.ENTRYPOINT_MODULE,
        api_key_env=llamacpp.API_KEY_ENV,
        health_path=llamacpp.HEALTH_PATH,
        env_remove=llamacpp.env_remove(),
        accelerator="cpu",
        count=1,
        tensor_parallel=1,
        kv_cache_bytes=capacity.kv_cache_bytes_per_device if capacity else None,
        max_model_len=n_ctx,
        capacity=capacity,
        notes=notes,
    )


def _vllm(
    deployment: ModelDeployment, serving: ServingSpec, facts: Facts, bind_host: str
) -> _EngineDecision:
    spec = deployment.spec
    accelerator = _accelerator(spec.resources.accelerator, facts.device)
    requested_tp = serving.tensor_parallel_size
    if spec.resources.count == "auto":
        count = 1 if requested_tp == "auto" else requested_tp
    else:
        count = spec.resources.count
    tp = count if requested_tp == "auto" else requested_tp
    notes: list[str] = []
    if facts.device == "cpu" and tp > 1:
        raise PlanError(
            f"tensor parallel size {tp} needs {tp} GPUs, but this plan runs on the CPU",
            hint="set spec.resources.count: 1 or run on a GPU target",
        )
    if tp > count:
        raise PlanError(
            f"tensor parallel size {tp} needs {tp} accelerators, but resources.count is {count}",
            hint=f"set spec.resources.count: {tp} (or auto), or lower tensorParallelSize",
        )
    notes += _quantize_notes(deployment, facts, accelerator)
    kv_cache: int | None = serving.kv_cache_memory
    if kv_cache is None and facts.device == "cpu":
        kv_cache = DEFAULT_CPU_KV_CACHE_BYTES
        notes.append("kvCacheMemory not set: the CPU build gets 512 MiB for its KV cache")
    capacity: CapacityPlan | None = None
    if facts.model_shape is None:
        notes.append("no capacity plan: the model's size is unknown (lock it, or fetch it)")
    elif facts.accelerator_spec is None:
        notes.append("no capacity plan: name spec.resources.accelerator (e.g. L40S) to size it")
    else:
        capacity = place(
            deployment,
            facts.model_shape,
            facts.accelerator_spec,
            facts_source=facts.model_shape_source,
            kv_cache_bytes=kv_cache,
            quantized_weight_bytes=facts.quantized_weight_bytes,
        )
        count, tp = capacity.count, capacity.tensor_parallel
    decided = vllm.VllmSettings(
        model_path=facts.model_path,
        served_model_name=deployment.served_model_name,
        host=bind_host,
        port=facts.port,
        tensor_parallel_size=tp,
        kv_cache_bytes=int(kv_cache) if kv_cache is not None else None,
        quantization="fp8" if spec.quantize.method == "fp8" else None,
        trust_remote_code=spec.model.trust_remote_code,
    )
    return _EngineDecision(
        args=vllm.build_args(serving, decided),
        module=vllm.ENTRYPOINT_MODULE,
        api_key_env=vllm.API_KEY_ENV,
        health_path=vllm.HEALTH_PATH,
        env_remove=[],
        accelerator=accelerator,
        count=count,
        tensor_parallel=tp,
        kv_cache_bytes=decided.kv_cache_bytes,
        max_model_len=serving.max_model_len,
        capacity=capacity,
        notes=notes,
    )


def _quantize_notes(deployment: ModelDeployment, facts: Facts, accelerator: str) -> list[str]:
    """Check that the quantization method can run here; the notes it adds to the plan.

    fp8 is the engine's (dynamic, at load time, FP8-capable GPUs only); int8 and w4a16 are
    deployer's own step and run where the accelerator has kernels for them (the CPU build runs
    both). Raises :class:`PlanError` otherwise.
    """
    method = deployment.spec.quantize.method
    if method == "none":
        return []
    if method == "fp8":
        if facts.device == "cpu":
            raise PlanError(
                f"quantize method fp8 on {accelerator} is not supported: the CPU build runs it "
                "about 25x slower than bfloat16",
                hint="use method int8 or w4a16 on the CPU, or fp8 on an FP8-capable GPU "
                "(Ada or Hopper)",
            )
        return ["fp8: the engine quantizes the weights dynamically while loading"]
    spec = facts.accelerator_spec
    if spec is not None and not spec.supports_quantization(method):
        runs = sorted(spec.quantization)
        raise PlanError(
            f"quantize method {method} is not supported on {spec.name} ({spec.architecture})",
            hint=f"use method {' or '.join(runs)}" if runs else "use method none",
        )
    if facts.quantize_step is None:
        raise PlanError(
            f"quantize method {method} needs deployer's quantize step, which this plan lacks",
            hint="plan with deployer plan or apply (they prepare the quantized artifact)",
        )
    return [f"{method}: the engine serves deployer's quantized checkpoint {facts.model_path}"]


def _client_host(bind_host: str) -> str:
    """The address a client on this machine uses to reach an engine bound to ``bind_host``."""
    if bind_host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"  # Linux binds "::" dual-stack: IPv4 loopback reaches it too
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def _accelerator(requested: str, device: Device) -> str:
    if requested.lower() == "cpu":
        return "cpu"
    if requested == "auto":
        return "cpu" if device == "cpu" else "gpu"
    if device == "cpu":
        raise PlanError(
            f"spec.resources.accelerator is {requested}, but this machine has no GPU",
            hint="use accelerator: cpu (or auto) to run here, or deploy to a target with GPUs",
        )
    return requested


def _describe_model(deployment: ModelDeployment) -> str:
    model = deployment.spec.model
    if model.source == "local":
        return model.path
    return f"{model.repo}@{model.revision}"


def _steps(
    deployment: ModelDeployment, facts: Facts, digest: str, args: list[str], health_path: str
) -> list[PlannedStep]:
    """The plan's steps in the order apply runs them: what the target does first, the model,
    quantization, the engine, what the target prepares, deploy, ready, smoke."""
    target = facts.target_steps or TargetSteps()
    deploy = _deploy_step(facts.observed, digest, args, target)
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
            name="ready", action=StepAction.CHECK, reason=target.ready or f"wait for {health_path}"
        ),
        smoke,
    ]


def _deploy_step(
    observed: Observed | None, digest: str, args: list[str], target: TargetSteps
) -> PlannedStep:
    """Create, restart or leave alone, by what runs now and its spec digest."""
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
            reason=f"{prefix}restart: " + describe_change(observed.args, tuple(args)),
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


def describe_change(before: tuple[str, ...], after: tuple[str, ...]) -> str:
    """A short human description of how two engine argument lists differ."""
    old, new = _as_flags(before), _as_flags(after)
    changes = []
    for flag in sorted(old.keys() | new.keys()):
        if old.get(flag) != new.get(flag):
            changes.append(f"{flag} {old.get(flag, '(unset)')} -> {new.get(flag, '(unset)')}")
    return (
        ", ".join(changes) if changes else "model files, engine version, key or environment changed"
    )


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
