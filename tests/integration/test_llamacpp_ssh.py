"""The llama.cpp demo on an SSH host, for real: sshd in a network namespace, the GGUF file
copied and its sha256 checked by the role, llama-cpp-python's server started by deployer's
supervisor there and asked over the network at the host's address.

The host's engine is "a pre-provisioned engine image" (inventory label ``engine_python``: the
llama.cpp engine deployer built in this machine's cache; the host shares this machine's
filesystem). deployer has no wheelhouse for llama.cpp: llama-cpp-python is a source package
that compiles on each host (``engine_source: index``), minutes a host, not run here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings
from tests.conftest import MANIFESTS
from tests.integration.cli import Result, deployer
from tests.integration.sshdemo import ask_capital
from tests.support.sshhosts import SshHost, ssh_hosts

pytestmark = pytest.mark.engine
NAME = "smollm2-llamacpp"
PORT = 8000


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    with ssh_hosts(1, tmp_path_factory.mktemp("sshhosts")) as [started]:
        yield started


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, host: SshHost) -> Path:
    engine = find_engine(Settings.from_env(), default_package("llamacpp", device="cpu"))
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "hosts.yaml").write_text(
        "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts:\n"
        f"  {host.name}:\n    address: {host.address}\n    port: {host.port}\n"
        f"    user: {host.user}\n    keyFile: {host.key_file}\n"
        f"    labels: {{host_root: {host.root}, engine_python: {engine.python}}}\n"
    )
    text = (MANIFESTS / "demo" / "smollm2-135m-llamacpp.yaml").read_text()
    text = text.replace(
        "  target:\n    kind: local\n",
        "  target:\n    kind: ssh\n    inventory: hosts.yaml\n",
    ).replace("    maxModelLen: 2048\n", f"    maxModelLen: 2048\n    port: {PORT}\n")
    path = folder / "llamacpp-ssh.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def first_apply(manifest: Path, home: Path, host: SshHost) -> Iterator[Result]:
    yield deployer("apply", str(manifest), home=home, timeout=1200)
    deployer("destroy", NAME, home=home)


def test_plan_lists_provision_where_apply_runs_it(manifest: Path, home: Path) -> None:
    plan = json.loads(deployer("plan", str(manifest), "-o", "json", home=home).stdout)
    assert [s["name"] for s in plan["steps"]][:2] == ["provision", "model"]
    assert plan["capacity"]["parameter_source"] == "GGUF tensor infos"


def test_the_llamacpp_demo_answers_paris_on_the_ssh_host(
    first_apply: Result, home: Path, host: SshHost
) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "provision: create: not provisioned yet" in first_apply.stdout
    key = deployer("key", NAME, home=home).stdout.strip()
    answer = ask_capital(f"http://{host.address}:{PORT}/v1", key, model=NAME)
    assert "Paris" in answer
    copied = host.root / "opt" / "deployer" / "models" / "SmolLM2-135M-Instruct.Q4_1"
    assert (copied / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()


def test_a_second_apply_on_the_host_changes_nothing(
    first_apply: Result, manifest: Path, home: Path
) -> None:
    again = deployer("apply", str(manifest), home=home, timeout=600)
    assert again.code == 0, again.output
    assert "deploy: skip: already running" in again.stdout
