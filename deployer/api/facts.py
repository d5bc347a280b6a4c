"""Gathering what the planner needs: the model's source and shape, the target's placement and
steps, the engine package, the key's digest, quantization. The planner itself stays pure."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import credentials, inputs
from deployer.engines.install import default_package
from deployer.errors import UnsupportedError
from deployer.events import EventBus
from deployer.hub.lock import LockedModel, lock_path, read_lock
from deployer.hub.safetensors_header import parse_header
from deployer.hub.source import ModelSourceFacts, hub_facts, local_facts, locked_entry
from deployer.hub.store import ModelStore
from deployer.manifest.loader import LoadedManifest
from deployer.manifest.models import ARTIFACT_METHODS
from deployer.planner import Facts, Plan, PlannedStep, StepAction, make_plan
from deployer.settings import Settings
from deployer.sizing.catalog import builtin_config
from deployer.sizing.model_facts import ModelFacts, facts_from_config, facts_from_folder
from deployer.targets.base import Renders, Target
from deployer.units import human_bytes

if TYPE_CHECKING:
    # Imported where used: an unchanged apply of a local safetensors model needs none of them.
    from deployer.engines.gguf_header import GGUFModelFacts
    from deployer.hub.fetch import Fetcher


def make(
    loaded: LoadedManifest,
    target: Target,
    settings: Settings,
    *,
    key: credentials.ApiKey | None,
    events: EventBus | None = None,
    offline: bool = False,
    observe: bool | None = None,
    smoke_passed: bool = False,
    allow_downtime: bool = False,
) -> Plan:
    """The plan for ``loaded`` on ``target``. ``offline`` (``deployer plan``): nothing is
    contacted (the hub, hosts, a cluster); the lock, the store and deployer's catalog give the
    model's facts. A target that renders artifacts plans from the manifest and lock only, never
    from this machine's store, so two machines plan the same bytes. ``observe`` (default: when
    not offline, or when observing needs no network) asks the target what runs."""
    if observe is None:
        observe = not offline or target.observes_offline
    if isinstance(target, Renders):
        with tempfile.TemporaryDirectory(prefix="deployer-render-") as empty:
            return _make(
                loaded,
                target,
                dataclasses.replace(settings, cache=Path(empty)),
                key=key,
                events=events,
                offline=True,
                observe=observe,
                smoke_passed=smoke_passed,
                allow_downtime=allow_downtime,
            )
    return _make(
        loaded,
        target,
        settings,
        key=key,
        events=events,
        offline=offline,
        observe=observe,
        smoke_passed=smoke_passed,
        allow_downtime=allow_downtime,
    )


def _make(
    loaded: LoadedManifest,
    target: Target,
    settings: Settings,
    *,
    key: credentials.ApiKey | None,
    events: EventBus | None,
    offline: bool,
    observe: bool,
    smoke_passed: bool,
    allow_downtime: bool = False,
) -> Plan:
    """``offline``: the model's facts from the lock and store only; ``observe``: ask the
    target what runs."""
    deployment = loaded.deployment
    spec = deployment.spec
    source = model_source(loaded, settings, events or EventBus(), offline=offline)
    placement = target.placement(spec.resources.accelerator)
    package = default_package(spec.serving.engine, spec.serving.version, placement.device)
    observed = target.observe(deployment.name) if observe else None
    port = spec.serving.port or (observed.port if observed else None)
    port = port or target.default_port(deployment.name, spec.serving.host)
    if key is None:
        stored = credentials.stored_api_key(settings.deployment_dir(deployment.name))
        key_source = spec.serving.api_key.describe() if spec.serving.api_key else "generated"
        key_digest = (
            credentials.ApiKey(stored, "generated", None).digest if stored else "not generated yet"
        )
    else:
        key_source, key_digest = key.source, key.digest
    if isinstance(target, Renders):
        # The key lives in a Secret the pods read: it is not part of what renders.
        key_digest = "a Secret in the cluster"
    step_name = "fetch" if spec.model.source == "huggingface" else "model"
    gguf = gguf_facts(source.path) if _is_gguf(source.path) else None
    shape, shape_source = (None, "") if gguf else model_shape(loaded, source, settings)
    facts = Facts(
        device=placement.device,
        model_path=_model_path(loaded, target, source),
        model_fingerprint=source.fingerprint,
        model_revision=_model_revision(loaded, source),
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
        accelerator_spec=placement.accelerator,
        gguf=gguf,
        target_steps=target.plan_steps(deployment, port, offline=offline),
        smoke_passed=smoke_passed,
        allow_downtime=allow_downtime,
    )
    facts = with_quantize(facts, loaded, source, settings)
    return make_plan(deployment, facts)


def _model_revision(loaded: LoadedManifest, source: ModelSourceFacts) -> str | None:
    """``REPO@COMMIT`` (12 digits) of a hub model, the revision as written until it is
    resolved; None for a local folder or file."""
    model = loaded.deployment.spec.model
    if model.source != "huggingface":
        return None
    return f"{model.repo}@{source.commit[:12] if source.commit else model.revision}"


def _model_path(loaded: LoadedManifest, target: Target, source: ModelSourceFacts) -> str:
    """Where the engine finds the weights: this machine's folder, or where a cluster's pods
    put them (the chart's model cache: /models/REPO/COMMIT)."""
    model = loaded.deployment.spec.model
    if isinstance(target, Renders) and model.source == "huggingface":
        locked = source.locked
        revision = locked.commit if locked is not None else model.revision
        return f"/models/{model.repo.replace('/', '--')}/{revision}"
    return str(source.path)


def model_source(
    loaded: LoadedManifest, settings: Settings, events: EventBus, *, offline: bool = False
) -> ModelSourceFacts:
    model = loaded.deployment.spec.model
    if model.source == "local":
        path = loaded.resolve_path(model.path)
        if _is_gguf(path):
            return _gguf_source(path)
        return local_facts(model, path, base_dir=loaded.base_dir)
    return hub_facts(
        model,
        locked=locked(loaded),
        store=ModelStore(settings.models_dir),
        token=None if offline else hub_token(loaded),
        events=events,
        offline=offline,
    )


def _is_gguf(path: Path) -> bool:
    return path.suffix == ".gguf" and path.is_file()


def gguf_facts(path: Path) -> GGUFModelFacts:
    """A GGUF file's facts, read once per file version in this process (the header of a small
    model holds its whole vocabulary: a quarter of a second to walk)."""
    stat = path.stat()
    return _gguf_facts(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _gguf_facts(path: Path, size: int, mtime_ns: int) -> GGUFModelFacts:
    from deployer.engines.gguf_header import read_model_facts

    return read_model_facts(path)


def _gguf_source(path: Path) -> ModelSourceFacts:
    """A local GGUF file (llama.cpp's one-file format): its header must parse."""
    facts = gguf_facts(path)
    stat = path.stat()
    digest = hashlib.sha256(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return ModelSourceFacts(
        path=path,
        fingerprint=digest.hexdigest(),
        action="check",
        reason=f"use {path} (GGUF {facts.architecture}, {human_bytes(stat.st_size)})",
    )


def model_shape(
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
    entry = source.locked
    config_file = entry.file("config.json") if entry else None
    if entry is not None and config_file is not None and store.has_blob(config_file.sha256):
        config = inputs.read_json(store.blob_path(config_file.sha256), inputs.MODEL_CONFIG)
        headers = []
        for file in entry.files:
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


def with_quantize(
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
    from deployer.quantize import run as quantize_run

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


def locked(loaded: LoadedManifest) -> LockedModel | None:
    model = loaded.deployment.spec.model
    if model.source != "huggingface":
        return None
    path = lock_path(loaded.path)
    return locked_entry(model, read_lock(path), loaded.deployment.name, path)


def hub_token(loaded: LoadedManifest) -> str | None:
    model = loaded.deployment.spec.model
    if model.source != "huggingface" or model.token is None:
        return None
    return credentials.resolve_secret(
        model.token, field="spec.model.token", base_dir=loaded.base_dir
    )


def fetcher(loaded: LoadedManifest, settings: Settings, events: EventBus) -> Fetcher:
    model = loaded.deployment.spec.model
    if model.source != "huggingface":
        raise UnsupportedError(
            f"{loaded.deployment.name}: spec.model.source is {model.source}; only hub models "
            "are fetched or locked",
            hint="a local folder is used where it is",
        )
    from deployer.hub.fetch import Fetcher

    return Fetcher(
        model,
        store=ModelStore(settings.models_dir),
        token=hub_token(loaded),
        events=events,
        base_dir=loaded.base_dir,
    )


def manifest_digest(loaded: LoadedManifest) -> str:
    canonical = loaded.deployment.model_dump_json(by_alias=True, exclude_defaults=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
