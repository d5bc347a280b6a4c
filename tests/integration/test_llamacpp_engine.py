"""llama.cpp for real: llama-cpp-python's server on the demo GGUF, with deployer's arguments.

Needs the llama.cpp engine installed in the default cache (``deployer engine install llamacpp``,
which ``./setup.sh`` runs); without it every test here fails, naming that command. The demo's
GGUF file is kept by ``deployer demo prepare`` (the fixture keeps it if missing: a 93 MB
download). The server starts once for the module, on a free loopback port, with the API key
in its environment only; the tests ask it, check the key, compare deployer's GGUF reader with the
``gguf`` package and libggml, and compare deployer's memory figures with the server's own log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deployer.demo import prepare_demo_gguf
from deployer.engines import llamacpp
from deployer.engines.gguf_header import (
    GGML_TYPES,
    REMOVED_GGML_TYPES,
    read_header,
    read_model_facts,
)
from deployer.engines.install import EngineEnv, default_package, find_engine
from deployer.errors import EngineNotInstalledError
from deployer.settings import Settings
from tests.integration.cli import deployer

pytestmark = pytest.mark.engine

KEY = "test-key-8c1f0e"
NAME = "smollm2-gguf"
N_CTX = 2048
MIB = 1024 * 1024
#: Loading takes about a second here; a busy machine may take much longer.
STARTUP_SECONDS = 180


@dataclass(frozen=True)
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    gguf: Path


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="module")
def engine(settings: Settings) -> EngineEnv:
    # Fails, never skips: CI must run these.
    try:
        return find_engine(settings, default_package("llamacpp", device="cpu"))
    except EngineNotInstalledError as exc:
        pytest.fail(f"{exc.message}; {exc.hint} (./setup.sh does)", pytrace=False)


@pytest.fixture(scope="module")
def demo_gguf(settings: Settings) -> Path:
    return prepare_demo_gguf(settings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(
    engine: EngineEnv, demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = _free_port()
    decided = llamacpp.LlamaCppSettings(
        model_path=str(demo_gguf),
        served_model_name=NAME,
        host="127.0.0.1",
        port=port,
        n_ctx=N_CTX,
        threads=2,
    )
    argv = [*engine.module_argv(llamacpp.ENTRYPOINT_MODULE), *llamacpp.build_args(decided)]
    # A stray HOST or PORT in the test's environment would override --host and --port.
    env = llamacpp.engine_env({**os.environ, "HOST": "0.0.0.0", "PORT": "1"}, KEY)
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log)
        yield Server(base, process, log, demo_gguf)
    finally:
        _stop(process)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            response = httpx.get(
                base + llamacpp.HEALTH_PATH,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=5,
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no answer on {llamacpp.HEALTH_PATH} in {STARTUP_SECONDS}s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:])


def _chat(base: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers=headers,
        json={
            "model": NAME,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=120,
    )


# --- the server --------------------------------------------------------------------------------


def test_the_model_says_paris(server: Server) -> None:
    response = _chat(server.base, {"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["model"] == NAME


def test_without_the_key_it_is_401(server: Server) -> None:
    assert _chat(server.base, {}).status_code == 401
    assert _chat(server.base, {"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(server.base + llamacpp.HEALTH_PATH, timeout=10).status_code == 401


def test_models_lists_the_served_name(server: Server) -> None:
    response = httpx.get(
        server.base + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    assert [m["id"] for m in response.json()["data"]] == [NAME]


def test_there_is_no_health_or_metrics_route(server: Server) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    for path in ("/health", "/metrics"):
        assert httpx.get(server.base + path, headers=headers, timeout=10).status_code == 404


def test_the_key_is_not_on_the_command_line(server: Server) -> None:
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert KEY.encode() not in cmdline
    assert b"--logits_all\x00false" in cmdline


def test_memory_matches_the_servers_log(server: Server) -> None:
    """Weights and KV cache exactly as the server logs them; the compute buffer estimate within
    its stated bounds."""
    log = server.log.read_text(errors="replace")
    facts = read_model_facts(server.gguf)
    used = llamacpp.memory(facts, N_CTX)

    def logged(pattern: str) -> float:
        found = re.search(pattern, log)
        assert found, f"no {pattern!r} in the server's log"
        return float(found.group(1))

    assert logged(r"CPU_Mapped model buffer size =\s+([0-9.]+) MiB") == round(
        used.weight_bytes / MIB, 2
    )
    assert logged(r"llama_kv_cache: size =\s+([0-9.]+) MiB") == round(used.kv_cache_bytes / MIB, 2)
    assert logged(r"llama_context: n_ctx\s+= (\d+)") == used.n_ctx
    assert logged(r"CPU\s+output buffer size =\s+([0-9.]+) MiB") == round(
        used.output_bytes / MIB, 2
    )
    compute = logged(r"CPU compute buffer size =\s+([0-9.]+) MiB")
    assert compute - 0.005 <= used.compute_bytes / MIB <= compute * 1.012
    assert logged(r"model params\s+= ([0-9.]+) M") == round(facts.parameter_count / 1e6, 2)


# --- the GGUF reader against the gguf package and libggml ----------------------------------------

_GGUF_DUMP = """
import json, sys
from gguf import GGUFReader
reader = GGUFReader(sys.argv[1])
print(json.dumps({
    "keys": [k for k in reader.fields if not k.startswith("GGUF.")],
    "tensors": [[t.name, [int(d) for d in t.shape], int(t.tensor_type), int(t.data_offset),
                 int(t.n_bytes)] for t in reader.tensors],
    "arch": str(reader.fields["general.architecture"].contents()),
    "tokens": len(reader.fields["tokenizer.ggml.tokens"].contents()),
}))
"""


def test_header_agrees_with_the_gguf_package(engine: EngineEnv, demo_gguf: Path) -> None:
    done = subprocess.run(
        [str(engine.python), "-c", _GGUF_DUMP, str(demo_gguf)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    theirs = json.loads(done.stdout)
    header = read_header(demo_gguf)
    assert list(header.metadata) == theirs["keys"]
    ours = [
        [t.name, list(t.dims), t.ggml_type.id, header.data_offset + t.offset, t.nbytes]
        for t in header.tensors
    ]
    assert ours == theirs["tensors"]
    assert header.get("general.architecture") == theirs["arch"]
    tokens = header.get("tokenizer.ggml.tokens")
    assert isinstance(tokens, tuple)
    assert len(tokens) == theirs["tokens"] == 49152


_GGML_SIZES = """
import ctypes, json, pathlib, sys
import llama_cpp
lib = ctypes.CDLL(str(pathlib.Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
lib.ggml_blck_size.restype = ctypes.c_int64
lib.ggml_type_size.restype = ctypes.c_size_t
lib.ggml_type_name.restype = ctypes.c_char_p
out = {}
for i in map(int, sys.argv[1:]):
    name = lib.ggml_type_name(i) if lib.ggml_blck_size(i) else None
    out[i] = [name.decode() if name else None, lib.ggml_blck_size(i), lib.ggml_type_size(i)]
print(json.dumps(out))
"""


def test_block_sizes_agree_with_libggml(engine: EngineEnv) -> None:
    ids = sorted({*GGML_TYPES, *REMOVED_GGML_TYPES})
    done = subprocess.run(
        [str(engine.python), "-c", _GGML_SIZES, *map(str, ids)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    theirs = {int(k): v for k, v in json.loads(done.stdout).items()}
    for type_id, ggml in GGML_TYPES.items():
        name, block, size = theirs[type_id]
        assert (name.upper(), block, size) == (ggml.name, ggml.block_size, ggml.type_size)
    for type_id in REMOVED_GGML_TYPES:
        assert theirs[type_id][1] == 0  # no block size: removed


_SETTINGS_DUMP = """
import json
from llama_cpp.server.settings import ModelSettings, ServerSettings
print(json.dumps(sorted({*ModelSettings.model_fields, *ServerSettings.model_fields})))
"""


def test_settings_list_matches_the_installed_server(engine: EngineEnv) -> None:
    done = subprocess.run(
        [str(engine.python), "-c", _SETTINGS_DUMP],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert set(json.loads(done.stdout)) == llamacpp.SERVER_SETTINGS


# --- the install -------------------------------------------------------------------------------


def test_a_second_install_is_instant(engine: EngineEnv, tmp_path: Path) -> None:
    started = time.monotonic()
    result = deployer(
        "engine", "install", "llamacpp", "--device", "cpu", home=tmp_path, timeout=120
    )
    assert result.code == 0, result.output
    assert time.monotonic() - started < 20
    assert "already installed" in result.output
    assert str(engine.root) in result.output
