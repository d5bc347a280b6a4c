"""llama.cpp behind the engine seam: llama-cpp-python's server, compiled on install, serving one
GGUF file on the CPU, sized from the file's own header."""

from __future__ import annotations

from collections.abc import Mapping

from deployer.engines import llamacpp
from deployer.engines.base import (
    ChartContainer,
    Device,
    EngineDecision,
    EngineRequest,
    LoadMetric,
    Packaging,
)
from deployer.engines.llamacpp.capacity import place_gguf
from deployer.errors import PlanError
from deployer.manifest.models import LlamaCppServingSpec

#: The llama.cpp environment's helpers: ``gguf`` (the same release as vLLM's), which reads GGUF
#: files independently of deployer's own reader (the integration tests compare the two).
#: llama-cpp-python itself depends on numpy, which gguf needs too.
HELPER_REQUIREMENTS: tuple[str, ...] = ("gguf==0.19.0",)


class LlamaCppEngine:
    """llama-cpp-python's OpenAI-compatible server (:mod:`deployer.engines.llamacpp`)."""

    name = "llamacpp"
    packaging = Packaging(
        title="llama.cpp",
        distributions={"cpu": llamacpp.PACKAGE, "cuda": llamacpp.PACKAGE},
        version=llamacpp.VERSION,
        extras=llamacpp.EXTRAS,
        helpers=HELPER_REQUIREMENTS,
        # The server's app module imports fastapi, uvicorn's config and pydantic-settings, and
        # llama_cpp loads the compiled libraries: what starting the engine needs.
        verify_modules=(llamacpp.IMPORT_MODULE, f"{llamacpp.ENTRYPOINT_MODULE}.app", "gguf"),
        install_note="compiles llama.cpp: about 4 minutes on 2 cores, about 175 MB",
        cmake_args={"cpu": llamacpp.CPU_CMAKE_ARGS, "cuda": llamacpp.CUDA_CMAKE_ARGS},
    )
    entrypoint_module = llamacpp.ENTRYPOINT_MODULE
    api_key_env = llamacpp.API_KEY_ENV
    health_path = llamacpp.HEALTH_PATH
    metrics_path = llamacpp.METRICS_PATH
    #: No metrics endpoint is served (``METRICS_PATH`` is None), so nothing to read.
    metric_names: Mapping[LoadMetric, tuple[str, ...]] = {}
    owned_flags: Mapping[str, str] = llamacpp.OWNED_FLAGS
    #: The model-server chart runs vLLM's images only.
    chart: ChartContainer | None = None
    #: llama-cpp-python ships no serving benchmark.
    serve_benchmark_module: str | None = None

    def env_remove(self) -> list[str]:
        return llamacpp.env_remove()

    def beside_env(self, device: Device) -> dict[str, str]:
        return {}

    def decide(self, request: EngineRequest) -> EngineDecision:
        """One GGUF file on the CPU, sized from the file's header."""
        deployment = request.deployment
        serving = deployment.spec.serving
        if not isinstance(serving, LlamaCppServingSpec):
            raise PlanError(f"{deployment.name}: engine {serving.engine} is not llama.cpp")
        if request.device != "cpu":
            raise PlanError(
                f"{deployment.name}: deployer serves llama.cpp on CPUs (its CUDA build is "
                "defined but not tested)",
                hint="set spec.resources.accelerator: cpu, or use engine vllm on GPUs",
            )
        if deployment.spec.quantize.method != "none":
            raise PlanError(
                f"{deployment.name}: a GGUF file is quantized already; spec.quantize is for vLLM",
                hint="remove spec.quantize, or pick a GGUF file of another quantization",
            )
        if not request.model_path.endswith(".gguf"):
            raise PlanError(
                f"{deployment.name}: llama.cpp serves a .gguf file, not {request.model_path}",
                hint="set spec.model.path to the .gguf file",
            )
        llamacpp.check_env(serving.env)
        n_ctx = serving.max_model_len or llamacpp.DEFAULT_N_CTX
        capacity = None
        notes: list[str] = []
        if request.gguf is not None and request.accelerator is not None:
            capacity = place_gguf(deployment, request.gguf, request.accelerator, n_ctx=n_ctx)
        else:
            notes.append("no capacity plan: the GGUF file's header is not at hand")
        args = llamacpp.build_args(
            llamacpp.LlamaCppSettings(
                model_path=request.model_path,
                served_model_name=deployment.served_model_name,
                host=request.bind_host,
                port=request.port,
                n_ctx=n_ctx,
                threads=serving.threads,
            ),
            serving.args,
        )
        return EngineDecision(
            args=args,
            accelerator="cpu",
            count=1,
            tensor_parallel=1,
            kv_cache_bytes=capacity.kv_cache_bytes_per_device if capacity else None,
            max_model_len=n_ctx,
            capacity=capacity,
            notes=notes,
        )


ENGINE = LlamaCppEngine()
