"""Provisioning SSH hosts: ``playbooks/provision.yml`` on the hosts an inventory names.

The playbooks live in the source checkout beside the package (``<repo>/playbooks``, found from
this file's location, as with ``pip install -e .``); ``DEPLOYER_PLAYBOOKS`` points elsewhere.
Every file the roles write goes under the host variable ``deployer_host_root`` ("/" unless an
inventory label ``host_root`` says otherwise; tests give each host its own folder).

What the ``gpu_node`` role finds on each host (GPUs, memory) is kept in
``<home>/ssh/facts/<host>.json`` for the planner: ``deployer apply`` plans an ``accelerator:
auto`` ssh deployment against those facts, and provisions the hosts that have none first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from deployer import atomic, inputs
from deployer.errors import ManifestError, NotFoundError
from deployer.events import EventBus
from deployer.targets.ssh.ansible import HostResult, PlaybookResult, run_playbook
from deployer.targets.ssh.inventory import Host, Inventory

PLAYBOOK = "provision.yml"
PLAYBOOKS_ENV = "DEPLOYER_PLAYBOOKS"


@dataclass(frozen=True)
class GpuFacts:
    """What the ``gpu_node`` role found on a host."""

    status: str
    count: int
    model: str
    memory_mib: int
    driver_version: str
    cuda_version: str
    os_family: str
    os_version: str
    host_memory_mib: int = 0

    @classmethod
    def from_host(cls, host: HostResult) -> GpuFacts | None:
        """The facts of ``host``, or None when the role did not get as far as setting them."""
        facts = host.facts
        if "gpu_node_gpu_status" not in facts:
            return None

        def text(key: str) -> str:
            value = facts.get(f"gpu_node_{key}")
            return "" if value is None else str(value)

        def number(key: str) -> int:
            try:
                return int(text(key) or 0)
            except ValueError:
                return 0

        return cls(
            status=text("gpu_status"),
            count=number("gpu_count"),
            model=text("gpu_model"),
            memory_mib=number("gpu_memory_mib"),
            driver_version=text("driver_version"),
            cuda_version=text("cuda_version"),
            os_family=text("os_family"),
            os_version=text("os_version"),
            host_memory_mib=number("host_memory_mib"),
        )

    @property
    def has_gpu(self) -> bool:
        return self.count > 0


def facts_file(workdir: Path, name: str) -> Path:
    return workdir / "facts" / f"{name}.json"


def save_facts(workdir: Path, inventory: Inventory, result: PlaybookResult) -> None:
    """Keep each host's facts from a provision run, with the address they were read at."""
    for name, host_result in result.hosts.items():
        facts = GpuFacts.from_host(host_result)
        if facts is None or name not in inventory.hosts:
            continue
        host = inventory.hosts[name]
        facts_file(workdir, name).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(
            facts_file(workdir, name),
            {"address": host.address, "port": host.port, "facts": asdict(facts)},
        )


def load_facts(workdir: Path, name: str, host: Host) -> GpuFacts | None:
    """The facts provision recorded for ``name``, or None (never provisioned, unreadable, or
    recorded for another address)."""
    try:
        raw = json.loads(facts_file(workdir, name).read_text())
        if raw["address"] != host.address or raw["port"] != host.port:
            return None
        return GpuFacts(**raw["facts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def playbooks_dir() -> Path:
    """The playbooks folder: ``$DEPLOYER_PLAYBOOKS``, else ``playbooks/`` of the checkout this
    package runs from. Raises NotFoundError when it has no provision.yml."""
    configured = os.environ.get(PLAYBOOKS_ENV)
    folder = (
        inputs.expand_user(configured)
        if configured
        else Path(__file__).resolve().parents[3] / "playbooks"
    )
    if not (folder / PLAYBOOK).is_file():
        raise NotFoundError(
            f"no {PLAYBOOK} in {folder}",
            hint=f"run deployer from its source checkout (pip install -e .), or set "
            f"{PLAYBOOKS_ENV} to the checkout's playbooks folder",
        )
    return folder


def select_hosts(inventory: Inventory, hosts: list[str] | None, group: str | None) -> list[str]:
    """Names of the hosts to provision: those listed, a group's, or every host. Pure; raises
    ManifestError for an unknown host or group."""
    try:
        if hosts is not None:  # an empty list (--hosts ",") selects nothing: an error, not all
            inventory.select(hosts, None, len(hosts))
            return list(hosts)
        if group is not None:
            inventory.select(None, group, 0)  # checks the group exists
            return list(inventory.groups[group])
    except ManifestError as exc:  # worded for a manifest's target: say which option instead
        raise ManifestError(
            exc.reason.replace("target.", "--", 1), location=exc.location, hint=exc.hint
        ) from None
    return sorted(inventory.hosts)


def provision(
    inventory: Inventory,
    *,
    events: EventBus,
    workdir: Path,
    hosts: list[str] | None = None,
    group: str | None = None,
    connect_timeout: int = 10,
) -> PlaybookResult:
    """Run ``provision.yml`` on the selected hosts and return every host's result.

    Idempotent: a second run on the same hosts changes nothing. Blocks. Does not raise for a
    failed host (see :meth:`PlaybookResult.error`); raises ManifestError for an unknown host or
    group and NotFoundError without the playbooks.
    """
    names = select_hosts(inventory, hosts, group)
    result = run_playbook(
        playbooks_dir() / PLAYBOOK,
        inventory,
        extravars={},
        events=events,
        workdir=workdir,
        limit=names,
        connect_timeout=connect_timeout,
    )
    save_facts(workdir, inventory, result)
    return result
