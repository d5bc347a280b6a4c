"""The llama.cpp adapter: llama-cpp-python's OpenAI-compatible server, its arguments, its
environment and its memory.

Pure: no processes, no I/O. What follows was read in llama-cpp-python 0.3.36's source
(``llama_cpp/server/{__main__,settings,cli,app,model}.py``) and checked against the running
server on the demo model.

Start: ``python -m llama_cpp.server`` (:data:`ENTRYPOINT_MODULE`). ``__main__`` builds an
argparse parser from the pydantic-settings models ``ModelSettings`` and ``ServerSettings``:
one ``--<field>`` per field, spelled with underscores as in the field (``--n_ctx``,
``--model_alias``), no short forms, and argparse's prefix matching left on (``--n_ct`` is
``--n_ctx``). Booleans take a value (``--logits_all false``); list fields take several values;
dict fields take a JSON object. The settings deployer passes:

* ``--model PATH``: the ``.gguf`` file (``model``, required).
* ``--model_alias NAME``: the served model name; ``/v1/models`` lists it. Without it the alias
  is the model path. A request naming another model is served by the one loaded model anyway.
* ``--host``, ``--port``: where uvicorn listens (default ``localhost:8000``).
* ``--n_ctx N``: the context in tokens (default 2048; 0 takes the model's training context).
  llama.cpp rounds it up to a multiple of 256 (``llama-context.cpp``).
* ``--n_threads N`` and ``--n_threads_batch N``: generation and prompt threads (defaults:
  half the CPUs, all the CPUs).
* ``--n_gpu_layers N``: layers offloaded to a GPU (0 on CPU, -1 all: the CUDA build only).
* ``--logits_all false``: the server's default is true, which keeps ``n_ctx x n_vocab``
  float32 logits per loaded model in Python and grows llama.cpp's output buffer to
  ``n_batch x n_vocab``; only prompt logprobs (``echo`` with ``logprobs``) need it.

The API key: ``ServerSettings.api_key``. It can be ``--api_key`` (visible to every user through
``ps``, so never used) or, because the settings are pydantic-settings models with no prefix and
case-insensitive names, the environment variable ``API_KEY`` (:data:`API_KEY_ENV`). With a key
every route but FastAPI's own ``/docs``, ``/redoc`` and ``/openapi.json`` needs
``Authorization: Bearer <key>`` and answers 401 ``Invalid API key`` otherwise.

The same rule means *every* field can come from the environment (``N_CTX``, ``MODEL``,
``HF_MODEL_REPO_ID``, which downloads from the Hugging Face hub, ``VERBOSE``, ...), and
``__main__`` also reads ``HOST`` and ``PORT`` with ``os.getenv`` *over* ``--host`` and
``--port``, and ``CONFIG_FILE`` (a JSON or YAML settings file that replaces the command line)
in ``__main__`` and again in ``create_app``. ``LLAMA_CPP_LIB_PATH``, ``LLAVA_CPP_LIB`` and
``MTMD_CPP_LIB`` load other shared libraries. So the engine's environment must hold none of
them but ``API_KEY``: :func:`engine_env` removes them from a base environment and
:func:`check_env` refuses them in a manifest's ``env``.

Health: there is no ``/health`` and no ``/metrics`` (both 404). ``create_app`` loads the model
before uvicorn starts listening, so the first HTTP answer means the model is loaded; readiness
is ``GET /v1/models`` (:data:`HEALTH_PATH`) answering 200 with the key (401 without it, which
also proves the key is enforced). Metrics: none beyond ``usage`` in each response and
llama.cpp's ``llama_perf_context_print`` timing lines in the log after each request.

Memory (:func:`memory`), per the server's own log lines when it loads a model
(``llama_kv_cache: size = ... K (f16) ..., V (f16) ...``, ``CPU KV buffer size``,
``CPU_Mapped model buffer size``, ``CPU compute buffer size``, ``CPU output buffer size``):

* weights: the GGUF's tensor bytes, memory-mapped (and mlocked where allowed: ``use_mlock``
  defaults to what the build supports);
* KV cache: ``n_ctx`` (padded to 256) x the sum over layers of
  ``n_head_kv x (key_length + value_length)`` x 2 bytes (F16 K and V, llama.cpp's default;
  exact for full-attention models, an upper bound for sliding-window ones);
* output buffer: ``n_vocab x 4`` bytes (one sequence, one output row);
* compute buffer: an estimate (see :func:`compute_buffer_bytes`);
* the Python server itself: :data:`RUNTIME_BYTES`, an estimate.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from deployer.engines.gguf_header import GGUFModelFacts
from deployer.errors import PlanError
from deployer.manifest.models import ArgValue

#: The distribution and the release deployer is tested with; ``[server]`` brings uvicorn,
#: fastapi, sse-starlette, starlette-context, pydantic-settings and PyYAML.
PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
EXTRAS = "server"
ENTRYPOINT_MODULE = "llama_cpp.server"
#: The module whose ``__version__`` tells the installed release.
IMPORT_MODULE = "llama_cpp"
API_KEY_ENV = "API_KEY"
#: Answers 200 (with the key) once the model is loaded; there is no ``/health``.
HEALTH_PATH = "/v1/models"
#: The context when the manifest names none (the server's own default).
DEFAULT_N_CTX = 2048
#: No Prometheus endpoint.
METRICS_PATH: str | None = None

#: llama-cpp-python is an sdist: pip compiles llama.cpp with cmake. These ``CMAKE_ARGS`` give a
#: CPU build that runs on any x86-64 machine with AVX2 (``GGML_NATIVE=OFF``: no
#: ``-march=native``, so an environment built on one host runs on another of the same
#: generation), without the vision library (``LLAVA_BUILD=OFF``: deployer serves text) and
#: without any GPU or BLAS backend.
CPU_CMAKE_ARGS: tuple[str, ...] = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_CUDA=OFF",
    "-DGGML_METAL=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_BLAS=OFF",
    "-DLLAVA_BUILD=OFF",
)
#: The CUDA build (needs nvcc; not built on the machines deployer is tested on): the same with
#: ``GGML_CUDA=ON``; ``n_gpu_layers -1`` then offloads every layer.
CUDA_CMAKE_ARGS: tuple[str, ...] = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_CUDA=ON",
    "-DGGML_METAL=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_BLAS=OFF",
    "-DLLAVA_BUILD=OFF",
)

#: Every setting ``llama_cpp.server`` 0.3.36 has (``ModelSettings`` and ``ServerSettings``),
#: each a ``--<name>`` flag and, case-insensitively, an environment variable.
SERVER_SETTINGS: frozenset[str] = frozenset(
    {
        # ModelSettings
        "model",
        "model_alias",
        "n_gpu_layers",
        "split_mode",
        "main_gpu",
        "tensor_split",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "kv_overrides",
        "rpc_servers",
        "seed",
        "n_ctx",
        "n_batch",
        "n_ubatch",
        "n_threads",
        "n_threads_batch",
        "rope_scaling_type",
        "rope_freq_base",
        "rope_freq_scale",
        "yarn_ext_factor",
        "yarn_attn_factor",
        "yarn_beta_fast",
        "yarn_beta_slow",
        "yarn_orig_ctx",
        "mul_mat_q",
        "logits_all",
        "embedding",
        "offload_kqv",
        "flash_attn",
        "last_n_tokens_size",
        "lora_base",
        "lora_path",
        "numa",
        "chat_format",
        "chat_template_kwargs",
        "clip_model_path",
        "cache",
        "cache_type",
        "cache_size",
        "hf_tokenizer_config_path",
        "hf_pretrained_model_name_or_path",
        "hf_model_repo_id",
        "draft_model",
        "draft_model_num_pred_tokens",
        "type_k",
        "type_v",
        "verbose",
        # ServerSettings
        "host",
        "port",
        "ssl_keyfile",
        "ssl_certfile",
        "api_key",
        "interrupt_requests",
        "disable_ping_events",
        "root_path",
    }
)
#: Read by ``__main__`` besides: ``--config_file`` and the variables below.
EXTRA_FLAGS: frozenset[str] = frozenset({"config_file"})
#: Environment variables the server or its library loader read directly (``os.getenv``).
EXTRA_ENV: frozenset[str] = frozenset(
    {"CONFIG_FILE", "HOST", "PORT", "LLAMA_CPP_LIB_PATH", "LLAVA_CPP_LIB", "MTMD_CPP_LIB"}
)

#: Flags deployer sets itself (or refuses), with what to use instead; a pass-through of one of
#: them is refused, so one setting never has two sources.
OWNED_FLAGS: Mapping[str, str] = {
    "model": "spec.model",
    "model_alias": "spec.serving.servedModelName",
    "host": "spec.serving.host",
    "port": "spec.serving.port",
    "n_ctx": "spec.serving.maxModelLen",
    "n_threads": "spec.serving.threads",
    "n_threads_batch": "spec.serving.threads",
    "n_gpu_layers": "spec.resources.accelerator (deployer offloads every layer to a GPU)",
    "logits_all": "nothing: deployer turns it off (it keeps n_ctx x vocabulary floats)",
    "api_key": "spec.serving.apiKey (a reference, never a literal)",
    "config_file": "spec.serving.args (deployer passes every setting on the command line)",
    "hf_model_repo_id": "spec.model (deployer fetches and verifies the model itself)",
    "hf_pretrained_model_name_or_path": "spec.model (nothing is downloaded at start-up)",
    "vocab_only": "nothing: a vocabulary-only model cannot serve",
}

#: Estimate: the Python server besides llama.cpp's buffers (67 MiB RSS after importing
#: llama_cpp, fastapi and uvicorn; 236 MiB RSS for the demo after one chat, of which 92 MiB
#: weights and 45 MiB KV cache).
RUNTIME_BYTES = 128 * 1024 * 1024
#: llama-cpp-python's ``n_batch`` and ``n_ubatch`` defaults (the server's too).
DEFAULT_BATCH = 512
#: What the compute-buffer fit leaves out (at most 16 KiB in the measurements), rounded up.
COMPUTE_SLACK_BYTES = 32 * 1024
#: ``cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)`` in ``llama-context.cpp``.
CTX_PAD = 256


@dataclass(frozen=True)
class LlamaCppSettings:
    """What the planner decided, in the engine's terms."""

    model_path: str
    """The ``.gguf`` file."""
    served_model_name: str
    host: str
    port: int
    n_ctx: int
    """Context tokens; at least 1 (0, the model's own, is never passed: the planner sizes the
    KV cache for an explicit number)."""
    threads: int | None = None
    """Generation and prompt-processing threads; None keeps the server's defaults."""
    n_gpu_layers: int = 0


def build_args(decided: LlamaCppSettings, args: Mapping[str, ArgValue] | None = None) -> list[str]:
    """The arguments after ``python -m llama_cpp.server``.

    ``args`` are the manifest's pass-through flags, written with hyphens as manifests spell
    them (``n-batch: 256`` becomes ``--n_batch 256``). Deterministic: the same inputs give the
    same list (pass-through flags sorted), so its digest tells whether a running engine must
    restart. Raises :class:`PlanError` for a flag deployer owns (or a prefix of one, which
    argparse would take for it), and for a flag the server does not have.
    """
    if decided.n_ctx < 1:
        raise PlanError(f"n_ctx must be at least 1, not {decided.n_ctx}")
    argv = [
        "--model",
        decided.model_path,
        "--model_alias",
        decided.served_model_name,
        "--host",
        decided.host,
        "--port",
        str(decided.port),
        "--n_ctx",
        str(decided.n_ctx),
    ]
    if decided.threads is not None:
        argv += ["--n_threads", str(decided.threads), "--n_threads_batch", str(decided.threads)]
    if decided.n_gpu_layers:
        argv += ["--n_gpu_layers", str(decided.n_gpu_layers)]
    argv += ["--logits_all", "false"]
    for written, value in sorted((args or {}).items()):
        flag = written.replace("-", "_")
        owned = next((o for o in OWNED_FLAGS if len(flag) >= 3 and o.startswith(flag)), None)
        if owned is not None:
            raise PlanError(
                f"spec.serving.args.{written}: deployer sets --{owned} itself",
                hint=f"use {OWNED_FLAGS[owned]} instead",
            )
        if flag not in SERVER_SETTINGS:
            close = difflib.get_close_matches(flag, sorted(SERVER_SETTINGS - OWNED_FLAGS.keys()))
            raise PlanError(
                f"spec.serving.args.{written}: llama_cpp.server {VERSION} has no --{flag}",
                hint=f"did you mean {close[0].replace('_', '-')}?"
                if close
                else "see python -m llama_cpp.server --help in the engine environment",
            )
        argv += _flag(flag, value)
    return argv


def _flag(flag: str, value: ArgValue) -> list[str]:
    if isinstance(value, bool):
        return [f"--{flag}", "true" if value else "false"]  # the server's booleans take a value
    if isinstance(value, list):
        return [f"--{flag}", *(str(v) for v in value)]
    return [f"--{flag}", str(value)]


def _reads(name: str) -> bool:
    """Whether the server reads the environment variable ``name``."""
    return name.lower() in SERVER_SETTINGS or name.upper() in EXTRA_ENV


def env_remove() -> list[str]:
    """Every variable the server reads as a setting but the key (upper case; the supervisor
    matches any case): removed from the engine's environment."""
    names = {name.upper() for name in SERVER_SETTINGS} | EXTRA_ENV
    return sorted(names - {API_KEY_ENV})


def check_env(env: Mapping[str, str]) -> None:
    """Refuse a manifest ``env`` entry the server would read as a setting (any case): it would
    be a second source for a flag, or override ``--host``/``--port``. Raises :class:`PlanError`.
    """
    for name in sorted(env):
        if not _reads(name):
            continue
        flag = name.lower()
        if flag == API_KEY_ENV.lower():
            hint = OWNED_FLAGS["api_key"]
        elif flag in OWNED_FLAGS:
            hint = OWNED_FLAGS[flag]
        elif flag in SERVER_SETTINGS:
            hint = f"spec.serving.args.{flag.replace('_', '-')}"
        else:
            hint = "deployer sets where the server listens and what it loads"
        raise PlanError(
            f"spec.serving.env.{name}: llama_cpp.server reads it as a setting",
            hint=f"use {hint} instead",
        )


def engine_env(base: Mapping[str, str], api_key: str | None) -> dict[str, str]:
    """The server's environment: ``base`` without any variable the server reads as a setting
    (in any case), plus ``API_KEY`` when a key is given. Sorted, so deterministic."""
    env = {k: v for k, v in base.items() if not _reads(k)}
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    return dict(sorted(env.items()))


# --- memory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaCppMemory:
    """What the llama.cpp server takes on the CPU for one model at ``n_ctx``."""

    n_ctx: int
    """The context llama.cpp allocates: the request rounded up to 256."""
    weight_bytes: int
    kv_cache_bytes: int
    output_bytes: int
    compute_bytes: int
    """Estimate."""
    runtime_bytes: int
    """Estimate."""

    @property
    def total_bytes(self) -> int:
        return (
            self.weight_bytes
            + self.kv_cache_bytes
            + self.output_bytes
            + self.compute_bytes
            + self.runtime_bytes
        )


def padded_ctx(n_ctx: int) -> int:
    return -(-n_ctx // CTX_PAD) * CTX_PAD


def kv_cache_bytes(facts: GGUFModelFacts, n_ctx: int) -> int:
    """Bytes of llama.cpp's F16 KV cache for ``n_ctx`` tokens (padded to 256), exactly as the
    server logs it (``llama_kv_cache: size = ...``) for full-attention models."""
    return padded_ctx(n_ctx) * facts.kv_bytes_per_token()


def compute_buffer_bytes(facts: GGUFModelFacts, n_ctx: int, n_ubatch: int = DEFAULT_BATCH) -> int:
    """Estimate of llama.cpp's CPU compute buffer (flash attention off, the server's default).

    llama.cpp sizes the buffer by reserving the worst-case graph for one micro-batch of
    ``n_ubatch`` tokens (at most ``n_ctx``: llama-cpp-python clamps the batch to the context)
    and keeping the peak of live float32 tensors. The peak is one of three phases, per
    micro-batch token in float32 elements:

    * the output: ``n_vocab + 3 n_embd`` (the logits and the hidden states);
    * attention: ``n_ctx (n_head + 1) + 2 q + 3 n_embd + 2 kv`` (the scores of every head and
      the mask over the whole cache, plus the projections; ``q = n_head x key_length``,
      ``kv = n_head_kv x key_length``);
    * the feed-forward: ``3 n_ff + 6 n_embd``.

    plus :data:`COMPUTE_SLACK_BYTES`. Source: fitted to the ``CPU compute buffer size`` that
    llama-cpp-python 0.3.36 logs for SmolLM2-135M (``n_ctx`` 256 to 8192) and for two
    random-weight llama-shaped models with other head counts, head sizes, widths and
    vocabularies (``n_ctx`` 512 to 8192, ``n_ubatch`` 128 and 512): 14 measurements, each
    matched within 1.2%, never below (the fixtures of ``tests/unit/engines/test_llamacpp.py``).
    """
    ctx = padded_ctx(n_ctx)
    tokens = min(n_ubatch, n_ctx, DEFAULT_BATCH)
    embd = facts.embedding_length
    q = facts.head_count * facts.key_length
    kv = max(facts.head_count_kv, default=0) * facts.key_length
    output = (facts.vocab_size or 0) + 3 * embd
    attention = ctx * (facts.head_count + 1) + 2 * q + 3 * embd + 2 * kv
    ffn = 3 * (facts.feed_forward_length or 0) + 6 * embd
    return 4 * tokens * max(output, attention, ffn) + COMPUTE_SLACK_BYTES


def memory(facts: GGUFModelFacts, n_ctx: int, n_ubatch: int = DEFAULT_BATCH) -> LlamaCppMemory:
    """The server's memory for ``facts`` at ``n_ctx`` on the CPU."""
    return LlamaCppMemory(
        n_ctx=padded_ctx(n_ctx),
        weight_bytes=facts.tensor_bytes,
        kv_cache_bytes=kv_cache_bytes(facts, n_ctx),
        output_bytes=4 * (facts.vocab_size or 0),
        compute_bytes=compute_buffer_bytes(facts, n_ctx, n_ubatch),
        runtime_bytes=RUNTIME_BYTES,
    )
