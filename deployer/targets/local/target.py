"""The local target: one supervised engine process per deployment on this machine.

Each deployment has a runtime folder, ``<home>/deployments/<name>/``:

- ``launch.json``: the engine's argv and non-secret environment (read by the supervisor);
- ``runtime.json``: the supervisor's pid and start time, the spec digest, the port: the facts
  :meth:`LocalTarget.observe` reads back;
- ``supervisor.json``: the supervisor's own state (engine pid, starts, exits);
- ``engine.log`` and ``supervisor.log``;
- ``api-key``: a generated API key, mode 0600 (see :mod:`deployer.credentials`).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import psutil

from deployer import atomic, credentials, runner, secrets
from deployer.agent.runtime import RuntimeRecord, RuntimeRecordError, UnsupportedVersionError
from deployer.agent.supervisor import MODULE as SUPERVISOR_MODULE
from deployer.engines.install import EnginePackage, detect_device, find_engine
from deployer.errors import (
    EngineStartError,
    HealthTimeoutError,
    NotFoundError,
    PermanentError,
    PortInUseError,
    UnsupportedError,
)
from deployer.events import EventBus
from deployer.manifest.models import LocalTargetSpec, ModelDeployment
from deployer.planner import Observed, Plan, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator, host_memory_bytes, lookup
from deployer.targets.base import WHOLE_LOG, DeployRequest, Endpoint, StepRunner, answers

RUNTIME = "runtime.json"
LAUNCH = "launch.json"
SUPERVISOR = "supervisor.json"
ENGINE_LOG = "engine.log"
SUPERVISOR_LOG = "supervisor.log"
#: vLLM ignores SIGTERM during part of its start-up: SIGKILL follows after this many seconds.
STOP_TIMEOUT = 10.0


class LocalTarget:
    kind: ClassVar[str] = "local"
    observes_offline: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Deployments whose engine this target started: only then can another process have
        #: taken the port while the model loaded (a running engine already holds its port).
        self._started: set[str] = set()

    @classmethod
    def from_spec(cls, spec: LocalTargetSpec, settings: Settings, base_dir: Path) -> LocalTarget:
        return cls(settings)

    def spec_record(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def preflight(self) -> None:
        pass  # this machine is always here

    # --- planning ------------------------------------------------------------------------------

    def placement(self, accelerator: str) -> Placement:
        """This machine: the CPU when asked for, else what it has."""
        device = "cpu" if accelerator.lower() == "cpu" else detect_device()
        if device == "cpu":
            return Placement("cpu", cpu_accelerator(host_memory_bytes()))
        return Placement(device, None if accelerator == "auto" else lookup(accelerator))

    def default_port(self, name: str, host: str) -> int:
        """The port it used last time, else the deployment's own port (:func:`preferred_port`):
        the same on every plan while it stays free, so ``deployer plan`` prints the port that
        ``apply`` then uses."""
        previous = self.previous_port(name)
        if previous is not None:
            return previous
        return preferred_port(name, "127.0.0.1" if host == "0.0.0.0" else host)  # noqa: S104

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        return TargetSteps()

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {}

    @contextlib.contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        yield [plan.endpoint if plan is not None else self.endpoint(name).base_url]

    # --- facts ---------------------------------------------------------------------------------

    def observe(self, name: str) -> Observed:
        runtime = self._runtime(name)
        if runtime is None:
            return Observed(running=False)
        supervisor = _process(runtime["supervisor_pid"], runtime["supervisor_create_time"])
        state = _read_json(self._folder(name) / SUPERVISOR) or {}
        engine_pid = state.get("engine_pid")
        engine = _process(engine_pid) if engine_pid else None
        running = supervisor is not None and engine is not None
        detail = None
        if supervisor is None:
            detail = "the supervisor process is gone"
        elif engine is None:
            detail = f"the engine is not running (supervisor: {state.get('status', 'starting')})"
        return Observed(
            running=running,
            healthy=running and answers(runtime["health_url"]),
            spec_digest=runtime["spec_digest"],
            args=tuple(runtime["args"]),
            pid=engine_pid,
            port=runtime["port"],
            endpoint=runtime["endpoint"],
            detail=detail,
            inputs=runtime.get("inputs") or {},
        )

    def previous_port(self, name: str) -> int | None:
        runtime = self._runtime(name)
        return int(runtime["port"]) if runtime else None

    def endpoint(self, name: str) -> Endpoint:
        runtime = self._runtime(name)
        if runtime is None:
            raise NotFoundError(
                f"deployment {name} is not running on this machine",
                hint="deployer status lists deployments; deployer apply MANIFEST starts one",
            )
        return Endpoint(
            base_url=runtime["endpoint"],
            health_url=runtime["health_url"],
            api_key=credentials.stored_api_key(self._folder(name)),
        )

    # --- changes -------------------------------------------------------------------------------

    def deploy(self, request: DeployRequest) -> None:
        """Start the engine as planned under a new supervisor, stopping a previous one first."""
        plan, events, api_key = request.plan, request.events, request.api_key
        name = plan.deployment
        folder = self._dir(name)
        if self._runtime(name) is not None:
            events.log("stopping the running engine", step="deploy")
            self._stop(name)
        port = plan.engine.port
        host = _bind_host(plan)
        ensure_port_free(host, port)
        engine = find_engine(
            self.settings,
            EnginePackage(
                engine=plan.engine.engine,
                package=plan.engine.package,
                version=plan.engine.version,
                device=plan.engine.device,
            ),
        )
        argv = [*engine.module_argv(plan.engine.module), *plan.engine.args]
        atomic.write_json(
            folder / LAUNCH,
            {
                "argv": argv,
                "env": plan.engine.env,
                "env_remove": plan.engine.env_remove,
                "stop_timeout": STOP_TIMEOUT,
            },
        )
        (folder / SUPERVISOR).unlink(missing_ok=True)
        with (folder / ENGINE_LOG).open("a") as log:
            log.write(f"\n===== deployer: starting {runner.display(argv)} =====\n")
        proc = runner.spawn_detached(
            [sys.executable, "-m", SUPERVISOR_MODULE, str(folder)],
            log=folder / SUPERVISOR_LOG,
            env={plan.engine.api_key_env: api_key},
            cwd=folder,
        )
        health_url = plan.endpoint.removesuffix("/v1") + plan.engine.health_path
        record = RuntimeRecord(
            supervisor_pid=proc.pid,
            supervisor_create_time=psutil.Process(proc.pid).create_time(),
            spec_digest=plan.engine.spec_digest,
            args=tuple(plan.engine.args),
            port=port,
            endpoint=plan.endpoint,
            health_url=health_url,
            started_at=time.time(),
            inputs=dict(plan.engine.inputs),
        )
        atomic.write_text(folder / RUNTIME, record.to_json())
        self._started.add(name)
        events.log(f"engine starting on port {port} (supervisor pid {proc.pid})", step="deploy")

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        name, events = request.name, request.events
        folder = self._dir(name)
        runtime = self._runtime(name)
        if runtime is None:
            raise EngineStartError(f"{name} was never started", hint="run deployer apply again")
        started = time.monotonic()
        # Exits before this wait (an adopted engine that was restarted earlier) are history.
        exits_before = len((_read_json(folder / SUPERVISOR) or {}).get("exits") or [])
        foreign = False
        while True:
            elapsed = time.monotonic() - started
            state = _read_json(folder / SUPERVISOR) or {}
            exits = state.get("exits") or []
            if len(exits) > exits_before:
                raise EngineStartError(
                    f"the engine of {name} exited with code {exits[-1]['rc']} before it was ready",
                    hint=f"read the whole log with: deployer logs {name}",
                    details=_tail(folder / ENGINE_LOG, 25),
                )
            if _process(runtime["supervisor_pid"], runtime["supervisor_create_time"]) is None:
                raise EngineStartError(
                    f"the supervisor of {name} died before the engine was ready",
                    hint=f"see {folder / SUPERVISOR_LOG}",
                    details=_tail(folder / SUPERVISOR_LOG, 15),
                )
            if answers(runtime["health_url"]):
                # The port was free when the engine started, but an engine binds it only once
                # the model is loaded: another process that took it meanwhile answers too.
                foreign = name in self._started and not _listens(runtime, runtime["port"])
                if not foreign:
                    events.log(f"healthy after {elapsed:.1f}s", step="ready")
                    return
            if elapsed > timeout:
                if foreign:
                    raise HealthTimeoutError(
                        f"port {runtime['port']} of {name} is answered by another process, and "
                        f"the engine did not take it within {timeout:.0f}s",
                        hint=f"another deployment or service took the port; run deployer destroy "
                        f"{name}, then apply again to plan a free one",
                        details=_tail(folder / ENGINE_LOG, 25),
                    )
                raise HealthTimeoutError(
                    f"{name} did not answer {runtime['health_url']} within {timeout:.0f}s",
                    hint=f"raise spec.serving.startupTimeoutSeconds, or read: deployer logs {name}",
                    details=_tail(folder / ENGINE_LOG, 25),
                )
            events.progress(
                f"port {runtime['port']} is answered by another process; waiting for the engine"
                if foreign
                else _last_line(folder / ENGINE_LOG) or "starting",
                step="ready",
                completed=round(elapsed, 1),
                total=float(timeout),
            )
            time.sleep(0.5)

    def destroy(self, name: str, events: EventBus) -> bool:
        folder = self._dir(name)
        existed = self._runtime(name) is not None
        if existed:
            events.log("stopping the engine", step="destroy")
            self._stop(name)
        (folder / credentials.KEY_FILE).unlink(missing_ok=True)
        (folder / LAUNCH).unlink(missing_ok=True)
        return existed

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        """The last ``lines`` lines of the engine's log (all with :data:`WHOLE_LOG`), then (with
        ``follow``) new ones as they come. Reads only: creates nothing, keeps at most ``lines``
        lines in memory."""
        if host is not None:
            raise UnsupportedError(
                f"{name} does not run on SSH hosts; --host applies to ssh targets only",
                hint=f"deployer logs {name}",
            )
        path = self._folder(name) / ENGINE_LOG
        if not path.is_file():
            raise NotFoundError(
                f"no engine log for {name}", hint="deployer status lists deployments"
            )
        with path.open(errors="replace") as handle:
            if lines == WHOLE_LOG:
                tail: Iterable[str] = handle  # streamed, never all in memory
            else:
                tail = collections.deque(handle, maxlen=lines) if lines > 0 else []
            for line in tail:
                yield secrets.mask(line.rstrip("\n"))
            while follow:
                line = handle.readline()
                if line:
                    yield secrets.mask(line.rstrip("\n"))
                else:
                    time.sleep(0.3)

    # --- internals -----------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        """The deployment's folder, created (0700) when missing: for the paths that write."""
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def _folder(self, name: str) -> Path:
        """The deployment's folder, whether or not it exists: for the paths that only read."""
        return self.settings.deployment_dir(name)

    def _runtime(self, name: str) -> dict[str, Any] | None:
        """The deployment's runtime.json as a dict with every field this target writes; None
        when there is none (or it is not JSON). Raises PermanentError for one written by a newer
        deployer or lacking what this target needs."""
        path = self.settings.deployment_dir(name) / RUNTIME
        data = _read_json(path)
        if data is None:
            return None
        try:
            facts = RuntimeRecord.from_dict(data).to_dict()
        except RuntimeRecordError as exc:
            newer = isinstance(exc, UnsupportedVersionError)
            raise PermanentError(
                f"{path}: {exc}",
                hint="use the newer deployer that wrote it"
                if newer
                else "remove it if nothing runs, then deployer apply again",
            ) from None
        missing = [key for key in _LOCAL_FACTS if key not in facts]
        if missing:
            raise PermanentError(
                f"{path} has no {', '.join(missing)}: the local target did not write it",
                hint="remove the file if nothing runs, then deployer apply again",
            )
        return facts

    def _stop(self, name: str) -> None:
        """Stop the supervisor and its engine; safe when either is already gone."""
        folder = self._dir(name)
        runtime = self._runtime(name) or {}
        state = _read_json(folder / SUPERVISOR) or {}
        supervisor = _process(runtime.get("supervisor_pid"), runtime.get("supervisor_create_time"))
        if supervisor is not None:
            with contextlib.suppress(psutil.Error):
                supervisor.terminate()
                supervisor.wait(timeout=STOP_TIMEOUT + 10)
        engine_pid = state.get("engine_pid")
        if engine_pid and _process(engine_pid) is not None:
            # The supervisor was killed without a chance to stop its engine.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(engine_pid, signal.SIGKILL)
        if supervisor is not None and supervisor.is_running():
            with contextlib.suppress(psutil.Error):
                supervisor.kill()
        (folder / RUNTIME).unlink(missing_ok=True)


#: What the local target writes in every runtime.json and reads back.
_LOCAL_FACTS = (
    "supervisor_pid",
    "supervisor_create_time",
    "spec_digest",
    "port",
    "endpoint",
    "health_url",
)


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` naming the holder when ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            holder = _port_holder(port)
            raise PortInUseError(
                f"port {port} on {host} is in use{holder}",
                hint="set spec.serving.port to a free port, or stop what holds it",
            ) from exc


#: Where a deployment's port is looked for: below Linux's ephemeral range (32768-60999), from which
#: the system picks the local ports of outgoing connections.
PORT_RANGE = range(20000, 32768)


def preferred_port(name: str, host: str = "127.0.0.1") -> int:
    """The first port of :data:`PORT_RANGE` free on ``host``, looking from one that the
    deployment's name picks: deterministic, so a plan and the apply after it agree (unless
    something takes the port in between; apply then plans another)."""
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(PORT_RANGE)
    for step in range(len(PORT_RANGE)):
        port = PORT_RANGE[(start + step) % len(PORT_RANGE)]
        if _bindable(host, port):
            return port
    return free_port(host)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (it may be taken again before it is used)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_holder(port: int) -> str:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN
            if conn.laddr and conn.laddr.port == port and listening and conn.pid:
                return f" by {psutil.Process(conn.pid).name()} (pid {conn.pid})"
    return ""


def _bind_host(plan: Plan) -> str:
    return plan.engine.host


def _listens(runtime: dict[str, Any], port: int) -> bool:
    """Whether the supervisor in ``runtime`` or a process under it (the engine) listens on
    ``port``: the health URL answering proves nothing when another process holds the port."""
    supervisor = _process(runtime["supervisor_pid"], runtime["supervisor_create_time"])
    if supervisor is None:
        return False
    try:
        tree = [supervisor, *supervisor.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in tree:
        try:
            sockets = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        if any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets):
            return True
    return False


def _process(pid: int | None, create_time: float | None = None) -> psutil.Process | None:
    """The live process ``pid``, if it is the one started at ``create_time`` (no pid reuse)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return None
        return proc
    except psutil.Error:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path, lines: int) -> str | None:
    """The last ``lines`` lines of ``path``, masked; reads only the file's end."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * lines))
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    return secrets.mask("\n".join(text.splitlines()[-lines:]))


def _last_line(path: Path) -> str | None:
    tail = _tail(path, 1)
    return tail.strip()[:120] if tail else None
