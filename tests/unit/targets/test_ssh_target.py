"""The SSH target's pure helpers: the arguments the role gets, the model's hash list, and the
supervisor's environment file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from deployer.agent.supervisor import read_env_file
from deployer.errors import PermanentError, PlanError
from deployer.manifest.models import SshTargetSpec
from deployer.settings import Settings
from deployer.targets.ssh.inventory import Host
from deployer.targets.ssh.provision import GpuFacts, facts_file
from deployer.targets.ssh.target import (
    Replica,
    SshTarget,
    _installs_from_wheelhouse,
    _systemd_facts,
    file_hashes,
    host_args,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "/m", "--host", "127.0.0.1", "--port", "8000"], []),
        (
            ["--model", "/m", "--served-model-name", "x", "--port", "9", "--enforce-eager"],
            ["--served-model-name", "x", "--enforce-eager"],
        ),
        (["--port=8000", "--dtype", "bfloat16"], ["--dtype", "bfloat16"]),
    ],
)
def test_host_args_drop_what_the_role_sets_per_host(args: list[str], expected: list[str]) -> None:
    assert host_args(args) == expected


def test_file_hashes_list_every_file_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub" / "w.bin").write_bytes(b"abc")
    assert file_hashes(tmp_path) == [
        {"path": "config.json", "sha256": hashlib.sha256(b"{}").hexdigest()},
        {"path": "sub/w.bin", "sha256": hashlib.sha256(b"abc").hexdigest()},
    ]


def test_replica_paths_and_urls_follow_the_host_root_label() -> None:
    host = Host(address="10.0.0.5", labels={"host_root": "/srv/h1/"})
    replica = Replica("h1", host)
    assert replica.run_dir("demo") == "/srv/h1/opt/deployer/deployments/demo"
    assert replica.base_url(8000) == "http://10.0.0.5:8000/v1"
    assert Replica("h2", Host(address="10.0.0.6")).run_dir("d") == "/opt/deployer/deployments/d"


def test_env_file_lines_become_variables(tmp_path: Path) -> None:
    path = tmp_path / "engine.env"
    path.write_text("# comment\n\nVLLM_API_KEY=dk-a=b\n")
    assert read_env_file(path) == {"VLLM_API_KEY": "dk-a=b"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, True),
        ({"engine_source": "wheelhouse"}, True),
        ({"engine_source": "index"}, False),
        ({"engine_python": "/opt/vllm/bin/python"}, False),
        ({"engine_venv_source": "/srv/wheels"}, False),
    ],
)
def test_which_hosts_install_the_engine_from_deployers_wheelhouse(
    labels: dict[str, str], expected: bool
) -> None:
    assert _installs_from_wheelhouse(Replica("h", Host(address="10.0.0.5", labels=labels))) is (
        expected
    )


def test_an_unknown_engine_source_names_the_host_and_the_choices() -> None:
    replica = Replica("gpu7", Host(address="10.0.0.5", labels={"engine_source": "pypi"}))
    with pytest.raises(PermanentError) as caught:
        _installs_from_wheelhouse(replica)
    assert caught.value.message == "host gpu7: label engine_source is 'pypi'"
    assert caught.value.hint == "use one of: wheelhouse, index"


@pytest.mark.parametrize(
    ("user", "labels", "expected"),
    [
        ("root", {}, False),
        ("ubuntu", {}, True),
        ("ubuntu", {"become": "false"}, False),
        ("root", {"become": "true"}, True),
    ],
)
def test_root_work_goes_through_sudo_for_other_users(
    user: str, labels: dict[str, str], expected: bool
) -> None:
    assert Replica("h", Host(address="10.0.0.5", user=user, labels=labels)).become is expected


def test_systemd_units_report_the_engine_pid_and_restarts() -> None:
    runtime: dict[str, object] = {}
    assert _systemd_facts(runtime, "ActiveState=active\nMainPID=4242\nNRestarts=2\n") is True
    assert runtime == {"engine_pid": 4242, "starts": 3, "supervisor_status": "running"}
    failed: dict[str, object] = {}
    assert _systemd_facts(failed, "ActiveState=failed\nMainPID=0\nNRestarts=5\n") is False
    assert failed == {"engine_pid": None, "starts": 6, "supervisor_status": "failed"}
    # No systemctl on the host, or no such unit: nothing is known, and nothing runs.
    unknown: dict[str, object] = {}
    assert _systemd_facts(unknown, "") is False
    assert unknown == {"engine_pid": None, "starts": None, "supervisor_status": None}


def facts(model: str = "", count: int = 0, memory_mib: int = 0, host_mib: int = 65536) -> GpuFacts:
    return GpuFacts(
        status="NVIDIA GPU" if count else "no NVIDIA GPU",
        count=count,
        model=model,
        memory_mib=memory_mib,
        driver_version="",
        cuda_version="",
        os_family="Debian",
        os_version="Debian 12",
        host_memory_mib=host_mib,
    )


def target_with_facts(tmp_path: Path, recorded: dict[str, GpuFacts | None]) -> SshTarget:
    lines = ["apiVersion: deployer/v1alpha1", "kind: Inventory", "hosts:"]
    lines += [f"  {name}: {{address: 10.0.0.{i + 1}}}" for i, name in enumerate(recorded)]
    (tmp_path / "hosts.yaml").write_text("\n".join(lines) + "\n")
    spec = SshTargetSpec.model_validate(
        {
            "kind": "ssh",
            "inventory": "hosts.yaml",
            "hosts": list(recorded),
            "replicas": len(recorded),
        }
    )
    target = SshTarget(Settings(home=tmp_path / "home", cache=tmp_path), spec, tmp_path)
    for i, (name, found) in enumerate(recorded.items()):
        if found is not None:
            path = facts_file(target.workdir, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps({"address": f"10.0.0.{i + 1}", "port": 22, "facts": asdict(found)})
            )
    return target


def test_cpu_hosts_plan_on_their_own_memory(tmp_path: Path) -> None:
    target = target_with_facts(tmp_path, {"a": facts(host_mib=32768), "b": facts(host_mib=16384)})
    device, accelerator = target.hardware() or ("?", None)
    assert device == "cpu"
    assert accelerator is not None
    assert accelerator.memory_bytes == 16384 * 1024**2  # the smallest host's


def test_gpu_hosts_plan_on_the_gpu_provision_found(tmp_path: Path) -> None:
    l40s = facts("NVIDIA L40S", count=2, memory_mib=46068)
    target = target_with_facts(tmp_path, {"a": l40s, "b": l40s})
    device, accelerator = target.hardware() or ("?", None)
    assert device == "cuda"
    assert accelerator is not None
    assert accelerator.name == "L40S"


def test_a_host_never_provisioned_leaves_the_plan_to_the_manifest(tmp_path: Path) -> None:
    target = target_with_facts(tmp_path, {"a": facts(), "b": None})
    assert target.hardware() is None
    assert target.host_facts()["b"] is None


def test_facts_recorded_for_another_address_do_not_count(tmp_path: Path) -> None:
    target = target_with_facts(tmp_path, {"a": facts()})
    path = facts_file(target.workdir, "a")
    path.write_text(path.read_text().replace("10.0.0.1", "10.9.9.9"))
    assert target.host_facts() == {"a": None}


def test_mixed_hosts_are_refused_naming_them(tmp_path: Path) -> None:
    target = target_with_facts(
        tmp_path, {"gpu1": facts("NVIDIA L4", count=1, memory_mib=23034), "cpu1": facts()}
    )
    with pytest.raises(PlanError) as caught:
        target.hardware()
    assert caught.value.message == "the hosts mix GPUs (gpu1) and CPU-only hosts (cpu1)"


def test_an_endpoint_label_is_where_this_machine_reaches_the_engine() -> None:
    natted = Replica(
        "c1", Host(address="127.0.0.1", port=2222, labels={"endpoint": "127.0.0.1:18000"})
    )
    assert natted.base_url(8000) == "http://127.0.0.1:18000/v1"
    v6 = Replica("c2", Host(address="::1", labels={"endpoint": "[::1]:18001"}))
    assert v6.base_url(8000) == "http://[::1]:18001/v1"
    bad = Replica("c3", Host(address="10.0.0.1", labels={"endpoint": "http://x"}))
    with pytest.raises(PermanentError) as caught:
        bad.base_url(8000)
    assert caught.value.message == "host c3: label endpoint is 'http://x'"
