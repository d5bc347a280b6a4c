"""ansible-runner events -> host results and deployer events, with events recorded from real
runs of playbooks/provision.yml (trimmed to the fields deployer reads)."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.errors import ManifestError, PermanentError
from deployer.events import Event, EventBus, EventKind
from deployer.targets.ssh.ansible import (
    EventMapper,
    HostResult,
    HostStatus,
    PlaybookResult,
    _host_results,
    _with_ssh_options,
)
from deployer.targets.ssh.inventory import Host, Inventory
from deployer.targets.ssh.provision import GpuFacts, select_hosts

GONE = {
    "event": "runner_on_unreachable",
    "event_data": {
        "host": "gone",
        "task": "Gathering Facts",
        "task_action": "gather_facts",
        "res": {
            "changed": False,
            "msg": 'Task failed: Data could not be sent to remote host "10.231.0.254". Make sure '
            "this host can be reached over ssh: ssh: connect to host 10.231.0.254 port 22: "
            "Connection timed out",
            "unreachable": True,
        },
    },
}
REFUSED = {
    "event": "runner_on_unreachable",
    "event_data": {
        "host": "host1",
        "task": "Gathering Facts",
        "task_action": "gather_facts",
        "res": {
            "changed": False,
            "msg": 'Task failed: Data could not be sent to remote host "10.231.0.11". Make sure '
            "this host can be reached over ssh: root@10.231.0.11: Permission denied (publickey).",
            "unreachable": True,
        },
    },
}
GPU_FACTS = {
    "event": "runner_on_ok",
    "event_data": {
        "host": "host0",
        "task": "Set gpu_node facts",
        "task_action": "ansible.builtin.set_fact",
        "res": {
            "changed": False,
            "ansible_facts": {
                "gpu_node_cuda_version": "",
                "gpu_node_driver_version": "",
                "gpu_node_gpu_count": 0,
                "gpu_node_gpu_memory_mib": 0,
                "gpu_node_gpu_model": "",
                "gpu_node_gpu_status": "no NVIDIA GPU",
                "gpu_node_os_family": "Debian",
                "gpu_node_os_version": "Debian 12.11",
            },
        },
    },
}
SETUP = {
    "event": "runner_on_ok",
    "event_data": {
        "host": "host0",
        "task": "Gathering Facts",
        "task_action": "gather_facts",
        "res": {"changed": False, "ansible_facts": {"ansible_os_family": "Debian"}},
    },
}
FOLDERS = {
    "event": "runner_on_ok",
    "event_data": {
        "host": "host0",
        "task": "Create the model server folders",
        "task_action": "ansible.builtin.file",
        "res": {"changed": True, "msg": "All items completed"},
    },
}
SKIPPED = {
    "event": "runner_on_skipped",
    "event_data": {
        "host": "host0",
        "task": "Install the NVIDIA stack",
        "task_action": "ansible.builtin.include_tasks",
    },
}
APT_FAILED = {
    "event": "runner_on_failed",
    "event_data": {
        "host": "host0",
        "task": "Install the NVIDIA driver",
        "task_action": "ansible.builtin.apt",
        "ignore_errors": None,
        "res": {"changed": False, "msg": "No package matching 'cuda-drivers' is available"},
    },
}
IGNORED = {
    "event": "runner_on_failed",
    "event_data": {
        "host": "host0",
        "task": "Probe",
        "task_action": "ansible.builtin.command",
        "ignore_errors": True,
        "res": {"changed": False, "msg": "non-zero return code", "rc": 1},
    },
}
STATS = {
    "event": "playbook_on_stats",
    "event_data": {
        "ok": {"host0": 8, "host1": 8},
        "changed": {"host0": 1, "host1": 1},
        "failures": {},
        "dark": {"gone": 1},
        "skipped": {"host0": 3, "host1": 3},
        "processed": {"host0": 1, "host1": 1, "gone": 1},
    },
}
NOISE = [
    {"event": "playbook_on_start", "event_data": {}},
    {"event": "playbook_on_task_start", "event_data": {"task": "Gathering Facts"}},
    {"event": "runner_on_start", "event_data": {"host": "host0", "task": "Gathering Facts"}},
    {"event": "verbose", "stdout": "..."},
]


def _run(*events: dict[str, Any]) -> tuple[dict[str, HostResult], list[Event]]:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    hosts = {
        "gone": HostResult("gone", address="10.231.0.254", key_file="/keys/id"),
        "host0": HostResult("host0", address="10.231.0.10", key_file="/keys/id"),
        "host1": HostResult("host1", address="10.231.0.11", key_file="/keys/id"),
    }
    mapper = EventMapper(hosts, bus)
    for event in events:
        assert mapper(event) is True
    return hosts, seen


def test_one_progress_event_per_task_result_and_none_for_the_rest() -> None:
    _, seen = _run(*NOISE, SETUP, GPU_FACTS, FOLDERS, SKIPPED)
    progress = [e for e in seen if e.kind is EventKind.PROGRESS]
    assert [(e.data["host"], e.data["task"], e.data["status"]) for e in progress] == [
        ("host0", "Gathering Facts", "ok"),
        ("host0", "Set gpu_node facts", "ok"),
        ("host0", "Create the model server folders", "changed"),
        ("host0", "Install the NVIDIA stack", "skipped"),
    ]
    assert [e.completed for e in progress] == [1, 2, 3, 4]
    assert all(e.step == "provision" for e in seen)
    assert len(seen) == len(progress)


def test_facts_come_from_set_fact_results_only() -> None:
    hosts, _ = _run(SETUP, GPU_FACTS)
    assert "ansible_os_family" not in hosts["host0"].facts
    facts = GpuFacts.from_host(hosts["host0"])
    assert facts == GpuFacts(
        status="no NVIDIA GPU",
        count=0,
        model="",
        memory_mib=0,
        driver_version="",
        cuda_version="",
        os_family="Debian",
        os_version="Debian 12.11",
    )
    assert GpuFacts.from_host(hosts["host1"]) is None


def test_counts_follow_the_recap_with_changed_apart_from_ok() -> None:
    hosts, _ = _run(SETUP, FOLDERS, GONE, STATS)
    host0 = hosts["host0"]
    assert (host0.ok, host0.changed, host0.skipped, host0.status) == (7, 1, 3, HostStatus.CHANGED)
    assert (hosts["gone"].unreachable, hosts["gone"].status) == (1, HostStatus.UNREACHABLE)


def test_unreachable_host_error_names_host_address_and_ssh_message() -> None:
    hosts, seen = _run(GONE)
    error = hosts["gone"].error()
    assert isinstance(error, PermanentError)
    assert error.message == (
        "host gone (10.231.0.254) is unreachable over ssh: "
        "ssh: connect to host 10.231.0.254 port 22: Connection timed out"
    )
    assert error.hint is not None
    assert "address, port and jump host" in error.hint
    assert [e.kind for e in seen] == [EventKind.PROGRESS, EventKind.WARNING]


def test_refused_key_error_names_host_and_key_file() -> None:
    hosts, _ = _run(REFUSED)
    error = hosts["host1"].error()
    assert error is not None
    assert error.message == (
        "host host1 (10.231.0.11): ssh refused the key /keys/id: "
        "root@10.231.0.11: Permission denied (publickey)."
    )
    assert error.hint is not None
    assert "/keys/id" in error.hint


def test_failed_task_error_names_host_task_and_message() -> None:
    hosts, _ = _run(APT_FAILED)
    error = hosts["host0"].error()
    assert error is not None
    assert error.message == (
        "host host0 (10.231.0.10): task 'Install the NVIDIA driver' failed: "
        "No package matching 'cuda-drivers' is available"
    )


def test_ignored_failure_counts_as_ok() -> None:
    hosts, _ = _run(IGNORED)
    assert hosts["host0"].status is HostStatus.OK
    assert hosts["host0"].error() is None


def test_a_failing_host_does_not_hide_the_others() -> None:
    hosts, _ = _run(SETUP, GPU_FACTS, FOLDERS, GONE, REFUSED, STATS)
    result = PlaybookResult(playbook="provision.yml", hosts=hosts, rc=4, status="failed")
    assert hosts["host0"].status is HostStatus.CHANGED
    assert GpuFacts.from_host(hosts["host0"]) is not None
    assert [h.name for h in result.failed_hosts] == ["gone", "host1"]
    error = result.error()
    assert error is not None
    assert error.message.startswith("host gone (10.231.0.254) is unreachable")
    assert error.message.endswith("(and 1 more failing: host1)")
    assert "\n" not in error.message


def test_all_ok_is_no_error() -> None:
    hosts, _ = _run(SETUP, FOLDERS)
    del hosts["gone"], hosts["host1"]
    assert PlaybookResult(playbook="p.yml", hosts=hosts, rc=0).error() is None


INVENTORY = Inventory(
    hosts={
        "a": Host(address="10.0.0.1", key_file="/k"),
        "b": Host(address="10.0.0.2", agent=True),
        "c": Host(address="10.0.0.3", key_file="/k"),
    },
    groups={"gpu": ["c", "a"]},
)


def test_only_hosts_with_a_key_file_offer_that_key_only() -> None:
    rendered = _with_ssh_options(INVENTORY.to_ansible())
    hosts = rendered["all"]["hosts"]
    assert hosts["a"]["ansible_ssh_extra_args"] == "-o IdentitiesOnly=yes"
    assert "ansible_ssh_extra_args" not in hosts["b"]
    results = _host_results(rendered, ["c", "a"])
    assert [(r.name, r.address, r.key_file) for r in results.values()] == [
        ("c", "10.0.0.3", "/k"),
        ("a", "10.0.0.1", "/k"),
    ]


@pytest.mark.parametrize(
    ("hosts", "group", "expected"),
    [
        (None, None, ["a", "b", "c"]),
        (["b", "a"], None, ["b", "a"]),
        (None, "gpu", ["c", "a"]),
    ],
)
def test_select_hosts(hosts: list[str] | None, group: str | None, expected: list[str]) -> None:
    assert select_hosts(INVENTORY, hosts, group) == expected


@pytest.mark.parametrize(
    ("hosts", "group", "message"),
    [
        (["a", "x"], None, "--hosts: unknown host 'x'"),
        (["a", "a"], None, "--hosts: host 'a' is listed twice"),
        (None, "cpu", "--group: unknown group 'cpu'"),
    ],
)
def test_select_hosts_errors_name_the_option(
    hosts: list[str] | None, group: str | None, message: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        select_hosts(INVENTORY, hosts, group)
    assert caught.value.message == message
