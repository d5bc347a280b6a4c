"""The llama.cpp demo through ``deployer apply``, for real: llama-cpp-python's server (built by
``deployer engine install llamacpp``) serving the demo's GGUF file on this machine's CPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import MANIFESTS
from tests.integration.cli import Result, deployer

pytestmark = pytest.mark.engine
MANIFEST = MANIFESTS / "demo" / "smollm2-135m-llamacpp.yaml"
NAME = "smollm2-llamacpp"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    yield path
    deployer("destroy", NAME, home=path)


@pytest.fixture(scope="module")
def first_apply(home: Path) -> Result:
    # Variables the server would read over its flags: they must not reach it.
    return deployer("apply", str(MANIFEST), home=home, env={"PORT": "1", "N_CTX": "64"})


def test_the_plan_sizes_the_model_from_the_gguf_header(home: Path) -> None:
    result = deployer("plan", str(MANIFEST), "-o", "json", home=home)
    assert result.code == 0, result.output
    plan = json.loads(result.stdout)
    capacity = plan["capacity"]
    assert capacity["parameter_source"] == "GGUF tensor infos"
    assert capacity["parameters"] == 134_515_008
    # What llama.cpp logs for this file at n_ctx 2048: "KV self size = 45.00 MiB".
    assert capacity["kv_cache_bytes_per_device"] == 45 * 1024**2
    # The local target publishes the port through its HAProxy (the proxy step, issue 15).
    assert [s["name"] for s in plan["steps"]] == [
        "model",
        "engine",
        "proxy",
        "deploy",
        "ready",
        "smoke",
    ]
    assert plan["engine"]["module"] == "llama_cpp.server"


def test_the_llamacpp_demo_answers_paris(first_apply: Result) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "ready: check: wait for /v1/models" in first_apply.stdout
    assert "pass: chat: What is the capital of France? -> " in first_apply.stdout
    assert "Paris" in first_apply.stdout.split("pass: chat:", 1)[1]


def test_the_key_is_in_no_command_line_and_stray_settings_do_not_reach_it(
    first_apply: Result, home: Path
) -> None:
    [entry] = json.loads(deployer("status", NAME, "-o", "json", home=home).stdout)
    key = deployer("key", NAME, home=home).stdout.strip()
    engine = psutil.Process(entry["pid"])
    assert key not in " ".join(engine.cmdline())
    environ = engine.environ()
    assert environ.get("API_KEY") == key
    assert "PORT" not in environ
    assert "N_CTX" not in environ
    runtime = json.loads((home / "deployments" / NAME / "runtime.json").read_text())
    listening = {c.laddr.port for c in engine.net_connections() if c.status == "LISTEN"}
    assert listening == {runtime["port"]}, "the planned port, not PORT=1 from the environment"


def test_a_second_apply_changes_nothing(first_apply: Result, home: Path) -> None:
    again = deployer("apply", str(MANIFEST), home=home)
    assert again.code == 0, again.output
    assert "deploy: skip: already running" in again.stdout
    assert f"{NAME} unchanged" in again.stdout
