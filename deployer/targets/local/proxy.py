"""HAProxy in front of a local deployment: the published port never changes across rollouts.

Each local deployment has its own HAProxy (Debian's package, not the system service), in
master-worker mode, supervised by deployer's agent like the engine (restarted when it dies), with
its files in ``<home>/deployments/<name>/proxy/``: ``haproxy.cfg``, ``haproxy.sock`` (the
runtime API, mode 0600, admin level), ``haproxy.log`` and the supervisor's ``launch.json`` and
``supervisor.json``; ``proxy.json`` in the deployment's folder records the supervisor. A Unix
socket's path may not be longer than 107 bytes, which a deep home exceeds: HAProxy names the
socket relative to its working directory (the proxy's folder) and deployer connects through
``/proc/self/fd/N/haproxy.sock``, ``N`` a descriptor of that folder.

HAProxy listens on the deployment's published port and forwards to one of two servers of the
backend ``engines``: ``a`` and ``b``, the two slots a surge rollout alternates between. It is an
HTTP forwarder (``mode http``) with ``option http-server-close``: the client's connection ends at
HAProxy, which stays up, and every request is routed on its own, so after a switch the next
request of a kept-alive client goes to the new engine while requests in flight, streamed ones
included, finish on the old one (HAProxy forwards a response's chunks as they come, nothing
buffers an SSE stream). The API key stays the engine's business: HAProxy passes the header on.

A switch needs no reload: the runtime API points the new slot at its port, makes it ready and
drains the old one (:func:`switch_commands`); the old engine stops once HAProxy counts no
session on it. The config file is rewritten to match, so a restarted HAProxy comes back the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from deployer import atomic, runner
from deployer.agent.supervisor import MODULE as SUPERVISOR_MODULE
from deployer.errors import CommandError, EngineNotInstalledError

#: The backend and its two servers, one per slot.
BACKEND = "engines"
SLOTS = ("a", "b")
#: Files in the proxy's folder, and the record in the deployment's folder.
FOLDER = "proxy"
CONFIG = "haproxy.cfg"
SOCKET = "haproxy.sock"
LOG = "haproxy.log"
RECORD = "proxy.json"
#: A placeholder port for a slot no engine has used yet (the server stays in maintenance).
UNUSED_PORT = 9
#: How long a streamed answer may go quiet, and a client's connection sit idle between requests.
STREAM_IDLE = "10m"


@dataclass(frozen=True)
class ProxyConfig:
    """What a deployment's HAProxy does: listen on ``bind_host:port``, forward to the engine
    of the ``active`` slot on ``engine_host`` at its port in ``servers``."""

    deployment: str
    bind_host: str
    port: int
    servers: Mapping[str, int]
    active: str
    engine_host: str = "127.0.0.1"


def other(slot: str) -> str:
    """The slot a new engine starts in beside the one in ``slot``."""
    return "b" if slot == "a" else "a"


def render(config: ProxyConfig) -> str:
    """``haproxy.cfg`` for ``config``: deterministic text, every server of the backend with its
    port, the inactive one in maintenance (``disabled``)."""
    bind = f"[{config.bind_host}]" if ":" in config.bind_host else config.bind_host
    lines = [
        f"# Written by deployer for {config.deployment}: HAProxy publishes {bind}:{config.port}",
        "# and forwards to the engine of the active slot. Do not edit: apply rewrites it.",
        "global",
        "    master-worker",
        # Relative to HAProxy's working directory, the proxy's folder (see the module's doc).
        f"    stats socket unix@./{SOCKET} mode 600 level admin",
        "    stats timeout 30s",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        # Each request routed on its own: a switch applies from the next request on.
        "    option http-server-close",
        "    retries 3",
        "    option redispatch 1",
        "    timeout connect 5s",
        f"    timeout client {STREAM_IDLE}",
        f"    timeout server {STREAM_IDLE}",
        "    timeout http-request 60s",
        "    timeout http-keep-alive 60s",
        "    timeout queue 30s",
        "",
        "frontend published",
        f"    bind {bind}:{config.port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
    ]
    for slot in SLOTS:
        port = config.servers.get(slot, UNUSED_PORT)
        state = "" if slot == config.active else " disabled"
        lines.append(f"    server {slot} {config.engine_host}:{port}{state}")
    return "\n".join(lines) + "\n"


def switch_commands(new: str, port: int, old: str, host: str = "127.0.0.1") -> list[str]:
    """Runtime API commands that move traffic to slot ``new`` on ``port`` and drain ``old``
    (its requests in flight finish there, no new one goes to it). Ready before drain: the
    backend always has a server."""
    return [
        f"set server {BACKEND}/{new} addr {host} port {port}",
        f"set server {BACKEND}/{new} state ready",
        f"set server {BACKEND}/{old} state drain",
    ]


def retire_command(old: str) -> str:
    """The command that puts a drained slot in maintenance once its engine stops."""
    return f"set server {BACKEND}/{old} state maint"


def sessions(stat_csv: str) -> dict[str, int]:
    """Current sessions (``scur``) per server of :data:`BACKEND`, from ``show stat``'s CSV."""
    lines = stat_csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise CommandError(f"HAProxy's show stat answered {stat_csv[:80]!r}")
    header = lines[0][2:].split(",")
    name, server, current = header.index("pxname"), header.index("svname"), header.index("scur")
    found = {}
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) > current and cells[name] == BACKEND and cells[server] in SLOTS:
            found[cells[server]] = int(cells[current] or 0)
    return found


#: Words HAProxy's runtime API answers a refused command with.
_REFUSALS = ("No such", "Unknown command", "Require", "denied", "Invalid", "invalid", "expects")


class RuntimeApi:
    """HAProxy's runtime API over its Unix socket: one command per connection."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def ask(self, command: str) -> str:
        """``command``'s answer; raises CommandError when the socket does not answer."""
        folder = None
        try:
            folder = os.open(self.path.parent, os.O_PATH | os.O_DIRECTORY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                # Short whatever the folder's depth: sun_path holds at most 107 bytes.
                sock.connect(f"/proc/self/fd/{folder}/{self.path.name}")
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise CommandError(
                f"HAProxy's runtime API at {self.path} did not answer {command!r}: {exc}"
            ) from exc
        finally:
            if folder is not None:
                os.close(folder)
        return b"".join(chunks).decode(errors="replace")

    def run(self, command: str) -> str:
        """Run ``command``; raises CommandError when HAProxy refuses it."""
        answer = self.ask(command)
        if any(word in answer for word in _REFUSALS):
            raise CommandError(f"HAProxy refused {command!r}: {answer.strip()}")
        return answer

    def sessions(self) -> dict[str, int]:
        return sessions(self.ask("show stat"))


class Proxy:
    """One deployment's HAProxy process: started under deployer's supervisor, observed through
    ``proxy.json`` (the supervisor's pid and start time: no pid reuse), stopped with it."""

    def __init__(self, deployment_dir: Path) -> None:
        self.root = deployment_dir
        self.dir = deployment_dir / FOLDER
        self.socket = self.dir / SOCKET

    @property
    def api(self) -> RuntimeApi:
        return RuntimeApi(self.socket)

    def record(self) -> dict[str, Any] | None:
        """``proxy.json`` when its supervisor still runs, else None."""
        data = read_json(self.root / RECORD)
        if data is None or _process(data.get("supervisor_pid"), data.get("create_time")) is None:
            return None
        return data

    def write_config(self, config: ProxyConfig) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / CONFIG
        atomic.write_text(path, render(config))
        return path

    def start(self, config: ProxyConfig, wait: float = 10.0) -> int:
        """Start HAProxy for ``config`` under a supervisor; returns the supervisor's pid once
        the runtime API answers. Raises EngineNotInstalledError without HAProxy and
        CommandError for a config HAProxy refuses or a process that does not come up."""
        binary = haproxy_binary()
        path = self.write_config(config)
        runner.run([binary, "-c", "-q", "-f", path])
        self.socket.unlink(missing_ok=True)
        atomic.write_json(
            self.dir / "launch.json",
            {
                "argv": [binary, "-W", "-db", "-f", str(path)],
                "env": {},
                "log": LOG,
                "stop_timeout": 5,
            },
        )
        (self.dir / "supervisor.json").unlink(missing_ok=True)
        proc = runner.spawn_detached(
            [sys.executable, "-m", SUPERVISOR_MODULE, str(self.dir)],
            log=self.dir / "supervisor.log",
            cwd=self.dir,
        )
        atomic.write_json(
            self.root / RECORD,
            {
                "supervisor_pid": proc.pid,
                "create_time": psutil.Process(proc.pid).create_time(),
                "host": config.bind_host,
                "port": config.port,
            },
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.socket.exists():
                with contextlib.suppress(CommandError):
                    self.api.ask("show info")
                    return proc.pid
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise CommandError(
            f"HAProxy for {config.deployment} did not start",
            hint=f"see {self.dir / LOG}",
        )

    def stop(self) -> bool:
        """Stop HAProxy and its supervisor (the published port is free after); False when
        neither ran."""
        data = read_json(self.root / RECORD) or {}
        supervisor = _process(data.get("supervisor_pid"), data.get("create_time"))
        (self.root / RECORD).unlink(missing_ok=True)
        if supervisor is None:
            return False
        with contextlib.suppress(psutil.Error):
            children = supervisor.children(recursive=True)
            supervisor.terminate()
            supervisor.wait(timeout=15)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        with contextlib.suppress(psutil.Error):
            if supervisor.is_running():
                supervisor.kill()
        return True


def haproxy_binary() -> str:
    """HAProxy on PATH (or in /usr/sbin, where Debian puts it); EngineNotInstalledError
    saying how to install it otherwise."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise EngineNotInstalledError(
            "HAProxy is not installed: the local target publishes each deployment through it",
            hint="./setup.sh installs it, or: apt-get install -y haproxy",
        )
    return found


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _process(pid: object, create_time: object) -> psutil.Process | None:
    if not isinstance(pid, int) or not isinstance(create_time, float | int):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - create_time) > 0.01:
            return None
        return proc
    except psutil.Error:
        return None
