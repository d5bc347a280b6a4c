"""``deployer provision`` on real SSH hosts (sshd in network namespaces), through Ansible.

The hosts share this machine's filesystem, so each gets a ``host_root`` label: the roles write
only under it. The GPU install tasks never run here (no NVIDIA GPU): the roles only detect that
and prepare the model server's folders.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deployer.errors import PermanentError
from deployer.events import EventBus
from deployer.targets.ssh import load_inventory
from deployer.targets.ssh.ansible import run_playbook
from deployer.targets.ssh.provision import PLAYBOOK, GpuFacts, playbooks_dir
from tests.integration.cli import Result, deployer
from tests.support.sshhosts import SshHost, ssh_hosts, unreachable_address


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SshHost]]:
    with ssh_hosts(2, tmp_path_factory.mktemp("sshhosts")) as started:
        yield started


def _inventory(path: Path, hosts: list[SshHost], extra: dict[str, str] | None = None) -> Path:
    lines = ["apiVersion: deployer/v1alpha1", "kind: Inventory", "hosts:"]
    for host in hosts:
        lines += [
            f"  {host.name}:",
            f"    address: {host.address}",
            f"    port: {host.port}",
            f"    user: {host.user}",
            f"    keyFile: {host.key_file}",
            f"    labels: {{host_root: {host.root}}}",
        ]
    for name, address in (extra or {}).items():
        lines += [
            f"  {name}:",
            f"    address: {address}",
            f"    keyFile: {hosts[0].key_file}",
            f"    labels: {{host_root: {path.parent / name}}}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(result: Result, host: str) -> list[str]:
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if cells and cells[0] == host:
            return cells
    raise AssertionError(f"no row for {host} in:\n{result.output}")


def _ssh_masters_under(folder: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["name", "cwd", "cmdline"]):
        cwd = proc.info["cwd"] or ""
        if proc.info["name"] == "ssh" and cwd.startswith(str(folder)):
            found.append(" ".join(proc.info["cmdline"] or []))
    return found


def _one_error_line(result: Result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_provision_twice_changes_nothing_the_second_time(
    hosts: list[SshHost], tmp_path: Path
) -> None:
    inventory = _inventory(tmp_path / "inventory.yaml", hosts)
    started = time.monotonic()
    first = deployer("provision", str(inventory), home=tmp_path / "home")
    first_seconds = time.monotonic() - started
    assert first.code == 0, first.output
    for host in hosts:
        row = _row(first, host.name)
        assert row[1:3] == [host.address, "changed"], row
        assert "no NVIDIA GPU" in row[-1], row
        for folder in ("models", "engines", "deployments"):
            assert (host.root / "opt" / "deployer" / folder).is_dir()
    assert not Path("/opt/deployer/deployments").exists()  # nothing outside the hosts' roots

    started = time.monotonic()
    second = deployer("provision", str(inventory), home=tmp_path / "home")
    second_seconds = time.monotonic() - started
    assert second.code == 0, second.output
    for host in hosts:
        row = _row(second, host.name)
        assert row[2] == "ok", row
        assert row[4] == "0", row  # changed
    assert "no changes: all 2 host(s) already provisioned" in second.stdout
    assert _ssh_masters_under(tmp_path) == []  # shared connections closed when a run ends
    print(f"provision of 2 hosts: first {first_seconds:.1f}s, second {second_seconds:.1f}s")


def test_unreachable_host_fails_with_one_line_and_keeps_the_others(
    hosts: list[SshHost], tmp_path: Path
) -> None:
    address = unreachable_address()
    inventory = _inventory(tmp_path / "inventory.yaml", hosts, {"gone": address})
    result = deployer("provision", str(inventory), "--connect-timeout", "3", home=tmp_path / "home")
    assert result.code == 1, result.output
    line = _one_error_line(result)
    assert "gone" in line, line
    assert address in line, line
    assert "unreachable" in line, line
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output
    assert _row(result, "gone")[2] == "unreachable"
    for host in hosts:
        assert _row(result, host.name)[2] in ("ok", "changed")


def test_refused_key_fails_naming_host_and_key(hosts: list[SshHost], tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "inventory.yaml", hosts)
    hosts[1].reject_key()
    try:
        result = deployer("provision", str(inventory), home=tmp_path / "home")
    finally:
        hosts[1].accept_key()
    assert result.code == 1, result.output
    line = _one_error_line(result)
    assert hosts[1].name in line, line
    assert str(hosts[1].key_file) in line, line
    assert "Permission denied" in line, line
    assert _row(result, hosts[1].name)[2] == "unreachable"
    assert _row(result, hosts[0].name)[2] in ("ok", "changed")


def test_hosts_option_limits_the_run(hosts: list[SshHost], tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "inventory.yaml", hosts)
    result = deployer("provision", str(inventory), "--hosts", hosts[0].name, home=tmp_path / "home")
    assert result.code == 0, result.output
    _row(result, hosts[0].name)
    assert hosts[1].name not in result.stdout.split("host0", 1)[1]

    unknown = deployer("provision", str(inventory), "--hosts", "nope", home=tmp_path / "home")
    assert unknown.code == 1
    assert "unknown host 'nope'" in _one_error_line(unknown)


FAKE_NVIDIA_SMI = """#!/bin/sh
# A stand-in for nvidia-smi on a host with two L40S GPUs.
if [ "$1" = "--query-gpu=name,memory.total,driver_version" ]; then
    echo "NVIDIA L40S, 46068, 550.54.15"
    echo "NVIDIA L40S, 46068, 550.54.15"
else
    echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |"
fi
"""


def test_gpu_facts_from_nvidia_smi(hosts: list[SshHost], tmp_path: Path) -> None:
    """The detection path of a GPU host, with a stand-in nvidia-smi and the install switched off
    (the install tasks never run in tests)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(0o755)
    inventory = load_inventory(_inventory(tmp_path / "inventory.yaml", hosts[:1]))
    result = run_playbook(
        playbooks_dir() / PLAYBOOK,
        inventory,
        extravars={"gpu_node_nvidia_smi_command": str(fake), "gpu_node_install": False},
        events=EventBus(),
        workdir=tmp_path / "ssh",
    )
    assert result.error() is None
    facts = GpuFacts.from_host(result.hosts[hosts[0].name])
    assert facts is not None
    assert (facts.status, facts.count, facts.model, facts.memory_mib) == (
        "NVIDIA GPU",
        2,
        "NVIDIA L40S",
        46068,
    )
    assert (facts.driver_version, facts.cuda_version) == ("550.54.15", "12.4")


def test_a_playbook_that_cannot_start_is_one_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("- name: Broken\n  hosts: all\n  tasks:\n    - name: X\n      nope: {}\n")
    inventory = {"all": {"hosts": {"h": {"ansible_host": "10.231.255.254"}}}}
    with pytest.raises(PermanentError) as caught:
        run_playbook(broken, inventory, extravars={}, events=EventBus(), workdir=tmp_path)
    assert "broken.yml did not run" in caught.value.message
    assert "\n" not in caught.value.message
    print(caught.value.message)


def test_ctrl_c_works_again_once_a_playbook_has_run(hosts: list[SshHost], tmp_path: Path) -> None:
    """ansible-runner installs SIGINT and SIGTERM handlers of its own; deployer must put its
    back, or Ctrl-C during the wait for the engine that follows a deploy would do nothing."""
    inventory = load_inventory(_inventory(tmp_path / "inventory.yaml", hosts[:1]))
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    result = run_playbook(
        playbooks_dir() / PLAYBOOK, inventory, extravars={}, events=EventBus(), workdir=tmp_path
    )
    assert result.error() is None
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_ctrl_c_stops_a_running_provision(hosts: list[SshHost], tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "inventory.yaml", hosts)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployer", "provision", str(inventory)],
        env={**os.environ, "DEPLOYER_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(4)  # the playbook is running
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err
