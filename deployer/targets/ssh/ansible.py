"""Running an Ansible playbook on inventory hosts, through ansible-runner.

:func:`run_playbook` runs one playbook on every host of an inventory (or the hosts ``limit``
names), turns ansible-runner's events into deployer events as they arrive (one PROGRESS event per
task result, never a print), and returns what happened on each host: task counts, the failing task
and its message, and the facts the roles set. A failing or unreachable host never hides the
others' results: the playbook goes on with them and every host gets a :class:`HostResult`.

Files: ansible-runner's private data dir (inventory, artifacts of the last runs) is
``workdir/ansible``; ssh's known hosts are ``workdir/known_hosts``, trusted on first use
(``StrictHostKeyChecking=accept-new``), so a host whose key later changes is refused. ssh
connections are shared between tasks (ControlMaster) through sockets in a short-lived temporary
folder, closed when the run ends.

Blocks until the playbook ends. ``ansible_runner`` is imported here only, when a playbook runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from deployer import runner as commands
from deployer.errors import CommandError, ConcurrentRunError, DeployerError, PermanentError
from deployer.events import EventBus, EventKind
from deployer.targets.ssh.inventory import Inventory
from deployer.targets.ssh.transport import common_options

STEP = "provision"
#: Keep the artifacts (events, stdout) of this many runs in ``workdir/ansible/artifacts``.
KEEP_ARTIFACTS = 5
#: Facts the roles set that a result keeps: each role prefixes its variables with its name.
FACT_PREFIXES = ("gpu_node_", "model_server_")
_SET_FACT = ("ansible.builtin.set_fact", "set_fact")

Scalar = str | int | float | bool | None


class HostStatus(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"

    @property
    def is_failure(self) -> bool:
        return self in (HostStatus.FAILED, HostStatus.UNREACHABLE)


@dataclass
class HostResult:
    """What the playbook did on one host."""

    name: str
    address: str = ""
    key_file: str | None = None
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    #: The task that failed or found the host unreachable, and ssh's or the module's message.
    failed_task: str | None = None
    message: str | None = None
    #: Facts set with ``ansible.builtin.set_fact`` whose names start with a role's prefix.
    facts: dict[str, Scalar] = field(default_factory=dict)

    @property
    def status(self) -> HostStatus:
        if self.unreachable:
            return HostStatus.UNREACHABLE
        if self.failed:
            return HostStatus.FAILED
        return HostStatus.CHANGED if self.changed else HostStatus.OK

    def error(self) -> DeployerError | None:
        """The one-line error for this host, or None when it succeeded."""
        where = f"{self.name} ({self.address})" if self.address else self.name
        message = _one_line(self.message or "no message")
        if self.status is HostStatus.UNREACHABLE:
            if _is_host_key_mismatch(message):
                return PermanentError(
                    f"host {where}: its ssh host key is not the one first seen: {message}",
                    hint="if the host was reinstalled, remove its old key with ssh-keygen -R "
                    f"{self.address or self.name} -f DEPLOYER_HOME/ssh/known_hosts (default "
                    "~/.deployer); otherwise find out who answers at that address",
                )
            if _is_auth_failure(message):
                key = self.key_file or "ssh's default keys"
                return PermanentError(
                    f"host {where}: ssh refused the key {key}: {message}",
                    hint=f"authorize the public key of {key} for the user in the inventory "
                    "(~/.ssh/authorized_keys), or fix keyFile",
                )
            return PermanentError(
                f"host {where} is unreachable over ssh: {message}",
                hint="check the address, port and jump host in the inventory, and that sshd "
                "runs and this machine can reach it",
            )
        if self.status is HostStatus.FAILED:
            return PermanentError(
                f"host {where}: task {self.failed_task!r} failed: {message}",
                hint="fix the cause on the host and run again; the tasks that already "
                "succeeded are skipped",
            )
        return None


@dataclass
class PlaybookResult:
    """Per-host results of one playbook run, by host name in inventory order."""

    playbook: str
    hosts: dict[str, HostResult]
    seconds: float = 0.0
    #: ansible-runner's status ("successful", "failed", "timeout", ...) and return code.
    status: str = ""
    rc: int | None = None

    @property
    def failed_hosts(self) -> list[HostResult]:
        return [h for h in self.hosts.values() if h.status.is_failure]

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def error(self) -> DeployerError | None:
        """One error for the run: the first failing host's, counting the others; None if all
        hosts succeeded."""
        failing = self.failed_hosts
        if not failing:
            if self.rc not in (None, 0):
                return PermanentError(
                    f"ansible-playbook {self.playbook} ended {self.status} (rc {self.rc})",
                    hint="run again with --debug and read the artifacts under the work folder",
                )
            return None
        first = failing[0].error()
        if first is not None and len(failing) > 1:
            others = ", ".join(h.name for h in failing[1:])
            first.message += f" (and {len(failing) - 1} more failing: {others})"
            first.args = (first.message,)
        return first


# --- running -----------------------------------------------------------------------------------


def run_playbook(
    playbook: str | Path,
    inventory: Inventory | Mapping[str, Any],
    *,
    extravars: Mapping[str, Any],
    events: EventBus,
    workdir: Path,
    limit: list[str] | None = None,
    connect_timeout: int = 10,
    step: str = STEP,
) -> PlaybookResult:
    """Run ``playbook`` (a path) on the inventory's hosts, or the ``limit`` ones, and return
    each host's result. Blocks; emits a STEP_STARTED, one PROGRESS per task result and a
    STEP_FINISHED event on ``events``, all for ``step``.

    Never raises for a failed or unreachable host: :meth:`PlaybookResult.error` says what
    failed. Raises PermanentError when ansible-runner cannot start the playbook at all.
    """
    rendered = _with_ssh_options(
        inventory.to_ansible() if isinstance(inventory, Inventory) else dict(inventory)
    )
    hosts = _host_results(rendered, limit)
    data_dir = workdir / "ansible"
    data_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(workdir / "ansible.lock"):
        return _run(
            playbook, rendered, hosts, extravars, events, workdir, limit, connect_timeout, step
        )


#: The most hosts one playbook run works on at once.
MAX_FORKS = 50


def _run(
    playbook: str | Path,
    rendered: dict[str, Any],
    hosts: dict[str, HostResult],
    extravars: Mapping[str, Any],
    events: EventBus,
    workdir: Path,
    limit: list[str] | None,
    connect_timeout: int,
    step: str,
) -> PlaybookResult:
    import ansible_runner  # type: ignore[import-untyped]  # heavy: imported when a playbook runs

    mapper = EventMapper(hosts, events, step)
    data_dir = workdir / "ansible"
    # ansible-runner saves the last run's envvars in env/ and lets them win over the ones given.
    shutil.rmtree(data_dir / "env", ignore_errors=True)
    known_hosts = workdir / "known_hosts"
    known_hosts.touch(mode=0o600, exist_ok=True)
    name = Path(playbook).name
    events.emit(
        EventKind.STEP_STARTED,
        f"{name} on {len(hosts)} host(s): {', '.join(hosts)}",
        step=step,
    )
    started = time.monotonic()
    # Control sockets need a short path (a unix socket path is at most 108 bytes).
    control_dir = Path(tempfile.mkdtemp(prefix="deployer-cp-"))
    cancelled = threading.Event()
    try:
        with _cancel_on_signals(cancelled):
            runner = ansible_runner.run(
                private_data_dir=str(data_dir),
                playbook=str(Path(playbook).resolve()),
                inventory=rendered,
                extravars=dict(extravars),
                limit=",".join(limit) if limit else None,
                envvars=_ansible_env(known_hosts, control_dir, connect_timeout),
                event_handler=mapper,
                # Every host at once (Ansible's default is 5): a fleet is as slow as its
                # slowest host, not as the sum of batches.
                forks=max(1, min(len(hosts), MAX_FORKS)),
                quiet=True,
                rotate_artifacts=KEEP_ARTIFACTS,
                cancel_callback=cancelled.is_set,
            )
    finally:
        _close_masters(control_dir)
        # env/extravars holds the extravars (an API key among them): keep it only for the run.
        shutil.rmtree(data_dir / "env", ignore_errors=True)
    if cancelled.is_set():  # Ctrl-C or SIGTERM: the playbook was stopped; stop deployer too
        raise KeyboardInterrupt
    result = PlaybookResult(
        playbook=name,
        hosts=hosts,
        seconds=time.monotonic() - started,
        status=str(runner.status),
        rc=runner.rc,
    )
    if not mapper.seen_stats and not result.failed_hosts and runner.rc != 0:
        raise PermanentError(
            f"ansible-playbook {name} did not run ({runner.status}, rc {runner.rc}): "
            f"{_one_line(_tail(runner))}",
            hint="check the playbook, and that ansible-core is installed: pip install -e .",
        )
    failing = len(result.failed_hosts)
    events.emit(
        EventKind.STEP_FINISHED,
        f"{name}: {len(hosts) - failing} of {len(hosts)} host(s) "
        f"{'provisioned' if step == STEP else 'done'}, "
        f"{result.changed} change(s), {result.seconds:.1f}s",
        step=step,
        status="failed" if failing else "done",
    )
    return result


@contextlib.contextmanager
def _cancel_on_signals(cancelled: threading.Event) -> Iterator[None]:
    """While a playbook runs, SIGINT and SIGTERM set ``cancelled`` (ansible-runner then stops
    the playbook) instead of interrupting deployer mid-run; the previous handlers come back
    afterwards. ansible-runner would otherwise install its own handlers for good, and Ctrl-C
    would do nothing for the rest of the command."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in signals}
    for number in signals:
        signal.signal(number, lambda *_: cancelled.set())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """One playbook run at a time per work folder: runs share ansible-runner's inventory file."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConcurrentRunError(
                f"another playbook run is using {lock_file.parent}",
                hint="wait for the other deployer provision to finish, then run again",
            ) from None
        yield
    finally:
        os.close(fd)


def _with_ssh_options(inventory: dict[str, Any]) -> dict[str, Any]:
    """The inventory with ``IdentitiesOnly=yes`` for hosts that name a key, so ssh offers that
    key only (not every key of the agent and ~/.ssh)."""
    rendered = dict(inventory)
    group = dict(rendered.get("all") or {})
    hosts = {}
    for name, variables in (group.get("hosts") or {}).items():
        variables = dict(variables or {})
        if variables.get("ansible_ssh_private_key_file"):
            extra = variables.get("ansible_ssh_extra_args", "")
            variables["ansible_ssh_extra_args"] = f"{extra} -o IdentitiesOnly=yes".strip()
        hosts[name] = variables
    group["hosts"] = hosts
    rendered["all"] = group
    return rendered


def _host_results(inventory: Mapping[str, Any], limit: list[str] | None) -> dict[str, HostResult]:
    everyone = (inventory.get("all") or {}).get("hosts") or {}
    names = limit if limit else list(everyone)
    results = {}
    for name in names:
        variables = everyone.get(name) or {}
        results[name] = HostResult(
            name=name,
            address=str(variables.get("ansible_host", name)),
            key_file=variables.get("ansible_ssh_private_key_file"),
        )
    return results


def _ansible_env(known_hosts: Path, control_dir: Path, connect_timeout: int) -> dict[str, str]:
    ssh_args = [
        *common_options(known_hosts, connect_timeout),
        "-o",
        "ControlMaster=auto",
        "-o",
        "ControlPersist=60s",
        "-o",
        "ServerAliveInterval=15",
    ]
    # ansible-playbook of this Python's environment: a virtualenv's bin need not be on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        "PATH": path,
        "ANSIBLE_SSH_ARGS": shlex.join(ssh_args),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_TIMEOUT": str(connect_timeout),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        # The system Python, which every supported distribution has: discovery would take the
        # first python3.N on PATH, and a pyenv shim there may point at nothing.
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_SHOW_CUSTOM_STATS": "False",
    }


def _close_masters(control_dir: Path) -> None:
    """Close the ssh connections ControlPersist keeps open, then remove their sockets."""
    for socket in control_dir.iterdir():
        with contextlib.suppress(CommandError):
            commands.run(
                ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "deployer-control"],
                check=False,
                timeout=10,
            )
    shutil.rmtree(control_dir, ignore_errors=True)


def _tail(runner: Any) -> str:
    """ansible-playbook's error line (and where), else its last line of output."""
    try:
        text = str(runner.stdout.read())
    except (AttributeError, OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith(("[ERROR]", "ERROR!"))]
    if not errors:
        return lines[-1] if lines else ""
    first = errors[0]
    message = lines[first].removeprefix("[ERROR]:").removeprefix("ERROR!").strip()
    origin = next((line for line in lines[first + 1 : first + 3] if line.startswith("Origin:")), "")
    return f"{message} ({origin})" if origin else message


# --- events ------------------------------------------------------------------------------------


class EventMapper:
    """ansible-runner's ``event_handler``: updates the host results from runner events and emits
    one PROGRESS event per task result on the bus. Pure apart from those emits.

    Counts come from the final ``playbook_on_stats`` event when there is one (ansible's own
    recap); until then they are counted from the task results.
    """

    def __init__(self, hosts: dict[str, HostResult], events: EventBus, step: str = STEP) -> None:
        self.hosts = hosts
        self.events = events
        self.step = step
        self.results = 0
        self.seen_stats = False

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self._stats(data)
        elif kind in _RESULT_EVENTS:
            self._result(_RESULT_EVENTS[kind], data)
        return True  # keep the event in the artifacts

    def _host(self, name: str) -> HostResult:
        if name not in self.hosts:
            self.hosts[name] = HostResult(name=name)
        return self.hosts[name]

    def _result(self, status: str, data: Mapping[str, Any]) -> None:
        name = str(data.get("host") or "")
        if not name:
            return
        res = data.get("res") or {}
        if not isinstance(res, Mapping):
            res = {}
        task = str(data.get("task") or data.get("task_action") or "?")
        host = self._host(name)
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ok"
        if status == "ok" or status == "changed":
            setattr(host, status, getattr(host, status) + 1)
            if data.get("task_action") in _SET_FACT:
                host.facts.update(_facts(res))
        elif status == "skipped":
            host.skipped += 1
        elif status in ("failed", "unreachable"):
            setattr(host, status, getattr(host, status) + 1)
            if host.failed_task is None:
                host.failed_task = task
                host.message = _failure_message(res)
        self.results += 1
        detail = f": {_one_line(host.message or '')}" if status in ("failed", "unreachable") else ""
        self.events.emit(
            EventKind.PROGRESS,
            f"{name}: {task} {status}{detail}",
            step=self.step,
            completed=self.results,
            total=None,
            host=name,
            task=task,
            status=status,
        )
        if status in ("failed", "unreachable"):
            self.events.warn(f"{name}: {task} {status}{detail}", step=self.step)

    def _stats(self, data: Mapping[str, Any]) -> None:
        self.seen_stats = True
        columns = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
        }
        for key, attribute in columns.items():
            for name, count in (data.get(key) or {}).items():
                setattr(self._host(str(name)), attribute, int(count))
        # ansible's recap counts a changed task as ok too; results show them apart.
        for name in data.get("ok") or {}:
            host = self._host(str(name))
            host.ok = max(host.ok - host.changed, 0)


_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


def _facts(res: Mapping[str, Any]) -> dict[str, Scalar]:
    facts = res.get("ansible_facts") or {}
    return {
        str(key): _scalar(value)
        for key, value in facts.items()
        if str(key).startswith(FACT_PREFIXES)
    }


def _scalar(value: object) -> Scalar:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


#: What ansible wraps ssh's own message in, for an unreachable host.
_SSH_PREAMBLE = re.compile(
    r"^(Task failed: )?(Data could not be sent to remote host \"[^\"]*\"\. Make sure this host "
    r"can be reached over ssh|Failed to connect to the host via ssh): *"
)


def _failure_message(res: Mapping[str, Any]) -> str:
    message = _SSH_PREAMBLE.sub("", str(res.get("msg") or "").strip())
    stderr = str(res.get("stderr") or "").strip()
    if stderr and (not message or message.startswith("non-zero return code")):
        message = f"{message}: {stderr}" if message else stderr
    return message or "no message"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines)[:400]


def _is_host_key_mismatch(message: str) -> bool:
    lowered = message.lower()
    return "host key verification failed" in lowered or "identification has changed" in lowered


def _is_auth_failure(message: str) -> bool:
    return "permission denied" in message.lower() or "too many authentication" in message.lower()
