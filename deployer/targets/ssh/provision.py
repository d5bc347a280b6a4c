"""Provisioning SSH hosts: ``playbooks/provision.yml`` on the hosts an inventory names.

The playbooks live in the source checkout beside the package (``<repo>/playbooks``, found from
this file's location, as with ``pip install -e .``); ``DEPLOYER_PLAYBOOKS`` points elsewhere.
Every file the roles write goes under the host variable ``deployer_host_root`` ("/" unless an
inventory label ``host_root`` says otherwise; tests give each host its own folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import ManifestError, NotFoundError
from deployer.events import EventBus
from deployer.targets.ssh.ansible import HostResult, PlaybookResult, run_playbook
from deployer.targets.ssh.inventory import Inventory

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
        )


def playbooks_dir() -> Path:
    """The playbooks folder: ``$DEPLOYER_PLAYBOOKS``, else ``playbooks/`` of the checkout this
    package runs from. Raises NotFoundError when it has no provision.yml."""
    configured = os.environ.get(PLAYBOOKS_ENV)
    folder = (
        Path(configured).expanduser()
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
        if hosts:
            inventory.select(hosts, None, len(hosts))
            return list(hosts)
        if group is not None:
            inventory.select(None, group, 0)  # checks the group exists
            return list(inventory.groups[group])
    except ManifestError as exc:  # worded for a manifest's target: say which option instead
        raise ManifestError(exc.reason.replace("target.", "--", 1), hint=exc.hint) from None
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
    return run_playbook(
        playbooks_dir() / PLAYBOOK,
        inventory,
        extravars={},
        events=events,
        workdir=workdir,
        limit=names,
        connect_timeout=connect_timeout,
    )
