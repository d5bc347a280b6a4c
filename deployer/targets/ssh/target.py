"""The SSH target: one engine per inventory host (a replica), deployed with Ansible.

``deploy`` runs ``playbooks/deploy.yml`` (role ``model_server``) on the selected hosts: the engine
in its own virtualenv (or a pre-provisioned engine's python, the host label ``engine_python``), the
model folder copied and its files' sha256 checked on the host, the API key in an environment file
(mode 0600), and the engine kept running by systemd or, on hosts without it, by deployer's own
supervisor. ``destroy`` runs ``playbooks/destroy.yml``. Facts are read from the controller: each
host's ``runtime.json`` over ssh, and ``/health`` over the network.

Where the engine listens: on the host's inventory address (``address``), port
``spec.serving.port`` (8000 when unset), so each replica answers at ``http://ADDRESS:PORT/v1``. A
``spec.serving.host`` other than the default ``127.0.0.1`` (such as ``0.0.0.0``) is the address
the engine binds instead; the endpoints still use the inventory addresses.

Files on a host, under its ``host_root`` label (``/`` by default): ``opt/deployer/engines/``,
``opt/deployer/models/<name>/`` and ``opt/deployer/deployments/<deployment>/`` (``runtime.json``,
``launch.json``, ``engine.env``, ``engine.log``, ``supervisor.json``).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from deployer import inputs, runner, secrets
from deployer.agent.runtime import RuntimeRecord, RuntimeRecordError, UnsupportedVersionError
from deployer.agent.supervisor import PROCESS_PATTERN as SUPERVISOR_PATTERN
from deployer.digests import sha256_file
from deployer.engines.base import Device
from deployer.engines.install import EnginePackage
from deployer.engines.wheelhouse import Wheelhouse, prepare_wheelhouse
from deployer.errors import (
    CommandError,
    EngineStartError,
    HealthTimeoutError,
    NotFoundError,
    PermanentError,
    PlanError,
)
from deployer.events import EventBus
from deployer.manifest.models import ModelDeployment, SshTargetSpec
from deployer.planner import Observed, Plan, PlannedStep, ReplicaState, StepAction, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import (
    Accelerator,
    MiB,
    cpu_accelerator,
    host_memory_bytes,
    identify,
    lookup,
)
from deployer.targets.base import WHOLE_LOG, DeployRequest, Endpoint, StepRunner, answers
from deployer.targets.ssh.ansible import PlaybookResult, run_playbook
from deployer.targets.ssh.inventory import Inventory, load_inventory
from deployer.targets.ssh.provision import GpuFacts, load_facts, playbooks_dir
from deployer.targets.ssh.provision import provision as run_provision
from deployer.targets.ssh.replica import Replica
from deployer.targets.ssh.transport import ssh_argv

DEPLOY_PLAYBOOK = "deploy.yml"
DESTROY_PLAYBOOK = "destroy.yml"
DEFAULT_BIND_HOST = "127.0.0.1"
#: Plan arguments the role sets per host (the model's path there, the address and the port).
HOST_ARGS = ("--model", "--host", "--port")
SEPARATOR = "--- deployer: end of runtime.json ---"
#: The port an engine listens on when the manifest names none (vLLM's default).
DEFAULT_PORT = 8000


class SshTarget:
    """Replicas on inventory hosts. Blocks in every method; see the module docstring."""

    kind: ClassVar[str] = "ssh"
    observes_offline: ClassVar[bool] = False

    def __init__(self, settings: Settings, spec: SshTargetSpec, base_dir: Path) -> None:
        self.settings = settings
        self.spec = spec
        path = inputs.expand_user(spec.inventory)
        self.inventory_path = path if path.is_absolute() else base_dir / path
        self._inventory: Inventory | None = None

    @classmethod
    def from_spec(cls, spec: SshTargetSpec, settings: Settings, base_dir: Path) -> SshTarget:
        return cls(settings, spec, base_dir)

    def spec_record(self) -> dict[str, Any]:
        record = self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        record["inventory"] = str(self.inventory_path.absolute())
        return record

    def preflight(self) -> None:
        self.replicas()  # the inventory and its selection: each host is reached by its step

    # --- planning ------------------------------------------------------------------------------

    def placement(self, accelerator: str) -> Placement:
        """What the hosts have, as provision found it: their device for 'auto', and for the
        CPU their memory (not this machine's). Before provision: a GPU unless 'cpu'."""
        device: Device = "cpu" if accelerator.lower() == "cpu" else "cuda"
        spec: Accelerator | None
        if device == "cpu":
            spec = cpu_accelerator(host_memory_bytes())
        else:
            spec = None if accelerator == "auto" else lookup(accelerator)
        hardware = self.hardware()
        if hardware is not None:
            host_device, host_accelerator = hardware
            if accelerator == "auto":
                device = host_device
            if device == host_device and (accelerator == "auto" or device == "cpu"):
                spec = host_accelerator or spec
        return Placement(device, spec)

    def default_port(self, name: str, host: str) -> int:
        return DEFAULT_PORT

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        missing = self.unprovisioned()
        provision = (
            PlannedStep(
                name="provision",
                action=StepAction.CREATE,
                reason=f"not provisioned yet: {', '.join(missing)}",
            )
            if missing
            else PlannedStep(
                name="provision",
                action=StepAction.SKIP,
                reason="every host's facts are recorded (deployer provision)",
            )
        )
        endpoints = tuple((r.name, r.base_url(port)) for r in self.replicas())
        return TargetSteps(
            before=(provision,),
            engine=PlannedStep(
                name="engine",
                action=StepAction.SKIP,
                reason="installed on the hosts by the deploy playbook",
            ),
            smoke_where=f" on {len(endpoints)} endpoint(s)",
            endpoint=endpoints[0][1],
            replica_endpoints=endpoints,
            unobserved="not observed (deployer plan does not contact the hosts; apply does, "
            "and deploy.yml leaves an unchanged engine alone)",
        )

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {"provision": lambda request: self.provision(self.unprovisioned(), request.events)}

    @contextlib.contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        """Every replica answers for itself: each host is checked."""
        if plan is not None:
            yield list(plan.replica_endpoints.values())
            return
        yield [r.endpoint for r in self.observe(name).replicas if r.endpoint]

    # --- hosts ---------------------------------------------------------------------------------

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            loaded = load_inventory(self.inventory_path)
            self._inventory = loaded.resolve_key_files(self.inventory_path.parent)
        return self._inventory

    def replicas(self) -> list[Replica]:
        """The hosts the target's replicas run on, one per host (see Inventory.select)."""
        hosts = self.inventory.select(self.spec.hosts, self.spec.group, self.spec.replicas)
        names = {id(host): name for name, host in self.inventory.hosts.items()}
        return [Replica(names[id(host)], host) for host in hosts]

    def host_facts(self) -> dict[str, GpuFacts | None]:
        """What ``deployer provision`` recorded about each replica's host (None: nothing yet)."""
        return {r.name: load_facts(self.workdir, r.name, r.host) for r in self.replicas()}

    def unprovisioned(self) -> list[str]:
        """The replicas' hosts that have no recorded facts (never provisioned)."""
        return [name for name, facts in self.host_facts().items() if facts is None]

    def provision(self, hosts: list[str], events: EventBus) -> None:
        """Provision ``hosts`` (recording their facts); raises the first failing host's error."""
        result = run_provision(self.inventory, events=events, workdir=self.workdir, hosts=hosts)
        error = result.error()
        if error is not None:
            raise error

    def hardware(self) -> tuple[Device, Accelerator | None] | None:
        """The device and accelerator every replica's host has, from the recorded facts; None
        when a host has none yet. Raises PlanError when the hosts differ (CPU and GPU hosts,
        or two GPU models), since one plan serves them all."""
        facts = self.host_facts()
        if any(f is None for f in facts.values()):
            return None
        known = {name: f for name, f in facts.items() if f is not None}
        gpus = {name for name, f in known.items() if f.has_gpu}
        if not gpus:
            memory = min(f.host_memory_mib for f in known.values()) * MiB
            return "cpu", cpu_accelerator(memory) if memory else None
        if len(gpus) != len(known):
            raise PlanError(
                f"the hosts mix GPUs ({', '.join(sorted(gpus))}) and CPU-only hosts "
                f"({', '.join(sorted(set(known) - gpus))})",
                hint="select hosts of one kind with 'hosts' or 'group', or set "
                "spec.resources.accelerator",
            )
        models = {known[name].model for name in gpus}
        if len(models) > 1:
            raise PlanError(
                f"the hosts have different GPUs: {', '.join(sorted(models))}",
                hint="select hosts of one GPU model with 'hosts' or 'group'",
            )
        first = known[min(gpus)]
        return "cuda", identify(first.model, first.memory_mib)

    @property
    def workdir(self) -> Path:
        folder = self.settings.home / "ssh"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    # --- facts ---------------------------------------------------------------------------------

    def observe(self, name: str) -> Observed:
        """Running when every replica has a runtime.json and a live engine process; healthy when
        every replica answers /health. The spec digest is the replicas' common one; each
        replica's own facts are in ``replicas``."""
        replicas = self.replicas()
        facts = [self._runtime(replica, name) for replica in replicas]
        states = tuple(
            _replica_state(replica, runtime, live)
            for replica, (runtime, live) in zip(replicas, facts, strict=True)
        )
        missing = [
            state.host for state, (runtime, _) in zip(states, facts, strict=True) if not runtime
        ]
        if missing:
            return Observed(
                running=False, detail=f"not deployed on {', '.join(missing)}", replicas=states
            )
        runtimes = [runtime for runtime, _ in facts if runtime is not None]
        digests = {runtime.get("spec_digest") for runtime in runtimes}
        first = runtimes[0]
        alive = all(state.running for state in states)
        down = [state.host for state in states if not state.running]
        return Observed(
            running=alive,
            healthy=all(state.healthy for state in states),
            spec_digest=digests.pop() if len(digests) == 1 else None,
            args=tuple(first.get("args") or ()),
            pid=first.get("engine_pid"),
            port=first.get("port"),
            endpoint=first.get("endpoint"),
            detail=None if alive else f"the engine is not running on {', '.join(down)}",
            replicas=states,
            inputs=first.get("inputs") or {},
        )

    def endpoint(self, name: str) -> Endpoint:
        replica = self.replicas()[0]
        runtime, _ = self._runtime(replica, name)
        if runtime is None:
            raise NotFoundError(
                f"deployment {name} is not deployed on {replica.name}",
                hint="deployer apply MANIFEST deploys it",
            )
        from deployer import credentials

        return Endpoint(
            base_url=runtime["endpoint"],
            health_url=runtime["health_url"],
            api_key=credentials.stored_api_key(self.settings.deployment_dir(name)),
        )

    # --- changes -------------------------------------------------------------------------------

    def deploy(self, request: DeployRequest) -> None:
        """Run deploy.yml on every replica. Idempotent on the hosts: an unchanged launch leaves
        the running engine alone. Raises the first failing host's error."""
        plan, events = request.plan, request.events
        replicas = self.replicas()
        model_path = Path(plan.engine.model_path)
        extravars = self.deploy_vars(plan, request.api_key, model_path, plan.engine.port)
        wheelhouse = self._wheelhouse(plan, replicas, events)
        if wheelhouse is not None:
            extravars["deployer_wheelhouse"] = {
                "archive": str(wheelhouse.archive),
                "python": wheelhouse.python_version,
                "wheels": [{"name": name, "sha256": sha} for name, _, sha in wheelhouse.wheels],
            }
        result = self._playbook(DEPLOY_PLAYBOOK, replicas, extravars, events)
        error = result.error()
        if error is not None:
            raise error

    def deploy_vars(self, plan: Plan, api_key: str, model_path: Path, port: int) -> dict[str, Any]:
        """The extravars of deploy.yml for ``plan``. Reads the model's files to hash them."""
        secrets.register(api_key)
        runtime = RuntimeRecord(
            deployment=plan.deployment,
            spec_digest=plan.engine.spec_digest,
            args=tuple(plan.engine.args),
            port=port,
            inputs=dict(plan.engine.inputs),
        ).to_dict()
        variables: dict[str, Any] = {
            "model_server_deployment": plan.deployment,
            "model_server_engine_package": plan.engine.package,
            "model_server_engine_version": plan.engine.version,
            "model_server_engine_module": plan.engine.module,
            "model_server_engine_args": host_args(plan.engine.args),
            "model_server_engine_env": plan.engine.env,
            "model_server_port": port,
            "model_server_api_key": api_key,
            "model_server_api_key_env": plan.engine.api_key_env,
            "model_server_model_name": model_path.stem if model_path.is_file() else model_path.name,
            "model_server_model_src": str(model_path),
            "model_server_model_file": model_path.name if model_path.is_file() else "",
            "model_server_model_files": file_hashes(model_path),
            "model_server_engine_env_remove": plan.engine.env_remove,
            "model_server_runtime_facts": runtime,
        }
        bind = plan.engine.host
        if bind != DEFAULT_BIND_HOST:
            variables["model_server_bind_host"] = bind
        return variables

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        """Poll every replica's /health from this machine until all answer 200."""
        plan, events = request.plan, request.events
        port = plan.engine.port
        pending = {r.name: r for r in self.replicas()}
        started = time.monotonic()
        while pending:
            for name, replica in list(pending.items()):
                url = replica.base_url(port).removesuffix("/v1") + plan.engine.health_path
                if answers(url):
                    elapsed = time.monotonic() - started
                    events.log(f"{name} healthy after {elapsed:.1f}s", step="ready")
                    del pending[name]
            if not pending:
                return
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                replica = next(iter(pending.values()))
                raise HealthTimeoutError(
                    f"{plan.deployment} on {replica.name} did not answer /health within "
                    f"{timeout:.0f}s",
                    hint="raise spec.serving.startupTimeoutSeconds, or read: "
                    f"deployer logs {plan.deployment}",
                    details=self._tail(replica, plan.deployment, 25),
                )
            self._check_supervisors(plan.deployment, pending)
            events.progress(
                f"waiting for {', '.join(pending)}",
                step="ready",
                completed=round(elapsed, 1),
                total=float(timeout),
            )
            time.sleep(1.0)

    def destroy(self, name: str, events: EventBus) -> bool:
        """Run destroy.yml on every replica; True when a host had the deployment."""
        replicas = self.replicas()
        result = self._playbook(
            DESTROY_PLAYBOOK, replicas, {"model_server_deployment": name}, events
        )
        error = result.error()
        if error is not None:
            raise error
        return any(
            str(host.facts.get("model_server_destroyed")).lower() == "true"
            for host in result.hosts.values()
        )

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        """The engines' logs, read over ssh: the last ``lines`` of each replica's (or of
        ``host``'s), then, with ``follow``, new lines as they come (``tail -F`` on every host,
        until the caller stops iterating). With several replicas each line starts with its
        host's name."""
        replicas = self.replicas()
        if host is not None:
            replicas = [replica for replica in replicas if replica.name == host]
            if not replicas:
                raise NotFoundError(
                    f"{name} has no replica on host {host}",
                    hint=f"its hosts: {', '.join(r.name for r in self.replicas())}",
                )
        prefix = len(replicas) > 1
        if follow:
            yield from self._follow(replicas, name, lines, prefix)
            return
        for replica in replicas:
            text = self._tail(replica, name, lines)
            if text is None:
                raise NotFoundError(
                    f"no engine log for {name} on {replica.name}",
                    hint="deployer status lists deployments and their hosts",
                )
            for line in text.splitlines():
                yield f"{replica.name} | {line}" if prefix else line

    def _follow(
        self, replicas: list[Replica], name: str, lines: int, prefix: bool
    ) -> Iterator[str]:
        """``tail -F`` on every replica at once, lines interleaved as they arrive."""
        commands = {
            replica.name: self._ssh_argv(
                replica,
                shlex.join(
                    ["tail", "-n", str(max(lines, 0)), "-F", f"{replica.run_dir(name)}/engine.log"]
                ),
            )
            for replica in replicas
        }
        for host, line in runner.follow(commands):
            yield f"{host} | {line}" if prefix else line

    # --- internals -----------------------------------------------------------------------------

    def _wheelhouse(
        self, plan: Plan, replicas: list[Replica], events: EventBus
    ) -> Wheelhouse | None:
        """The wheelhouse for the replicas that still need the engine, prepared on this machine;
        None when every host has it, brings its own (labels ``engine_python``,
        ``engine_venv_source``) or installs from its index (``engine_source: index``)."""
        versions: set[str] = set()
        engine_dir = f"opt/deployer/engines/{plan.engine.package}-{plan.engine.version}"
        for replica in replicas:
            if not _installs_from_wheelhouse(replica):
                continue
            probe = (
                f"test -e {shlex.quote(f'{replica.root}/{engine_dir}/.deployer-installed')} "
                "&& echo installed || /usr/bin/python3 -c "
                + shlex.quote("import sys; print('%d.%d' % sys.version_info[:2])")
            )
            done = self._ssh(replica, probe)
            if done.returncode == 255:
                raise _unreachable(replica, done)
            answer = done.stdout.strip()
            if answer != "installed":
                if done.returncode != 0 or not answer:
                    raise PermanentError(
                        f"host {replica.name} has no usable /usr/bin/python3: "
                        f"{(done.stderr or done.stdout).strip()[:200]}",
                        hint="install python3 (and python3-venv) on the host: "
                        "deployer provision INVENTORY does",
                    )
                versions.add(answer)
        if not versions:
            return None
        if len(versions) > 1:
            raise PermanentError(
                f"the hosts of {plan.deployment} run different Pythons: "
                f"{', '.join(sorted(versions))}",
                hint="deploy to hosts of one Python version, or pre-install the engine on some "
                "(inventory label engine_python)",
            )
        package = EnginePackage(
            engine=plan.engine.engine,
            package=plan.engine.package,
            version=plan.engine.version,
            device=plan.engine.device,
        )
        return prepare_wheelhouse(self.settings, package, versions.pop(), events)

    def _playbook(
        self,
        playbook: str,
        replicas: list[Replica],
        extravars: dict[str, Any],
        events: EventBus,
    ) -> PlaybookResult:
        return run_playbook(
            playbooks_dir() / playbook,
            self.inventory,
            extravars=extravars,
            events=events,
            workdir=self.workdir,
            limit=[replica.name for replica in replicas],
            step=f"ansible {playbook}",  # its own progress line, inside deploy or destroy
        )

    def _ssh(self, replica: Replica, command: str, timeout: float = 20) -> runner.Completed:
        return runner.run(self._ssh_argv(replica, command), check=False, timeout=timeout)

    def _ssh_argv(self, replica: Replica, command: str) -> list[str]:
        return ssh_argv(
            replica.host,
            command,
            known_hosts=self.workdir / "known_hosts",
            jump=self.inventory.jump_options(replica.name),
            become=replica.become,
        )

    def _runtime(self, replica: Replica, name: str) -> tuple[dict[str, Any] | None, bool]:
        """The replica's runtime.json (None when absent) and whether its engine runs."""
        run_dir = replica.run_dir(name)
        command = " ; ".join(
            [
                shlex.join(["cat", f"{run_dir}/runtime.json"]),
                shlex.join(["echo", SEPARATOR]),
                shlex.join(["cat", f"{run_dir}/supervisor.json"]),
                shlex.join(["echo", SEPARATOR]),
                shlex.join(["pgrep", "-f", f"{SUPERVISOR_PATTERN} {run_dir}$"]),
                shlex.join(["echo", SEPARATOR]),
                shlex.join(
                    ["systemctl", "show", "--property=ActiveState,MainPID,NRestarts", unit(name)]
                )
                + " 2>/dev/null",
            ]
        )
        try:
            done = self._ssh(replica, command)
        except CommandError:
            return None, False
        if done.returncode == 255:
            raise _unreachable(replica, done)
        text, _, rest = done.stdout.partition(SEPARATOR)
        supervisor_text, _, rest = rest.partition(SEPARATOR)
        pids, _, systemd_text = rest.partition(SEPARATOR)
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None, False
        if not isinstance(data, dict):
            return None, False
        try:
            record = RuntimeRecord.from_dict(data)
        except RuntimeRecordError as exc:
            newer = isinstance(exc, UnsupportedVersionError)
            raise PermanentError(
                f"host {replica.name}: {run_dir}/runtime.json: {exc}",
                hint="use the newer deployer that wrote it"
                if newer
                else "remove it on the host if nothing runs there, then deployer apply again",
            ) from None
        port = record.port or 0
        runtime = replace(
            record,
            endpoint=record.endpoint or replica.base_url(port),
            health_url=record.health_url or replica.base_url(port).removesuffix("/v1") + "/health",
        ).to_dict()
        with contextlib.suppress(json.JSONDecodeError):
            supervisor = json.loads(supervisor_text)
            if isinstance(supervisor, dict):
                runtime["engine_pid"] = supervisor.get("engine_pid")
                runtime["starts"] = supervisor.get("starts")
                runtime["supervisor_status"] = supervisor.get("status")
        if record.service_manager == "systemd":
            return runtime, _systemd_facts(runtime, systemd_text)
        return runtime, bool(pids.split())

    def _tail(self, replica: Replica, name: str, lines: int) -> str | None:
        path = f"{replica.run_dir(name)}/engine.log"
        try:
            count = "+1" if lines == WHOLE_LOG else str(max(lines, 0))
            done = self._ssh(replica, shlex.join(["tail", "-n", count, path]))
        except CommandError:
            return None
        if done.returncode != 0:
            return None
        return secrets.mask(done.stdout.rstrip("\n"))

    def _check_supervisors(self, name: str, pending: dict[str, Replica]) -> None:
        """Raise EngineStartError when a pending replica's supervisor gave up."""
        for replica in pending.values():
            path = f"{replica.run_dir(name)}/supervisor.json"
            try:
                done = self._ssh(replica, shlex.join(["cat", path]))
                state = json.loads(done.stdout) if done.returncode == 0 else {}
            except (CommandError, json.JSONDecodeError):
                continue
            if isinstance(state, dict) and state.get("status") == "failed":
                raise EngineStartError(
                    f"the engine of {name} on {replica.name} kept exiting (last code "
                    f"{state.get('last_exit_code')})",
                    hint=f"read the whole log with: deployer logs {name}",
                    details=self._tail(replica, name, 25),
                )


ENGINE_SOURCES = ("wheelhouse", "index")
#: systemd's unit states as deployer's supervisor names them (see _replica_state).
_SYSTEMD_STATES = {"active": "running", "activating": "restarting", "failed": "failed"}


def unit(deployment: str) -> str:
    """The systemd unit of ``deployment`` on a host (as the model_server role names it)."""
    return f"deployer-{deployment}.service"


def _systemd_facts(runtime: dict[str, Any], text: str) -> bool:
    """Fill ``runtime`` from ``systemctl show`` output (engine pid, starts, status); True when
    the unit is active. Mutates ``runtime``."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    state = props.get("ActiveState", "")
    pid = int(props.get("MainPID") or 0)
    runtime["engine_pid"] = pid or None
    runtime["starts"] = int(props.get("NRestarts") or 0) + 1 if state else None
    runtime["supervisor_status"] = _SYSTEMD_STATES.get(state, state or None)
    return state == "active"


def _replica_state(replica: Replica, runtime: dict[str, Any] | None, live: bool) -> ReplicaState:
    """What ``replica`` reports: from its runtime.json (None: not deployed there) and /health."""
    if runtime is None:
        return ReplicaState(
            host=replica.name, endpoint="", running=False, healthy=False, detail="not deployed"
        )
    status = runtime.get("supervisor_status")
    detail = None
    if not live:
        detail = "the engine is not running"
    elif status in ("starting", "restarting"):
        detail = f"engine {status}"
    elif status == "failed":
        detail = "the engine kept exiting; deployer's supervisor gave up"
    return ReplicaState(
        host=replica.name,
        endpoint=str(runtime.get("endpoint", "")),
        running=live and status != "failed",
        healthy=live and answers(str(runtime.get("health_url", ""))),
        pid=runtime.get("engine_pid"),
        starts=runtime.get("starts"),
        detail=detail,
    )


def _installs_from_wheelhouse(replica: Replica) -> bool:
    """Whether ``replica`` installs the engine from deployer's wheelhouse (see the role)."""
    labels = replica.host.labels
    source = labels.get("engine_source", "wheelhouse")
    if source not in ENGINE_SOURCES:
        raise PermanentError(
            f"host {replica.name}: label engine_source is {source!r}",
            hint=f"use one of: {', '.join(ENGINE_SOURCES)}",
        )
    return (
        source == "wheelhouse"
        and not labels.get("engine_python")
        and not labels.get("engine_venv_source")
    )


def _unreachable(replica: Replica, done: runner.Completed) -> PermanentError:
    return PermanentError(
        f"host {replica.name} ({replica.host.address}) is unreachable over ssh: "
        f"{done.stderr.strip()}",
        hint="check the inventory, and that sshd runs and this machine can reach it",
    )


def host_args(args: list[str]) -> list[str]:
    """``args`` without the options the role sets per host (``HOST_ARGS`` and their values).
    Pure."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in HOST_ARGS:
            skip = True
            continue
        if arg.split("=", 1)[0] in HOST_ARGS:
            continue
        kept.append(arg)
    return kept


def file_hashes(folder: Path) -> list[dict[str, str]]:
    """``{path, sha256}`` for every file under ``folder``, by relative path (or for the one
    file ``folder`` is: a GGUF model)."""
    if folder.is_file():
        return [{"path": folder.name, "sha256": sha256_file(folder)}]
    return [
        {"path": str(path.relative_to(folder)), "sha256": sha256_file(path)}
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    ]
