"""The chart's values for a deployment: from the manifest, its plan and its lock. Pure.

``charts/model-server/values.yaml`` documents every key; this module fills the ones that follow
from a manifest (model, locked files, engine arguments, accelerators, startup budget, Secret
*names*) and leaves the rest to the chart's defaults. No secret value ever enters: the API key
and the hub token are Secret references that ``deployer apply`` (or the user) creates.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from deployer.engines import registry
from deployer.errors import PlanError
from deployer.hub.lock import LockedModel
from deployer.manifest.models import HuggingFaceModel, ModelDeployment
from deployer.planner import Plan
from deployer.sizing.accelerators import Accelerator, lookup

PUBLIC_HUB = "https://huggingface.co"
DEFAULT_PORT = 8000
#: The most GPUs one pod can get: the largest common GPU node has 8. A plan needing more would
#: have to span nodes (pipeline parallel over Ray), which deployer does not do yet.
MAX_GPUS_PER_NODE = 8
#: Flags the chart sets itself, from values: a plan's values for them are dropped from args.
CHART_FLAGS = ("--model", "--served-model-name", "--host", "--port")
#: Start-up budget when the manifest gives none: a base for the engine's own start (imports,
#: torch.compile and CUDA graph capture on a cold cache) plus reading the weights at a
#: conservative 100 MiB/s from network storage.
BASE_STARTUP_SECONDS = 600
READ_BYTES_PER_SECOND = 100 * 1024**2
#: Values of the node label NVIDIA GPU Feature Discovery sets (nvidia.com/gpu.product) for
#: deployer's catalog names; other accelerators get no node affinity, only the GPU request.
GPU_PRODUCTS: dict[str, list[str]] = {
    "H200": ["NVIDIA-H200"],
    "H100-80GB": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL"],
    "A100-80GB": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"],
    "A100-40GB": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"],
    "L40S": ["NVIDIA-L40S"],
    "L4": ["NVIDIA-L4"],
    "A10G": ["NVIDIA-A10G"],
    "T4": ["Tesla-T4"],
    "RTX-4090": ["NVIDIA-GeForce-RTX-4090"],
}
GPU_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}


class _Values(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ImageValues(_Values):
    repository: str
    tag: str


class FileValues(_Values):
    path: str
    size: int
    sha256: str


class ModelValues(_Values):
    repo: str
    revision: str
    commit: str
    endpoint: str
    files: list[FileValues]


class SecretRefValues(_Values):
    existing_secret: str
    key: str


class EngineValues(_Values):
    served_model_name: str
    args: list[str]
    env: dict[str, str]
    port: int
    startup_seconds: int
    spec_digest: str = ""


class AcceleratorValues(_Values):
    type: str
    count: int
    resource_name: str
    products: list[str]


class CacheValues(_Values):
    size: str


class ChartValues(_Values):
    """The values ``deployer render`` writes; keys and meaning as in the chart's values.yaml."""

    fullname_override: str
    replica_count: int
    image: ImageValues
    model: ModelValues
    hub_token: SecretRefValues
    api_key: SecretRefValues
    engine: EngineValues
    accelerator: AcceleratorValues
    tolerations: list[dict[str, str]] | None = None
    model_cache: CacheValues

    def as_yaml_data(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def api_key_secret(name: str) -> str:
    """The Secret holding a deployment's engine API key, under the key ``api-key``."""
    return f"{name}-api-key"


def hub_token_secret(name: str) -> str:
    """The Secret holding a deployment's hub token, under the key ``token``."""
    return f"{name}-hub-token"


def chart_values(
    deployment: ModelDeployment, plan: Plan, locked: LockedModel | None
) -> ChartValues:
    """The chart's values for ``deployment`` as ``plan`` decided it, pinned to ``locked``.

    Raises PlanError for what one pod cannot serve: a local model folder (a cluster cannot see
    this machine's disk) or more GPUs than a node has.
    """
    model = deployment.spec.model
    chart = registry.get(deployment.spec.serving.engine).chart
    if chart is None:
        raise PlanError(
            f"{deployment.name}: the model-server chart runs vLLM; engine "
            f"{deployment.spec.serving.engine} is served on local and ssh targets",
            hint="use spec.serving.engine: vllm on kubernetes",
        )
    if not isinstance(model, HuggingFaceModel):
        raise PlanError(
            f"{deployment.name}: spec.model.source is local; a cluster cannot read this "
            "machine's folders",
            hint="use source: huggingface (a hub or a mirror the cluster reaches)",
        )
    gpus = 0 if plan.device == "cpu" else plan.accelerator_count
    if gpus > MAX_GPUS_PER_NODE:
        raise PlanError(
            f"{deployment.name} needs {gpus} x {plan.accelerator} in one pod, more than one "
            f"node has ({MAX_GPUS_PER_NODE}); serving across nodes is not supported yet",
            hint="choose a larger accelerator or quantize (spec.quantize), so that it fits "
            f"{MAX_GPUS_PER_NODE} GPUs",
        )
    name = deployment.name
    model_bytes = _model_bytes(plan, locked)
    entry = _catalog_entry(plan)
    return ChartValues(
        fullname_override=name,
        replica_count=deployment.spec.target.replicas
        if deployment.spec.target.kind == "kubernetes"
        else 1,
        image=ImageValues(
            repository=chart.images["cpu" if gpus == 0 else "cuda"], tag=f"v{plan.engine.version}"
        ),
        model=ModelValues(
            repo=model.repo,
            revision=model.revision,
            commit=locked.commit if locked else "",
            # The manifest's endpoint is where the cluster fetches from (a lock made through
            # another mirror pins the same bytes); the lock's, else the public hub, otherwise.
            endpoint=model.endpoint or (locked.endpoint if locked else None) or PUBLIC_HUB,
            files=[
                FileValues(path=f.path, size=f.size, sha256=f.sha256)
                for f in sorted(locked.files, key=lambda f: f.path)
            ]
            if locked
            else [],
        ),
        hub_token=SecretRefValues(
            existing_secret=hub_token_secret(name) if model.token else "", key="token"
        ),
        api_key=SecretRefValues(existing_secret=api_key_secret(name), key="api-key"),
        engine=EngineValues(
            served_model_name=plan.served_model_name,
            args=engine_args(plan.engine.args),
            env=dict(sorted(plan.engine.env.items())),
            port=deployment.spec.serving.port or DEFAULT_PORT,
            startup_seconds=startup_seconds(deployment, model_bytes),
            spec_digest=plan.engine.spec_digest,
        ),
        accelerator=AcceleratorValues(
            type=plan.accelerator,
            count=gpus,
            resource_name=GPU_RESOURCES.get(entry.vendor if entry else "nvidia", "nvidia.com/gpu"),
            products=GPU_PRODUCTS.get(entry.name, []) if entry and gpus else [],
        ),
        tolerations=[] if gpus == 0 else None,
        model_cache=CacheValues(size=cache_size(model_bytes)),
    )


def engine_args(args: list[str]) -> list[str]:
    """The plan's vLLM arguments without the ones the chart sets (and their values)."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        if arg in CHART_FLAGS:
            skip_value = True
            continue
        kept.append(arg)
    return kept


def startup_seconds(deployment: ModelDeployment, model_bytes: int | None) -> int:
    """The manifest's startupTimeoutSeconds if it gives one, else sized from the weights."""
    serving = deployment.spec.serving
    if "startup_timeout_seconds" in serving.model_fields_set or model_bytes is None:
        return serving.startup_timeout_seconds
    return BASE_STARTUP_SECONDS + math.ceil(model_bytes / READ_BYTES_PER_SECOND)


def cache_size(model_bytes: int | None) -> str:
    """The cache claim: the weights plus a quarter and 2 GiB headroom, whole GiB; 20Gi unknown."""
    if model_bytes is None:
        return "20Gi"
    return f"{math.ceil(model_bytes * 1.25 / 1024**3) + 2}Gi"


def _model_bytes(plan: Plan, locked: LockedModel | None) -> int | None:
    """Bytes to download: the lock's files; unlocked, the parameters at the checkpoint's width
    (two bytes each unless float32), since a quantized plan's weights are smaller than the
    checkpoint the init container fetches."""
    if locked is not None:
        return locked.total_bytes
    if plan.capacity is None:
        return None
    width = 4 if plan.capacity.dtype == "float32" else 2
    return plan.capacity.parameters * width


def _catalog_entry(plan: Plan) -> Accelerator | None:
    """The catalog's entry for the plan's accelerator; None for the CPU or 'auto' ("gpu")."""
    if plan.device == "cpu" or plan.accelerator in ("gpu", "cpu"):
        return None
    return lookup(plan.accelerator)


def describe_pin(values: ChartValues) -> str:
    """One line for headers and reports: what exactly is served."""
    model = values.model
    if model.commit:
        total = sum(f.size for f in model.files)
        return f"locked: {model.repo}@{model.commit} ({len(model.files)} files, {total} bytes)"
    return f"unlocked: {model.repo} revision {model.revision} (run deployer lock to pin it)"
