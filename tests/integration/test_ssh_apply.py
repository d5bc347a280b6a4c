"""``deployer apply`` with an ssh target, for real: the demo on one SSH host (sshd in a network
namespace), served by vLLM's CPU build and asked over the network at the host's address.

The hosts share this machine's filesystem, so the host uses the engine deployer installed in the
cache as "a pre-provisioned engine image" (inventory label ``engine_python``) instead of a 3.5 GB
copy, and writes everything under its ``host_root`` label. The tests run in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings
from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import Result, deployer
from tests.support.sshhosts import SshHost, ssh_hosts

pytestmark = pytest.mark.engine
NAME = "smollm2-demo"
PORT = 8000


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    with ssh_hosts(1, tmp_path_factory.mktemp("sshhosts")) as started:
        yield started[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, host: SshHost) -> Path:
    engine = find_engine(Settings.from_env(), default_package())
    folder = tmp_path_factory.mktemp("manifest")
    inventory = folder / "hosts.yaml"
    inventory.write_text(
        "\n".join(
            [
                "apiVersion: deployer/v1alpha1",
                "kind: Inventory",
                "hosts:",
                f"  {host.name}:",
                f"    address: {host.address}",
                f"    port: {host.port}",
                f"    user: {host.user}",
                f"    keyFile: {host.key_file}",
                f"    labels: {{host_root: {host.root}, engine_python: {engine.python}}}",
            ]
        )
        + "\n"
    )
    text = DEMO_MANIFEST.read_text().replace(
        "  target:\n    kind: local\n",
        f"  target:\n    kind: ssh\n    inventory: hosts.yaml\n    hosts: [{host.name}]\n",
    )
    assert "kind: ssh" in text
    path = folder / "demo-ssh.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def first_apply(manifest: Path, home: Path, host: SshHost) -> Iterator[Result]:
    yield deployer("apply", str(manifest), home=home, timeout=900)
    deployer("destroy", NAME, home=home)


def run_dir(host: SshHost) -> Path:
    return host.root / "opt" / "deployer" / "deployments" / NAME


def supervisor_state(host: SshHost) -> dict[str, object]:
    return json.loads((run_dir(host) / "supervisor.json").read_text())  # type: ignore[no-any-return]


def ask(host: SshHost, key: str) -> str:
    response = httpx.post(
        f"http://{host.address}:{PORT}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": NAME,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def test_apply_deploys_to_the_host_and_the_model_says_paris(
    first_apply: Result, home: Path, host: SshHost
) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "Traceback" not in first_apply.output
    assert "pass: chat: What is the capital of France?" in first_apply.stdout
    assert host.address.startswith("10.231.")
    status = deployer("status", NAME, "--output", "json", home=home)
    assert status.code == 0, status.output
    [entry] = json.loads(status.stdout)
    assert entry["endpoint"] == f"http://{host.address}:{PORT}/v1"
    assert entry["status"] == "healthy"
    assert entry["healthy"] is True
    key = deployer("key", NAME, home=home).stdout.strip()
    assert "Paris" in ask(host, key)
    # The engine listens on the host's address only, inside its network namespace.
    assert httpx.get(f"http://{host.address}:{PORT}/v1/models", timeout=10).status_code == 401


def test_the_key_is_in_a_private_environment_file_only(
    first_apply: Result, home: Path, host: SshHost
) -> None:
    key = deployer("key", NAME, home=home).stdout.strip()
    env_file = run_dir(host) / "engine.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert key in env_file.read_text()
    for name in ("launch.json", "runtime.json"):
        assert key not in (run_dir(host) / name).read_text()
    assert key not in first_apply.output


def test_the_model_was_copied_under_the_host_root(first_apply: Result, host: SshHost) -> None:
    copied = host.root / "opt" / "deployer" / "models" / "SmolLM2-135M-Instruct"
    assert (copied / "model.safetensors").stat().st_size > 100_000_000


def test_logs_come_from_the_host(first_apply: Result, home: Path, host: SshHost) -> None:
    result = deployer("logs", NAME, "-n", "400", home=home)
    assert result.code == 0, result.output
    assert f"Starting vLLM server on http://{host.address}:{PORT}" in result.stdout


def test_second_apply_changes_nothing_and_does_not_restart(
    first_apply: Result, manifest: Path, home: Path, host: SshHost
) -> None:
    before = supervisor_state(host)
    again = deployer("apply", str(manifest), home=home, timeout=600)
    assert again.code == 0, again.output
    after = supervisor_state(host)
    assert after["engine_pid"] == before["engine_pid"]
    assert after["starts"] == 1
    assert "deploy: skip: already running" in again.stdout
    assert f"{NAME} unchanged" in again.stdout


def test_destroy_stops_the_engine(first_apply: Result, home: Path, host: SshHost) -> None:
    engine_pid = int(str(supervisor_state(host)["engine_pid"]))
    result = deployer("destroy", NAME, home=home)
    assert result.code == 0, result.output
    assert not psutil.pid_exists(engine_pid) or psutil.Process(engine_pid).status() == "zombie"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{host.address}:{PORT}/health", timeout=5)
    assert not run_dir(host).exists()
