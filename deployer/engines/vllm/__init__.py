"""The vLLM adapter: the engine's arguments from the manifest and the plan's decisions.

Pure: no processes, no I/O. The API key is never an argument (argv is visible to every user of
the machine through ``ps``); it travels in the ``VLLM_API_KEY`` environment variable, which the
OpenAI-compatible server reads when ``--api-key`` is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deployer.engines.base import LoadMetric
from deployer.errors import PlanError
from deployer.manifest.models import ArgValue, ServingSpec

#: The server module. The CPU build's ``vllm`` console script crashes (PackageNotFoundError), and
#: ``python -m`` of this module works for both builds; vLLM 0.32 warns that it is deprecated in
#: favour of ``vllm serve``, which deployer will use once the CPU build's script works.
ENTRYPOINT_MODULE = "vllm.entrypoints.openai.api_server"
API_KEY_ENV = "VLLM_API_KEY"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

#: The metrics deployer reads, by vLLM's names, newest first (``vllm/v1/metrics/loggers.py``).
#: ``gpu_cache_usage_perc`` became ``kv_cache_usage_perc`` (vLLM PR 18354, 2025; the old name is
#: hidden in later releases) and ``time_per_output_token_seconds`` became
#: ``inter_token_latency_seconds``; counters are named without their ``_total`` suffix, as the
#: Prometheus parser reports them.
METRIC_NAMES: Mapping[LoadMetric, tuple[str, ...]] = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prompt_tokens": ("vllm:prompt_tokens",),
    "generation_tokens": ("vllm:generation_tokens",),
    "time_to_first_token": ("vllm:time_to_first_token_seconds",),
    "inter_token_latency": (
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
    ),
    "kv_cache_config": ("vllm:cache_config_info",),
}

#: Flags deployer sets from typed fields; a pass-through of one of them is refused with the
#: field to use instead, so one setting never has two sources.
OWNED_FLAGS = {
    "model": "spec.model",
    "served-model-name": "spec.serving.servedModelName",
    "host": "spec.serving.host",
    "port": "spec.serving.port",
    "max-model-len": "spec.serving.maxModelLen",
    "dtype": "spec.serving.dtype",
    "tensor-parallel-size": "spec.serving.tensorParallelSize",
    "gpu-memory-utilization": "spec.serving.gpuMemoryUtilization",
    "kv-cache-memory-bytes": "spec.serving.kvCacheMemory",
    "max-num-seqs": "spec.serving.maxNumSeqs",
    "runner": "spec.serving.runner",
    "quantization": "spec.quantize.method",
    "trust-remote-code": "spec.model.trustRemoteCode",
    "api-key": "spec.serving.apiKey (a reference, never a literal)",
}


@dataclass(frozen=True)
class VllmSettings:
    """What the planner decided, in the engine's terms."""

    model_path: str
    served_model_name: str
    host: str
    port: int
    tensor_parallel_size: int = 1
    kv_cache_bytes: int | None = None
    quantization: str | None = None
    trust_remote_code: bool = False


def build_args(serving: ServingSpec, decided: VllmSettings) -> list[str]:
    """The arguments after ``python -m vllm.entrypoints.openai.api_server``.

    Deterministic: the same inputs give the same list, so its digest tells whether a running
    engine must restart. Raises :class:`PlanError` for a pass-through flag that deployer owns.
    """
    args = [
        "--model",
        decided.model_path,
        "--served-model-name",
        decided.served_model_name,
        "--host",
        decided.host,
        "--port",
        str(decided.port),
    ]
    if serving.dtype != "auto":
        args += ["--dtype", serving.dtype]
    if serving.max_model_len is not None:
        args += ["--max-model-len", str(serving.max_model_len)]
    if decided.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(decided.tensor_parallel_size)]
    if serving.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(serving.gpu_memory_utilization)]
    if decided.kv_cache_bytes is not None:
        args += ["--kv-cache-memory-bytes", str(decided.kv_cache_bytes)]
    if serving.max_num_seqs is not None:
        args += ["--max-num-seqs", str(serving.max_num_seqs)]
    if serving.runner != "auto":
        args += ["--runner", serving.runner]
    if decided.quantization is not None:
        args += ["--quantization", decided.quantization]
    if decided.trust_remote_code:
        args.append("--trust-remote-code")
    for flag, value in sorted(serving.args.items()):
        # vLLM's parser accepts any unambiguous prefix (--por is --port), so a prefix of an
        # owned flag is that flag. Shorter than three letters, argparse finds it ambiguous.
        owned = next((o for o in OWNED_FLAGS if len(flag) >= 3 and o.startswith(flag)), None)
        if owned is not None:
            raise PlanError(
                f"spec.serving.args.{flag}: deployer sets --{owned} itself",
                hint=f"use {OWNED_FLAGS[owned]} instead",
            )
        args += _flag(flag, value)
    return args


def _flag(flag: str, value: ArgValue) -> list[str]:
    if value is True:
        return [f"--{flag}"]
    if value is False:
        return []  # absent is off; vLLM's store_true flags have no --no- form
    if isinstance(value, list):
        return [f"--{flag}", *(str(v) for v in value)]
    return [f"--{flag}", str(value)]
