"""The local target: one supervised engine process per deployment on this machine.

Each deployment has a runtime folder, ``<home>/deployments/<name>/``:

- ``launch.json``: the engine's argv and non-secret environment (read by the supervisor);
- ``runtime.json``: the supervisor's pid and start time, the spec digest, the port: the facts
  :meth:`LocalTarget.observe` reads back;
- ``supervisor.json``: the supervisor's own state (engine pid, starts, exits);
- ``engine.log`` and ``supervisor.log``;
- ``api-key``: a generated API key, mode 0600 (see :mod:`deployer.credentials`);
- ``proxy.json`` and ``proxy/``: the deployment's HAProxy, which publishes its port and forwards
  to the engine's private port (:mod:`deployer.targets.local.proxy`);
- ``slot-b/``: the second engine slot (its own ``launch.json``, ``supervisor.json``,
  ``engine.log``): a surge rollout starts the new engine in the slot the serving one is not in,
  recorded in ``candidate.json`` until the switch makes it ``runtime.json`` (the old engine's
  record is ``retiring.json`` while its requests drain).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
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
from deployer.planner import Observed, Plan, PlannedStep, StepAction, Surge, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator, host_memory_bytes, lookup
from deployer.targets.base import WHOLE_LOG, DeployRequest, Endpoint, StepRunner, answers
from deployer.targets.local import affinity
from deployer.targets.local.proxy import (
    Proxy,
    ProxyConfig,
    other,
    read_json,
    retire_command,
    switch_commands,
)

RUNTIME = "runtime.json"
LAUNCH = "launch.json"
SUPERVISOR = "supervisor.json"
ENGINE_LOG = "engine.log"
SUPERVISOR_LOG = "supervisor.log"
#: The new engine of a surge rollout until the switch, and the old one while it drains.
CANDIDATE = "candidate.json"
RETIRING = "retiring.json"
#: The second slot's folder; the first slot is the deployment's folder itself.
SLOT_B = "slot-b"
#: Where engines listen behind the proxy.
ENGINE_HOST = "127.0.0.1"
#: How long the old engine's requests in flight may take to finish after a switch.
DRAIN_TIMEOUT = 300.0
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
        #: Deployments whose new engine this target started beside the serving one.
        self._surging: set[str] = set()
        #: The serving engine's threads let go of their cores while a new one starts beside it
        #: (:mod:`.affinity`), to pin back on a rollback.
        self._unpinned: dict[str, affinity.Pinned] = {}

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
        """HAProxy publishes ``port`` (the ``proxy`` step: started unless it already does) and
        the engine listens on a private port; a second private port is free for a surge."""
        name = deployment.name
        runtime = self._runtime(name)
        proxy = Proxy(self._folder(name)).record()
        host = deployment.spec.serving.host
        recorded_port = runtime["port"] if runtime and runtime.get("published_port") else None
        engine_port = recorded_port or private_port(name, "engine", exclude={port})
        publishes = proxy is not None and (proxy.get("host"), proxy.get("port")) == (host, port)
        if publishes and proxy is not None:
            step = PlannedStep(
                name="proxy",
                action=StepAction.SKIP,
                reason=f"HAProxy already publishes {host}:{port} "
                f"(supervisor pid {proxy['supervisor_pid']})",
            )
        else:
            step = PlannedStep(
                name="proxy",
                action=StepAction.UPDATE if proxy is not None else StepAction.CREATE,
                reason=f"HAProxy publishes {host}:{port}, forwarding to the engine on port "
                f"{engine_port}",
            )
        surge = Surge(
            engine_host=ENGINE_HOST,
            engine_port=engine_port,
            surge_port=private_port(name, "surge", exclude={port, engine_port}),
            serving=publishes and recorded_port is not None,
            proxy="HAProxy",
        )
        return TargetSteps(prepare=(step,), surge=surge)

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {"proxy": self._publish, "switch": self._switch}

    @contextlib.contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        """The published endpoint; during a surge, the new engine's own (it takes no traffic
        before it passes)."""
        if plan is not None and plan.rollout is not None and plan.rollout.surges:
            yield [plan.rollout.engine_endpoint or plan.endpoint]
            return
        yield [plan.endpoint if plan is not None else self.endpoint(name).base_url]

    # --- facts ---------------------------------------------------------------------------------

    def observe(self, name: str) -> Observed:
        runtime = self._runtime(name)
        if runtime is None:
            return Observed(running=False)
        supervisor = _process(runtime["supervisor_pid"], runtime["supervisor_create_time"])
        state = read_json(self._slot_dir(name, runtime) / SUPERVISOR) or {}
        engine_pid = state.get("engine_pid")
        engine = _process(engine_pid) if engine_pid else None
        running = supervisor is not None and engine is not None
        proxied = runtime.get("published_port") is not None
        published = not proxied or Proxy(self._folder(name)).record() is not None
        detail = None
        if supervisor is None:
            detail = "the supervisor process is gone"
        elif engine is None:
            detail = f"the engine is not running (supervisor: {state.get('status', 'starting')})"
        elif not published:
            detail = "HAProxy, which publishes the endpoint, is not running"
        return Observed(
            running=running,
            healthy=running and published and answers(runtime["health_url"]),
            spec_digest=runtime["spec_digest"],
            args=tuple(runtime["args"]),
            pid=engine_pid,
            port=runtime.get("published_port") or runtime["port"],
            endpoint=runtime["endpoint"],
            detail=detail,
            inputs=runtime.get("inputs") or {},
            engine_port=runtime["port"] if proxied else None,
        )

    def previous_port(self, name: str) -> int | None:
        """The port clients used last time: the one HAProxy published, else the engine's."""
        runtime = self._runtime(name)
        return int(runtime.get("published_port") or runtime["port"]) if runtime else None

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
        """Start the engine as planned under a new supervisor. A surge (``plan.rollout``)
        starts it in the free slot beside the serving one, which keeps the traffic; otherwise
        the running engine (if any) stops first and the new one takes its slot and port."""
        plan, events = request.plan, request.events
        name = plan.deployment
        for stale in (CANDIDATE, RETIRING):
            if self._record(name, stale) is not None:
                events.log(f"stopping an engine a cut-off rollout left ({stale})", step="deploy")
                self._stop_engine(name, stale)
        runtime = self._runtime(name)
        if plan.rollout is not None and plan.rollout.surges:
            if runtime is None:
                raise EngineStartError(
                    f"no engine of {name} serves any more: nothing to start a new one beside",
                    hint="run deployer apply again",
                )
            slot = other(runtime.get("engine_slot") or "a")
            serving = _process(runtime.get("supervisor_pid"), runtime.get("supervisor_create_time"))
            if serving is not None:
                self._unpinned[name] = affinity.unpin_tree(serving)
            self._start_engine(request, slot, CANDIDATE)
            return
        slot = (runtime.get("engine_slot") or "a") if runtime else "a"
        if runtime is not None:
            events.log("stopping the running engine", step="deploy")
            self._stop_engine(name, RUNTIME)
        self._start_engine(request, slot, RUNTIME)
        if plan.published_port is not None:
            self._point(name, slot, plan.engine.port)

    def abandon(self, name: str, events: EventBus) -> None:
        """Stop the new engine a surge started; the serving one is not touched."""
        self._surging.discard(name)
        if self._record(name, CANDIDATE) is not None:
            events.log("stopping the new engine; the running one keeps serving", step="rollback")
            self._stop_engine(name, CANDIDATE)
        affinity.repin(self._unpinned.pop(name, {}))

    def _start_engine(self, request: DeployRequest, slot: str, record_file: str) -> None:
        plan, events, api_key = request.plan, request.events, request.api_key
        name = plan.deployment
        self._dir(name)
        folder = self._slot_path(name, slot)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
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
                "env": {
                    **plan.engine.env,
                    **(plan.engine.beside_env if record_file == CANDIDATE else {}),
                },
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
        proxied = plan.published_port is not None
        engine_url = f"http://{_client_host(host)}:{port}"
        record = RuntimeRecord(
            supervisor_pid=proc.pid,
            supervisor_create_time=psutil.Process(proc.pid).create_time(),
            spec_digest=plan.engine.spec_digest,
            args=tuple(plan.engine.args),
            port=port,
            endpoint=plan.endpoint,
            health_url=(engine_url if proxied else plan.endpoint.removesuffix("/v1"))
            + plan.engine.health_path,
            started_at=time.time(),
            inputs=dict(plan.engine.inputs),
            published_port=plan.published_port,
            engine_slot=slot if proxied else None,
        )
        atomic.write_text(self._folder(name) / record_file, record.to_json())
        self._started.add(name)
        if record_file == CANDIDATE:
            self._surging.add(name)
        beside = " beside the running one" if record_file == CANDIDATE else ""
        events.log(
            f"engine starting on port {port}{beside} (supervisor pid {proc.pid})", step="deploy"
        )

    # --- the proxy -----------------------------------------------------------------------------

    def _publish(self, request: DeployRequest) -> None:
        """The ``proxy`` step: start HAProxy on the published port (restart it when the port or
        address changed), forwarding to the serving engine's slot, or the first engine's."""
        plan, events = request.plan, request.events
        name = plan.deployment
        folder = self._dir(name)
        proxy = Proxy(folder)
        if proxy.stop():
            events.log("stopping HAProxy: the published address changed", step="proxy")
        runtime = self._runtime(name)
        if runtime is not None and runtime.get("published_port") is None:
            # Started by a deployer before the proxy: it holds the published port itself.
            events.log("stopping the engine that listens on the published port", step="proxy")
            self._stop_engine(name, RUNTIME)
            runtime = None
        host = request.deployment.spec.serving.host
        port = plan.published_port or plan.engine.port
        ensure_port_free(host, port)
        slot = (runtime.get("engine_slot") or "a") if runtime else "a"
        engine_port = int(runtime["port"]) if runtime else plan.engine.port
        pid = proxy.start(self._proxy_config(name, host, port, {slot: engine_port}, slot))
        events.log(f"HAProxy publishes {host}:{port} (supervisor pid {pid})", step="proxy")

    def _proxy_config(
        self, name: str, host: str, port: int, servers: Mapping[str, int], active: str
    ) -> ProxyConfig:
        return ProxyConfig(
            deployment=name,
            bind_host=host,
            port=port,
            servers=dict(servers),
            active=active,
            engine_host=ENGINE_HOST,
        )

    def _point(self, name: str, slot: str, port: int) -> None:
        """Make HAProxy forward to ``slot`` on ``port`` (the other slot in maintenance), in the
        running process and in its config file."""
        proxy = Proxy(self._folder(name))
        record = proxy.record()
        if record is None:
            return
        for command in switch_commands(slot, port, other(slot), ENGINE_HOST)[:2]:
            proxy.api.run(command)
        proxy.api.run(retire_command(other(slot)))
        proxy.write_config(
            self._proxy_config(name, record["host"], record["port"], {slot: port}, slot)
        )

    def _switch(self, request: DeployRequest) -> None:
        """The ``switch`` step of a surge: HAProxy forwards new requests to the new engine (no
        reload: its runtime API), the new engine's record becomes ``runtime.json``, and the old
        engine stops once HAProxy counts none of its requests in flight (at most
        :data:`DRAIN_TIMEOUT` seconds)."""
        plan, events = request.plan, request.events
        name = plan.deployment
        folder = self._dir(name)
        runtime, candidate = self._runtime(name), self._record(name, CANDIDATE)
        if runtime is None or candidate is None:
            raise EngineStartError(
                f"the rollout of {name} lost track of its engines", hint="run deployer apply again"
            )
        old, new = runtime.get("engine_slot") or "a", candidate["engine_slot"]
        old_port, new_port = int(runtime["port"]), int(candidate["port"])
        proxy = Proxy(folder)
        record = proxy.record()
        if record is None:
            raise EngineStartError(
                f"HAProxy of {name} is not running: traffic cannot move",
                hint="run deployer apply again",
            )
        for command in switch_commands(new, new_port, old, ENGINE_HOST):
            proxy.api.run(command)
        proxy.write_config(
            self._proxy_config(
                name, record["host"], record["port"], {old: old_port, new: new_port}, new
            )
        )
        os.replace(folder / RUNTIME, folder / RETIRING)
        os.replace(folder / CANDIDATE, folder / RUNTIME)
        self._surging.discard(name)
        self._unpinned.pop(name, None)  # the old engine stops
        events.log(
            f"port {record['port']} forwards to the new engine on port {new_port}", step="switch"
        )
        started = time.monotonic()
        while (in_flight := proxy.api.sessions().get(old, 0)) > 0:
            waited = time.monotonic() - started
            if waited > DRAIN_TIMEOUT:
                events.warn(
                    f"{in_flight} request(s) still on the old engine after {waited:.0f}s: "
                    "stopping it anyway",
                    step="switch",
                )
                break
            events.progress(
                f"{in_flight} request(s) in flight on the old engine",
                step="switch",
                completed=round(waited, 1),
                total=DRAIN_TIMEOUT,
            )
            time.sleep(0.2)
        proxy.api.run(retire_command(old))
        pid = (read_json(self._slot_path(name, old) / SUPERVISOR) or {}).get("engine_pid")
        self._stop_engine(name, RETIRING)
        events.log(f"the old engine stopped (pid {pid}, port {old_port})", step="switch")

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        """Wait for the engine this apply started: the new one of a surge (``candidate.json``),
        else the serving one."""
        name, events = request.name, request.events
        surging = name in self._surging
        runtime = self._record(name, CANDIDATE if surging else RUNTIME)
        if runtime is None:
            raise EngineStartError(f"{name} was never started", hint="run deployer apply again")
        folder = self._slot_dir(name, runtime)
        engine_port = runtime["port"]
        started = time.monotonic()
        # Exits before this wait (an adopted engine that was restarted earlier) are history.
        exits_before = len((read_json(folder / SUPERVISOR) or {}).get("exits") or [])
        foreign = False
        while True:
            elapsed = time.monotonic() - started
            state = read_json(folder / SUPERVISOR) or {}
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
                foreign = name in self._started and not _listens(runtime, engine_port)
                if not foreign:
                    events.log(f"healthy after {elapsed:.1f}s", step="ready")
                    return
            if elapsed > timeout:
                if foreign:
                    raise HealthTimeoutError(
                        f"port {engine_port} of {name} is answered by another process, and "
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
                f"port {engine_port} is answered by another process; waiting for the engine"
                if foreign
                else _last_line(folder / ENGINE_LOG) or "starting",
                step="ready",
                completed=round(elapsed, 1),
                total=float(timeout),
            )
            time.sleep(0.5)

    def destroy(self, name: str, events: EventBus) -> bool:
        """Stop every engine of ``name`` (serving, new or draining) and its HAProxy, so the
        published port is free; forget the key and launch files."""
        folder = self._dir(name)
        existed = False
        for record in (CANDIDATE, RETIRING, RUNTIME):
            if self._record(name, record) is not None:
                existed = True
                events.log(f"stopping the engine ({record})", step="destroy")
                self._stop_engine(name, record)
        if Proxy(folder).stop():
            existed = True
            events.log("stopped HAProxy", step="destroy")
        (folder / credentials.KEY_FILE).unlink(missing_ok=True)
        for slot in ("a", "b"):
            (self._slot_path(name, slot) / LAUNCH).unlink(missing_ok=True)
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
        runtime = self._runtime(name)
        path = (self._slot_dir(name, runtime) if runtime else self._folder(name)) / ENGINE_LOG
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

    def _slot_path(self, name: str, slot: str) -> Path:
        """Where the engine of ``slot`` keeps its files: ``a`` the deployment's folder."""
        folder = self._folder(name)
        return folder if slot == "a" else folder / SLOT_B

    def _slot_dir(self, name: str, record: Mapping[str, Any]) -> Path:
        return self._slot_path(name, record.get("engine_slot") or "a")

    def _runtime(self, name: str) -> dict[str, Any] | None:
        """The serving engine's record, runtime.json: see :meth:`_record`."""
        return self._record(name, RUNTIME)

    def _record(self, name: str, file: str) -> dict[str, Any] | None:
        """An engine's record (``runtime.json``, ``candidate.json``, ``retiring.json``) as a
        dict with every field this target writes; None when there is none (or it is not JSON).
        Raises PermanentError for one written by a newer deployer or lacking what this target
        needs."""
        path = self.settings.deployment_dir(name) / file
        data = read_json(path)
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

    def _stop_engine(self, name: str, file: str) -> None:
        """Stop the supervisor and engine that the record ``file`` names, then remove the
        record; safe when either is already gone."""
        folder = self._dir(name)
        runtime = self._record(name, file) or {}
        state = read_json(self._slot_dir(name, runtime) / SUPERVISOR) or {}
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
        (folder / file).unlink(missing_ok=True)


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


def _client_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def private_port(name: str, role: str, *, exclude: set[int]) -> int:
    """A private port for one of ``name``'s engines (``role``: ``engine`` or ``surge``) on
    :data:`ENGINE_HOST`: deterministic while free, like :func:`preferred_port`, never one in
    ``exclude`` (the published port, the other engine's)."""
    start = int.from_bytes(hashlib.sha256(f"{name}/{role}".encode()).digest()[:4], "big")
    for step in range(len(PORT_RANGE)):
        port = PORT_RANGE[(start + step) % len(PORT_RANGE)]
        if port not in exclude and _bindable(ENGINE_HOST, port):
            return port
    return free_port(ENGINE_HOST)


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
