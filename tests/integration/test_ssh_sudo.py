"""A host reached as a non-root user with passwordless sudo, as most real hosts are ("ubuntu",
"ec2-user"): `provision` twice, then `apply` of the demo, `status`, `logs` and `destroy`.

The host also stands for one whose engine this machine reaches at another address, as a container
with a published port or a host behind NAT: a TCP forwarder on this machine's loopback (what
Docker's port publishing does) leads to the host's port 8000, and the inventory's ``endpoint``
label names the forwarder. The engine then binds every interface of the host.

The user ``deployer-ops`` is created by scripts/ssh-test-hosts-setup.sh (the hosts share this
machine's accounts). The plays run as root through sudo (become) and deployer's own ssh commands
read the root-owned deployment files with ``sudo -n``. The host uses the engine in deployer's
cache (label ``engine_python``); test_ssh_apply.py covers the install from the wheelhouse.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings
from tests.integration.cli import Result, deployer
from tests.integration.sshdemo import NAME, ask_capital, demo_on_ssh
from tests.support.sshhosts import SshHost, ssh_hosts

pytestmark = pytest.mark.engine
USER = "deployer-ops"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"no user {USER}: run bash scripts/ssh-test-hosts-setup.sh")
    with ssh_hosts(1, tmp_path_factory.mktemp("sshhosts"), user=USER) as started:
        yield started[0]


@pytest.fixture(scope="module")
def published(host: SshHost) -> Iterator[int]:
    """A loopback port of this machine forwarded to the host's port 8000."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((host.address, 8000), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, host: SshHost, published: int) -> Path:
    engine = find_engine(Settings.from_env(), default_package())
    folder = tmp_path_factory.mktemp("sudo")
    (folder / "hosts.yaml").write_text(
        "apiVersion: deployer/v1alpha1\n"
        "kind: Inventory\n"
        "hosts:\n"
        f"  {host.name}:\n"
        f"    address: {host.address}\n"
        f"    user: {USER}\n"
        f"    keyFile: {host.key_file}\n"
        f"    labels: {{host_root: {host.root}, engine_python: {engine.python},"
        f" endpoint: '127.0.0.1:{published}'}}\n"
    )
    demo_on_ssh(folder, f"kind: ssh\ninventory: hosts.yaml\nhosts: [{host.name}]")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def applied(folder: Path, home: Path) -> Iterator[Result]:
    yield deployer("apply", str(folder / "demo-ssh.yaml"), home=home, timeout=900)
    deployer("destroy", NAME, home=home)


def test_the_login_user_is_not_root(host: SshHost) -> None:
    assert host.ssh("id", "-un").stdout.strip() == USER


def test_provision_as_a_sudo_user_twice_changes_nothing_the_second_time(
    folder: Path, home: Path, host: SshHost
) -> None:
    first = deployer("provision", str(folder / "hosts.yaml"), home=home)
    assert first.code == 0, first.output
    # Root's folders, made through sudo.
    made = host.root / "opt" / "deployer" / "deployments"
    assert made.is_dir()
    assert made.stat().st_uid == 0
    second = deployer("provision", str(folder / "hosts.yaml"), home=home)
    assert second.code == 0, second.output
    assert "no changes: all 1 host(s) already provisioned" in second.stdout


def test_apply_as_a_sudo_user_answers_paris_at_the_published_endpoint(
    applied: Result, home: Path, host: SshHost, published: int
) -> None:
    assert applied.code == 0, applied.output
    # The smoke check went through the published port, the only address the label gives.
    assert "pass: chat: What is the capital of France?" in applied.stdout
    assert f"at http://127.0.0.1:{published}/v1" in applied.stdout
    run_dir = host.root / "opt" / "deployer" / "deployments" / NAME
    argv = json.loads((run_dir / "launch.json").read_text())["argv"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    key = deployer("key", NAME, home=home).stdout.strip()
    assert "Paris" in ask_capital(f"http://127.0.0.1:{published}/v1", key)


def test_status_and_logs_read_root_files_through_sudo(
    applied: Result, folder: Path, home: Path, host: SshHost
) -> None:
    # The deployment folder is root's alone: the login user cannot read it without sudo.
    run_dir = host.root / "opt" / "deployer" / "deployments" / NAME
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert host.ssh("cat", f"{run_dir}/runtime.json").returncode != 0
    [entry] = json.loads(deployer("status", NAME, "-o", "json", home=home).stdout)
    assert entry["healthy"] is True
    assert entry["replicas"][0]["starts"] == 1
    logs = deployer("logs", NAME, "-n", "400", home=home)
    assert logs.code == 0, logs.output
    assert "Starting vLLM server on http://0.0.0.0:8000" in logs.stdout
    again = deployer("apply", str(folder / "demo-ssh.yaml"), home=home)
    assert again.code == 0, again.output
    assert "deploy: skip: already running" in again.stdout
