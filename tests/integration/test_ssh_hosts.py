"""The SSH hosts that provisioning tests will use: real sshd in network namespaces.

Every address these tests reach is inside a namespace they created (10.231.N.0/24 on a bridge of
their own); nothing else is contacted.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.sshhosts import (
    SUBNET_PREFIX,
    SshHost,
    reap_leftovers,
    ssh_hosts,
    unreachable_address,
)

ROOT = Path(__file__).resolve().parents[2]


def _assert_test_address(address: str) -> None:
    """Guard: the only addresses these tests may reach are the hosts' test subnet."""
    assert ipaddress.ip_address(address) in ipaddress.ip_network(f"{SUBNET_PREFIX}.0.0/16"), address


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _link_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def _leftovers(index: int) -> set[str]:
    """Namespaces and links of subnet ``index`` (other runs may use other subnets meanwhile)."""
    namespaces = {n for n in _netns_names() if n.startswith(f"deployer-sshhost-{index}-")}
    links = {
        link
        for link in _link_names()
        if link == f"dpshb{index}" or link.startswith(f"dpsh{index}v")
    }
    return namespaces | links


def _subnet_index(host: SshHost) -> int:
    return int(host.address.split(".")[2])


def _sshd_pids_under(workdir: Path) -> list[int]:
    """Listening sshd processes started with a config file under ``workdir``."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "sshd" in cmdline and str(workdir) in cmdline:
            pids.append(proc.pid)
    return pids


def _netns_inode(namespace: str) -> int:
    return Path(f"/run/netns/{namespace}").stat().st_ino


def _pids_in_netns(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes`` (sessions included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns" / "net").stat().st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sshhosts")


@pytest.fixture(scope="module")
def hosts(workdir: Path) -> Iterator[list[SshHost]]:
    started = time.monotonic()
    with ssh_hosts(2, workdir) as running:
        elapsed = time.monotonic() - started
        print(f"2 ssh hosts up in {elapsed:.2f}s")
        assert elapsed < 10
        for host in running:
            _assert_test_address(host.address)
        yield running


def test_each_host_runs_commands_over_ssh_inside_its_own_namespace(hosts: list[SshHost]) -> None:
    assert len({h.address for h in hosts}) == 2
    assert len({h.namespace for h in hosts}) == 2
    for host in hosts:
        result = host.ssh("ip", "-4", "-o", "addr", "show")
        assert result.returncode == 0, result.stderr
        assert f"inet {host.address}/24" in result.stdout
        others = [h.address for h in hosts if h is not host]
        assert not any(f"inet {other}/" in result.stdout for other in others)
        # The ssh session is a process in the host's namespace: its netns matches `run`'s.
        over_ssh = host.ssh("readlink", "/proc/self/ns/net").stdout.strip()
        direct = host.run(["readlink", "/proc/self/ns/net"], check=True).stdout.strip()
        assert over_ssh == direct
        assert over_ssh != Path("/proc/self/ns/net").readlink().as_posix()


def test_run_executes_in_the_namespace(hosts: list[SshHost]) -> None:
    for host in hosts:
        out = host.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
        assert f"inet {host.address}/24" in out
        routes = host.run(["ip", "-4", "route"], check=True).stdout
        assert "default" not in routes  # a host can reach only the test subnet


def test_sessions_know_their_host_and_its_private_root(hosts: list[SshHost]) -> None:
    for host in hosts:
        assert host.root.is_dir()
        result = host.ssh("sh", "-c", 'echo "$DEPLOYER_HOST_NAME $DEPLOYER_HOST_ROOT"; id -un')
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.name, str(host.root), "root"]
        # Writable through ssh, and separate per host.
        marker = host.ssh("sh", "-c", 'echo "$DEPLOYER_HOST_NAME" > "$DEPLOYER_HOST_ROOT/marker"')
        assert marker.returncode == 0, marker.stderr
        assert (host.root / "marker").read_text().strip() == host.name
    assert len({h.root for h in hosts}) == len(hosts)


def test_key_files_are_private(hosts: list[SshHost]) -> None:
    for host in hosts:
        assert host.key_file.stat().st_mode & 0o777 == 0o600
        assert host.unauthorized_key_file.stat().st_mode & 0o777 == 0o600


def test_an_unauthorized_key_is_refused(hosts: list[SshHost]) -> None:
    for host in hosts:
        result = host.ssh("true", key_file=host.unauthorized_key_file)
        assert result.returncode == 255
        assert "Permission denied" in result.stderr


def test_a_host_can_be_told_to_reject_the_good_key(hosts: list[SshHost]) -> None:
    host = hosts[1]
    host.reject_key()
    try:
        refused = host.ssh("true")
        assert refused.returncode == 255
        assert "Permission denied" in refused.stderr
        assert hosts[0].ssh("true").returncode == 0  # the other host is unaffected
    finally:
        host.accept_key()
    assert host.ssh("true").returncode == 0


def test_an_unreachable_address_times_out_quickly(hosts: list[SshHost]) -> None:
    address = unreachable_address()
    _assert_test_address(address)
    assert address not in {h.address for h in hosts}
    argv = hosts[0].ssh_argv("true", connect_timeout=2)
    argv[argv.index(f"root@{hosts[0].address}")] = f"root@{address}"
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 255
    assert "timed out" in result.stderr or "No route to host" in result.stderr, result.stderr
    assert elapsed < 6


def test_teardown_leaves_no_namespace_link_or_sshd(tmp_path: Path) -> None:
    with ssh_hosts(2, tmp_path) as running:
        index = _subnet_index(running[0])
        namespaces = {h.namespace for h in running}
        inodes = {_netns_inode(ns) for ns in namespaces}
        assert namespaces <= _netns_names()
        created_links = _leftovers(index) - namespaces
        assert len(created_links) == 3  # a bridge and two veths
        assert len(_sshd_pids_under(tmp_path)) == 2
        listeners = set(_pids_in_netns(inodes))
        # An open session must not keep anything alive after teardown.
        argv = running[0].ssh_argv("sleep", "60")
        # If the server's FIN is lost with its link under load, keepalives still end the client.
        argv[1:1] = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"]
        session = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not set(_pids_in_netns(inodes)) - listeners - {session.pid}:
            assert time.monotonic() < deadline, "the ssh session never started"
            time.sleep(0.05)
    try:
        assert session.wait(timeout=30) == 255  # the server side is gone
        assert not namespaces & _netns_names()
        assert not created_links & _link_names()
        assert _sshd_pids_under(tmp_path) == []
        assert _pids_in_netns(inodes) == []
    finally:
        if session.poll() is None:
            session.kill()
    assert _leftovers(index) == set()


def _fail_inside_hosts(workdir: Path, indexes: list[int]) -> None:
    with ssh_hosts(1, workdir) as running:
        indexes.append(_subnet_index(running[0]))
        assert _leftovers(indexes[0])
        raise RuntimeError("boom")


def test_teardown_runs_when_the_body_fails(tmp_path: Path) -> None:
    indexes: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        _fail_inside_hosts(tmp_path, indexes)
    assert _leftovers(indexes[0]) == set()
    assert _sshd_pids_under(tmp_path) == []


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.support.sshhosts import ssh_hosts\n"
        "with ssh_hosts(1, Path(sys.argv[1])) as hosts:\n"
        "    print(hosts[0].namespace, flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        namespace = child.stdout.readline().strip()
        assert namespace in _netns_names()
        index = int(namespace.split("-")[2])
        assert index not in reap_leftovers()  # a live run's hosts are not touched
        assert namespace in _netns_names()
    finally:
        child.send_signal(signal.SIGKILL)  # no teardown runs
        child.wait(timeout=10)
    assert namespace in _netns_names()
    assert len(_leftovers(index)) == 3  # namespace, bridge, veth
    assert len(_sshd_pids_under(tmp_path)) == 1
    assert index in reap_leftovers()
    assert _leftovers(index) == set()
    assert _sshd_pids_under(tmp_path) == []


def test_ansible_is_not_required() -> None:
    # The hosts are plain sshd: nothing here imports or needs Ansible (issue 5 adds it).
    code = (
        "import sys; sys.modules['ansible'] = None; sys.modules['ansible_runner'] = None\n"
        "import tests.support.sshhosts\n"
        "assert not [m for m in sys.modules if m.startswith('ansible') and sys.modules[m]]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
