"""``deployer provision -o json`` without SSH hosts: the report's JSON from a playbook's
per-host results, and the command printing it (progress on stderr, exit 1 on a failed host)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from deployer.api import hosts
from deployer.cli.context import STATE
from deployer.cli.main import _register, app
from deployer.targets.ssh.ansible import HostResult, PlaybookResult

GPU_FACTS: dict[str, Any] = {
    "gpu_node_gpu_status": "ready",
    "gpu_node_gpu_count": 2,
    "gpu_node_gpu_model": "NVIDIA L4",
    "gpu_node_gpu_memory_mib": 23034,
    "gpu_node_driver_version": "570.86",
    "gpu_node_cuda_version": "12.8",
    "gpu_node_os_family": "Debian",
    "gpu_node_os_version": "Ubuntu 24.04",
    "gpu_node_host_memory_mib": 64000,
}


def report() -> hosts.ProvisionReport:
    return hosts.ProvisionReport(
        result=PlaybookResult(
            playbook="provision.yml",
            hosts={
                "gpu0": HostResult("gpu0", address="10.0.0.1", ok=9, changed=2, facts=GPU_FACTS),
                "gone": HostResult(
                    "gone",
                    address="10.0.0.2",
                    unreachable=1,
                    failed_task="Gathering Facts",
                    message="ssh: connect to host 10.0.0.2 port 22: No route to host",
                ),
            },
            seconds=12.5,
            status="failed",
            rc=4,
        )
    )


def test_the_report_has_each_host_with_its_gpu_facts_and_an_overall_ok() -> None:
    dumped = report().to_json()

    assert dumped["ok"] is False
    assert (dumped["playbook"], dumped["changed"]) == ("provision.yml", 2)
    gpu0, gone = dumped["hosts"]
    assert gpu0 == {
        "name": "gpu0",
        "address": "10.0.0.1",
        "status": "changed",
        "ok": True,
        "changed": 2,
        "failed": None,
        "gpu": {
            "status": "ready",
            "count": 2,
            "model": "NVIDIA L4",
            "memory_mib": 23034,
            "driver_version": "570.86",
            "cuda_version": "12.8",
            "os_version": "Ubuntu 24.04",
        },
    }
    assert (gone["name"], gone["ok"], gone["status"], gone["gpu"]) == (
        "gone",
        False,
        "unreachable",
        None,
    )
    assert "No route to host" in gone["failed"]
    assert json.dumps(dumped)  # plain JSON, nothing left for default=str


def test_all_hosts_ok_is_ok() -> None:
    result = PlaybookResult(playbook="provision.yml", hosts={"a": HostResult("a", ok=3)}, rc=0)

    dumped = hosts.ProvisionReport(result=result).to_json()

    assert dumped["ok"] is True
    assert dumped["hosts"][0]["failed"] is None


def test_provision_prints_the_json_on_stdout_and_exits_1_on_a_failed_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(STATE, "console", Console(file=out, width=200))
    monkeypatch.setattr(STATE, "err", Console(file=err, width=200))
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    monkeypatch.setattr(hosts, "load_inventory", lambda path: object())
    monkeypatch.setattr(hosts, "provision", lambda inventory, **kwargs: report())
    _register()

    result = CliRunner().invoke(app, ["provision", "inventory.yaml", "-o", "json"])

    assert result.exit_code == 1, result.output
    assert json.loads(out.getvalue()) == report().to_json()
    assert "error: host gone (10.0.0.2) is unreachable" in err.getvalue()
