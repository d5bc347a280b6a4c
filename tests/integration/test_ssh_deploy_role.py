"""``playbooks/deploy.yml`` and ``destroy.yml`` (role ``model_server``) on a real SSH host, with a
stand-in engine: a few lines of Python that answer ``/health`` on the address and port the role
gives it, so the role's behaviour is checked in seconds without vLLM. The tests run in file order.

The host's python is "a pre-provisioned engine image" (label ``engine_python``), and the stand-in
module reaches it through ``PYTHONPATH`` in the engine's environment.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployer.events import EventBus
from deployer.targets.ssh import Inventory, load_inventory
from deployer.targets.ssh.ansible import PlaybookResult, run_playbook
from deployer.targets.ssh.provision import playbooks_dir
from tests.support.sshhosts import SshHost, ssh_hosts

KEY = "dk-test-role-key-5b1c9e"
PORT = 8123
FAKE_ENGINE = """
import argparse, http.server, os
parser = argparse.ArgumentParser()
for option in ("--model", "--host", "--port", "--served-model-name"):
    parser.add_argument(option)
args, _ = parser.parse_known_args()
assert os.environ["VLLM_API_KEY"]
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *_):
        pass
http.server.HTTPServer((args.host, int(args.port)), Health).serve_forever()
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("role")


@pytest.fixture(scope="module")
def host(folder: Path) -> Iterator[SshHost]:
    with ssh_hosts(1, folder / "hosts") as started:
        yield started[0]


@pytest.fixture(scope="module")
def inventory(folder: Path, host: SshHost) -> Inventory:
    path = folder / "hosts.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts:\n"
        f"  {host.name}:\n    address: {host.address}\n    keyFile: {host.key_file}\n"
        f"    labels: {{host_root: {host.root}, engine_python: /usr/bin/python3}}\n"
    )
    return load_inventory(path)


@pytest.fixture(scope="module")
def extravars(folder: Path) -> dict[str, Any]:
    engine = folder / "engine"
    engine.mkdir()
    (engine / "fakeengine.py").write_text(FAKE_ENGINE)
    model = folder / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return {
        "model_server_deployment": "role-demo",
        "model_server_engine_module": "fakeengine",
        "model_server_engine_args": ["--served-model-name", "role-demo"],
        "model_server_engine_env": {"PYTHONPATH": str(engine)},
        "model_server_port": PORT,
        "model_server_api_key": KEY,
        "model_server_model_name": model.name,
        "model_server_model_src": str(model),
        "model_server_model_files": [
            {"path": "config.json", "sha256": hashlib.sha256(b"{}").hexdigest()}
        ],
        "model_server_runtime_facts": {"spec_digest": "digest-1"},
    }


def play(
    name: str, inventory: Inventory, folder: Path, extravars: dict[str, Any]
) -> PlaybookResult:
    return run_playbook(
        playbooks_dir() / name,
        inventory,
        extravars=extravars,
        events=EventBus(),
        workdir=folder / "work",
    )


def run_dir(host: SshHost) -> Path:
    return host.root / "opt" / "deployer" / "deployments" / "role-demo"


def supervisor(host: SshHost) -> dict[str, Any]:
    return json.loads((run_dir(host) / "supervisor.json").read_text())  # type: ignore[no-any-return]


def healthy(host: SshHost, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host.address}:{PORT}/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def test_deploy_starts_the_engine_on_the_host_address(
    inventory: Inventory, folder: Path, extravars: dict[str, Any], host: SshHost
) -> None:
    result = play("deploy.yml", inventory, folder, extravars)
    assert result.error() is None, result.error()
    assert healthy(host)
    assert (run_dir(host) / "engine.env").stat().st_mode & 0o777 == 0o600
    assert (host.root / "opt/deployer/models/tiny-model/config.json").read_text() == "{}"


def test_deploy_again_changes_nothing_and_keeps_the_engine(
    inventory: Inventory, folder: Path, extravars: dict[str, Any], host: SshHost
) -> None:
    before = supervisor(host)
    result = play("deploy.yml", inventory, folder, extravars)
    assert result.error() is None
    assert result.changed == 0
    assert supervisor(host)["engine_pid"] == before["engine_pid"]
    assert supervisor(host)["starts"] == 1


def test_the_key_is_in_no_file_ansible_leaves(folder: Path) -> None:
    for path in (folder / "work").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_a_corrupted_model_copy_fails_the_host(
    inventory: Inventory, folder: Path, extravars: dict[str, Any]
) -> None:
    wrong = {**extravars, "model_server_model_files": [{"path": "config.json", "sha256": "0" * 64}]}
    result = play("deploy.yml", inventory, folder, wrong)
    error = result.error()
    assert error is not None
    assert "sha256" in error.message


def test_a_changed_launch_restarts_the_engine(
    inventory: Inventory, folder: Path, extravars: dict[str, Any], host: SshHost
) -> None:
    before = supervisor(host)["engine_pid"]
    changed = {**extravars, "model_server_engine_args": ["--served-model-name", "renamed"]}
    result = play("deploy.yml", inventory, folder, changed)
    assert result.error() is None
    assert healthy(host)
    assert supervisor(host)["engine_pid"] != before


def test_destroy_stops_the_engine_and_is_idempotent(
    inventory: Inventory, folder: Path, host: SshHost
) -> None:
    variables = {"model_server_deployment": "role-demo"}
    result = play("destroy.yml", inventory, folder, variables)
    assert result.error() is None
    assert result.hosts[host.name].facts["model_server_destroyed"] is True
    assert not healthy(host, timeout=2)
    assert not run_dir(host).exists()
    again = play("destroy.yml", inventory, folder, variables)
    assert again.error() is None
    assert again.changed == 0
    assert again.hosts[host.name].facts["model_server_destroyed"] is False
