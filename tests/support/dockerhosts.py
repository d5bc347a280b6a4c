"""Fresh SSH hosts as Docker containers, started through testcontainers.

Each host is a container of a minimal Debian 12 image (``mmdebstrap --variant=minbase`` with
sshd, python3, python3-apt, tini, iproute2, procps and sudo; no python3-venv, no libnuma), the
kind of bare host an operator gets: deployer has to bring everything else. The container's ports
22 and 8000 are published on this machine's loopback only (random ports), as a host behind NAT.

Docker: the tests start ``dockerd`` when none answers (``scripts/ssh-test-hosts-setup.sh``
installs ``docker.io`` and ``mmdebstrap``) and stop it afterwards, restoring the iptables rules
and ``ip_forward`` it changes. The image is built once per machine (about a minute) and kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE = "deployer-test-host:bookworm-1"
PACKAGES = "openssh-server,python3,python3-apt,tini,iproute2,procps,sudo"
SSHD = (
    "mkdir -p /run/sshd && chmod 700 /root/.ssh && ssh-keygen -A >/dev/null"
    " && exec /usr/sbin/sshd -D -e"
)

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")


class DockerHostsError(RuntimeError):
    """Docker or the host image is not available; the message says what to run."""


@dataclass
class ContainerHost:
    name: str
    ssh_port: int
    engine_port: int
    key_file: Path
    container: Any

    def exec(self, command: str) -> str:
        code, output = self.container.exec(["sh", "-c", command])
        if code != 0:
            raise DockerHostsError(f"{command} failed in {self.name}: {output.decode()}")
        return str(output.decode())


def _docker_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    )


@contextlib.contextmanager
def docker_engine(workdir: Path) -> Iterator[None]:
    """A running Docker engine for the block; one this started is stopped afterwards."""
    if _docker_answers():
        yield
        return
    if shutil.which("dockerd") is None:
        raise DockerHostsError("dockerd is missing: run bash scripts/ssh-test-hosts-setup.sh")
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    log = (workdir / "dockerd.log").open("wb")
    daemon = subprocess.Popen(
        ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not _docker_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise DockerHostsError(f"dockerd did not start; see {workdir / 'dockerd.log'}")
            time.sleep(0.5)
        yield
    finally:
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=30)
        log.close()
        if iptables.returncode == 0:
            subprocess.run(["iptables-restore"], input=iptables.stdout, text=True, check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)


def ensure_image() -> str:
    """The minimal host image, built with mmdebstrap the first time."""
    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    if found.returncode == 0:
        return IMAGE
    if shutil.which("mmdebstrap") is None:
        raise DockerHostsError("mmdebstrap is missing: run bash scripts/ssh-test-hosts-setup.sh")
    with tempfile.TemporaryDirectory(prefix="deployer-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        # Into a folder first: piping mmdebstrap's tar straight into docker can kill the shell.
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--skip=cleanup/apt/lists",  # Ansible's apt module needs the lists
                f"--include={PACKAGES}",
                "bookworm",
                str(rootfs),
            ],
            check=True,
            capture_output=True,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", IMAGE], stdin=tar.stdout, check=True)
        tar.wait()
    return IMAGE


@contextlib.contextmanager
def container_hosts(count: int, workdir: Path) -> Iterator[list[ContainerHost]]:
    """``count`` fresh hosts reachable over ssh as root with the key ``workdir/id_ed25519``."""
    from testcontainers.core.container import DockerContainer

    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key.with_suffix(".pub").chmod(0o644)
    image = ensure_image()
    started: list[ContainerHost] = []
    try:
        for i in range(count):
            container = (
                DockerContainer(image)
                .with_command(["/usr/bin/tini", "--", "sh", "-c", SSHD])
                .with_volume_mapping(
                    str(key.with_suffix(".pub")), "/root/.ssh/authorized_keys", "ro"
                )
                .with_kwargs(shm_size="1g")
            )
            # Published on this machine's loopback only, at random ports (docker's (ip, port)).
            container.ports.update({22: ("127.0.0.1", None), 8000: ("127.0.0.1", None)})
            container.start()
            started.append(
                ContainerHost(
                    name=f"box{i}",
                    ssh_port=int(container.get_exposed_port(22)),
                    engine_port=int(container.get_exposed_port(8000)),
                    key_file=key,
                    container=container,
                )
            )
        for host in started:
            _wait_ssh(host)
        yield started
    finally:
        for host in started:
            with contextlib.suppress(Exception):
                host.container.stop()


def _wait_ssh(host: ContainerHost) -> None:
    deadline = time.monotonic() + 30
    argv = [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=2",
        "-i", str(host.key_file), "-p", str(host.ssh_port), "root@127.0.0.1", "true",
    ]  # fmt: skip
    while subprocess.run(argv, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise DockerHostsError(f"sshd in {host.name} did not answer on port {host.ssh_port}")
        time.sleep(0.5)
