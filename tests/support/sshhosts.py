"""Real SSH hosts for tests: one network namespace, one address and one sshd per host.

``ssh_hosts(count, workdir)`` starts ``count`` hosts in about a second and tears them all down on
exit, even when the body or the start-up fails::

    with ssh_hosts(2, tmp_path) as hosts:
        subprocess.run(hosts[0].ssh_argv("ip", "-o", "addr"), check=True)

What a host is: a *network identity*, not an OS image. Each host is a network namespace
(``ip netns add``) joined by a veth pair to a bridge in the root namespace, with its own address in
a private /24 (``10.231.N.0/24``, N picked free at start; the bridge holds ``10.231.N.1``), ``lo``
up, and its own sshd (``ip netns exec NS /usr/sbin/sshd -D ...``) listening on that address only,
port 22, accepting ``root`` with one ed25519 key generated for the run. All hosts share this
machine's filesystem, users and processes: a command run "on" a host runs here, as root, only with
the host's network view. So that provisioning can still tell hosts apart, each host has its own
writable directory ``host.root`` (a provisioning role can be told to install under it), and sshd
exports ``DEPLOYER_HOST_NAME`` and ``DEPLOYER_HOST_ROOT`` to every session on that host.

Traffic: the hosts get no default route and the root namespace adds only the bridge's /24 route, so
tests talk only to addresses inside namespaces they created. ``unreachable_address()`` is an
address in that /24 with nothing behind it (an ssh to it times out on the bridge).

Needs root, iproute2 and openssh-server/-client (``scripts/ssh-test-hosts-setup.sh`` installs them).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_PREFIX = "10.231"  # 10.231.N.0/24; RFC 1918, chosen to be unlikely to clash
SSHD = "/usr/sbin/sshd"
LOCK_DIR = Path("/run/deployer-sshhosts")
BRIDGE_ADDRESS_HOST = 1  # 10.231.N.1 on the bridge, in the root namespace
FIRST_HOST = 10  # hosts are 10.231.N.10, .11, ...
UNREACHABLE_HOST = 254  # nothing is ever behind 10.231.N.254
MAX_HOSTS = 200
START_TIMEOUT = 10.0


class SshHostsError(RuntimeError):
    """The hosts could not be set up (missing tool, not root, sshd did not come up)."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SshHostsError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc


def _ssh_base_argv(key_file: Path, connect_timeout: int) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",  # no user or system client config: the same behaviour everywhere
        "-i",
        str(key_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={connect_timeout}",
    ]


@dataclass
class SshHost:
    """One host: ssh ``user@address:port`` with ``key_file``; ``run`` runs inside its netns."""

    name: str
    address: str
    namespace: str
    root: Path
    key_file: Path
    unauthorized_key_file: Path
    authorized_keys_file: Path
    port: int = 22
    user: str = "root"
    sshd_log: Path = field(default=Path("/dev/null"))

    def run(
        self, argv: Sequence[str], *, check: bool = False, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host's network namespace (not over ssh), capturing text output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def ssh_argv(
        self, *command: str, key_file: Path | None = None, connect_timeout: int = 5
    ) -> list[str]:
        """An ``ssh`` command line that runs ``command`` on this host as ``user``.

        ``command`` is an argv: it is shell-quoted, so the remote shell sees the same words (use
        ``("sh", "-c", script)`` for shell syntax).
        """
        return [
            *_ssh_base_argv(key_file or self.key_file, connect_timeout),
            "-p",
            str(self.port),
            f"{self.user}@{self.address}",
            *([shlex.join(command)] if command else []),
        ]

    def ssh(
        self,
        *command: str,
        key_file: Path | None = None,
        connect_timeout: int = 5,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on this host over real ssh; returns the completed process."""
        return subprocess.run(
            self.ssh_argv(*command, key_file=key_file, connect_timeout=connect_timeout),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def reject_key(self) -> None:
        """From now on this host refuses every key, the run's good key included."""
        self.authorized_keys_file.write_text("")

    def accept_key(self, public_key_file: Path | None = None) -> None:
        """Authorize ``public_key_file`` (default: the run's good key's ``.pub``) on this host."""
        pub = public_key_file or self.key_file.with_name(self.key_file.name + ".pub")
        self.authorized_keys_file.write_text(pub.read_text())

    def inventory_vars(self) -> dict[str, str | int]:
        """Ansible host variables that reach this host."""
        return {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key_file),
            "ansible_ssh_common_args": (
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            ),
            "deployer_host_root": str(self.root),
        }


@dataclass
class _Subnet:
    index: int
    lock_fd: int

    @property
    def bridge(self) -> str:
        return f"dpshb{self.index}"

    def address(self, host: int) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.{host}"

    def namespace(self, i: int) -> str:
        return f"deployer-sshhost-{self.index}-{i}"

    def veth(self, i: int) -> str:
        return f"dpsh{self.index}v{i}"  # <= 15 chars: dpsh255v199


def _require_tools() -> None:
    if os.geteuid() != 0:
        raise SshHostsError("ssh_hosts needs root (network namespaces, veth, bridge)")
    for tool in (SSHD, "ssh", "ssh-keygen", "ip"):
        if shutil.which(tool) is None:
            raise SshHostsError(f"{tool} not found: run scripts/ssh-test-hosts-setup.sh")


def _stale_namespaces(index: int) -> list[str]:
    prefix = f"deployer-sshhost-{index}-"
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _kill_namespace_processes(namespace: str) -> None:
    pids = _run(["ip", "netns", "pids", namespace], check=False).stdout.split()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
                alive.append(pid)
        if not alive:
            return
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
            if not alive:
                return
            time.sleep(0.02)
        pids = alive


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _delete_namespace(namespace: str) -> None:
    _kill_namespace_processes(namespace)
    _run(["ip", "netns", "del", namespace], check=False)


def _delete_link(name: str) -> None:
    if Path(f"/sys/class/net/{name}").exists():
        _run(["ip", "link", "del", name], check=False)


def _cleanup_subnet(subnet: _Subnet) -> None:
    """Remove whatever a crashed earlier run left on this subnet (we hold its lock now)."""
    for namespace in _stale_namespaces(subnet.index):
        _delete_namespace(namespace)
    for i in range(MAX_HOSTS):
        _delete_link(subnet.veth(i))
    _delete_link(subnet.bridge)


def _leftover_indexes() -> set[int]:
    """Subnet indexes that still have our namespaces or bridges (live runs' or crashed runs')."""
    found: set[int] = set()
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        parts = line.split()[0].split("-") if line.strip() else []
        if len(parts) == 4 and parts[:2] == ["deployer", "sshhost"] and parts[2].isdigit():
            found.add(int(parts[2]))
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith("dpshb") and link.name[5:].isdigit():
            found.add(int(link.name[5:]))
    return found


def reap_leftovers() -> list[int]:
    """Remove what runs that died without teardown (SIGKILL) left; returns the subnets cleaned.

    A subnet whose lock its run still holds is left alone.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    cleaned = []
    for index in sorted(_leftover_indexes()):
        fd = os.open(LOCK_DIR / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            _cleanup_subnet(_Subnet(index, fd))
            cleaned.append(index)
        finally:
            os.close(fd)
    return cleaned


def _claim_subnet() -> _Subnet:
    """Lock a free 10.231.N.0/24 for this run; a lock dies with its process, so none leaks."""
    reap_leftovers()
    for index in range(256):
        fd = os.open(LOCK_DIR / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        subnet = _Subnet(index, fd)
        _cleanup_subnet(subnet)
        if _subnet_in_use(index):  # someone else's interface or route: leave that subnet alone
            os.close(fd)
            continue
        return subnet
    raise SshHostsError(f"no free {SUBNET_PREFIX}.N.0/24 subnet")


def _subnet_in_use(index: int) -> bool:
    ours = ipaddress.ip_network(f"{SUBNET_PREFIX}.{index}.0/24")
    out = _run(["ip", "-4", "-o", "route", "show", "table", "all"], check=False).stdout
    out += _run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    for token in out.split():
        if "/" not in token and not token[:1].isdigit():
            continue
        try:
            net = ipaddress.ip_network(token, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0 and net.overlaps(ours):
            return True
    return False


def _keygen(path: Path, comment: str) -> Path:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    return path


def _sshd_config(host: SshHost, host_key: Path, pid_file: Path) -> str:
    return "\n".join(
        [
            f"ListenAddress {host.address}",
            f"Port {host.port}",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"AuthorizedKeysFile {host.authorized_keys_file}",
            # Other users than root cannot read the file above inside the tests' private folder:
            # sshd reads it for them as root through this command.
            f"AuthorizedKeysCommand /bin/cat {host.authorized_keys_file}",
            "AuthorizedKeysCommandUser root",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100:30:200",
            "Subsystem sftp internal-sftp",
            f"SetEnv DEPLOYER_HOST_NAME={host.name} DEPLOYER_HOST_ROOT={host.root}",
            "",
        ]
    )


def _wait_listening(hosts: list[SshHost], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(zip(hosts, procs, strict=True))
    while pending:
        still = []
        for host, proc in pending:
            if proc.poll() is not None:
                log = host.sshd_log.read_text(errors="replace").strip()
                raise SshHostsError(f"sshd for {host.name} exited {proc.returncode}: {log}")
            try:
                with socket.create_connection((host.address, host.port), timeout=0.5) as sock:
                    sock.settimeout(2)
                    if not sock.recv(64).startswith(b"SSH-"):
                        still.append((host, proc))
            except OSError:
                still.append((host, proc))
        pending = still
        if pending:
            if time.monotonic() > deadline:
                names = ", ".join(h.name for h, _ in pending)
                raise SshHostsError(f"sshd did not answer within {START_TIMEOUT}s on {names}")
            time.sleep(0.02)


_current_subnet: list[int] = []


def unreachable_address() -> str:
    """An address in the running hosts' subnet with nothing behind it (use inside ``ssh_hosts``)."""
    if not _current_subnet:
        raise SshHostsError("unreachable_address() is only meaningful inside ssh_hosts()")
    return f"{SUBNET_PREFIX}.{_current_subnet[-1]}.{UNREACHABLE_HOST}"


@contextlib.contextmanager
def ssh_hosts(count: int, workdir: Path, user: str = "root") -> Iterator[list[SshHost]]:
    """Start ``count`` SSH hosts (netns + sshd each) with their files in ``workdir``; clients log
    in as ``user`` (an account of this machine: the hosts share its users)."""
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"count must be 1..{MAX_HOSTS}, got {count}")
    _require_tools()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = _keygen(workdir / "id_ed25519", "deployer-test")
    unauthorized_key = _keygen(workdir / "id_ed25519_unauthorized", "deployer-test-unauthorized")

    with contextlib.ExitStack() as undo:
        subnet = _claim_subnet()
        undo.callback(os.close, subnet.lock_fd)
        undo.callback(_cleanup_subnet, subnet)  # runs before the lock is released
        undo.callback(_current_subnet.remove, subnet.index)
        _current_subnet.append(subnet.index)

        bridge = subnet.bridge
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        undo.callback(_delete_link, bridge)
        _disable_ipv6(bridge)
        _run(["ip", "addr", "add", f"{subnet.address(BRIDGE_ADDRESS_HOST)}/24", "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])

        hosts: list[SshHost] = []
        for i in range(count):
            name = f"host{i}"
            hostdir = workdir / "hosts" / name
            (hostdir / "root").mkdir(parents=True, exist_ok=True)
            host = SshHost(
                name=name,
                address=subnet.address(FIRST_HOST + i),
                namespace=subnet.namespace(i),
                root=hostdir / "root",
                key_file=key_file,
                unauthorized_key_file=unauthorized_key,
                authorized_keys_file=hostdir / "authorized_keys",
                sshd_log=hostdir / "sshd.log",
                user=user,
            )
            host.accept_key()
            _make_namespace(host, subnet.veth(i), bridge, undo.callback)
            hosts.append(host)

        procs: list[subprocess.Popen[bytes]] = []
        for host in hosts:
            hostdir = host.root.parent
            host_key = _keygen(hostdir / "ssh_host_ed25519_key", f"{host.name}-hostkey")
            config = hostdir / "sshd_config"
            config.write_text(_sshd_config(host, host_key, hostdir / "sshd.pid"))
            _run([SSHD, "-t", "-f", str(config)])
            with host.sshd_log.open("wb") as log:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", host.namespace, SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            undo.callback(_stop, proc)
            procs.append(proc)
        _wait_listening(hosts, procs)
        yield hosts


def _disable_ipv6(link: str, namespace: str | None = None) -> None:
    # Keep the test network IPv4 only and quiet: no router solicitations or MLD reports.
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    _run([*prefix, "sysctl", "-q", "-w", f"net.ipv6.conf.{link}.disable_ipv6=1"], check=False)


def _make_namespace(host: SshHost, veth: str, bridge: str, on_exit: Callable[..., object]) -> None:
    ns = host.namespace
    _run(["ip", "netns", "add", ns])
    # Undo runs last-in first-out: the namespace's processes die (their TCP connections closing
    # over the still-present veth, so clients see the close) before the veth goes.
    on_exit(_delete_link, veth)
    on_exit(_delete_namespace, ns)
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    _disable_ipv6(veth)
    _run(["ip", "link", "set", veth, "master", bridge])
    _run(["ip", "link", "set", veth, "up"])
    inside = ["ip", "-n", ns]
    _disable_ipv6("eth0", ns)
    _run([*inside, "link", "set", "lo", "up"])
    _run([*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"])
    _run([*inside, "link", "set", "eth0", "up"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
