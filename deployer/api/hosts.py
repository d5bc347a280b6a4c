"""SSH hosts for ``deployer provision``: an inventory, and provisioning its hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from deployer.api.types import Result
from deployer.errors import DeployerError
from deployer.events import EventBus
from deployer.targets.ssh import Inventory, load_inventory
from deployer.targets.ssh import provision as provisioning
from deployer.targets.ssh.ansible import HostResult, HostStatus, PlaybookResult
from deployer.targets.ssh.provision import GpuFacts


class _GpuView(BaseModel):
    status: str
    count: int
    model: str
    memory_mib: int
    driver_version: str
    cuda_version: str
    os_version: str


class _HostView(BaseModel):
    name: str
    address: str
    status: str
    #: The host was reached and every task succeeded.
    ok: bool
    #: How many tasks changed something.
    changed: int
    #: Why the host failed or was unreachable, in one line.
    failed: str | None
    gpu: _GpuView | None

    @classmethod
    def of(cls, host: HostResult) -> _HostView:
        error = host.error()
        facts = GpuFacts.from_host(host)
        return cls(
            name=host.name,
            address=host.address,
            status=host.status.value,
            ok=not host.status.is_failure,
            changed=host.changed,
            failed=error.message if error is not None else None,
            gpu=_GpuView.model_validate(facts, from_attributes=True) if facts else None,
        )


class _ProvisionView(BaseModel):
    playbook: str
    #: Every host succeeded, and so did the playbook.
    ok: bool
    changed: int
    hosts: list[_HostView]


class ProvisionReport(Result):
    """What ``provision`` did: the playbook's result on every host."""

    result: PlaybookResult

    def error(self) -> DeployerError | None:
        """One error for the run (see :meth:`PlaybookResult.error`); None when all succeeded."""
        return self.result.error()

    def to_json(self) -> dict[str, Any]:
        """Each host (in inventory order) with its GPU facts, and whether all succeeded."""
        view = _ProvisionView(
            playbook=self.result.playbook,
            ok=self.error() is None,
            changed=self.result.changed,
            hosts=[_HostView.of(host) for host in self.result.hosts.values()],
        )
        return view.model_dump(mode="json")


def provision(
    inventory: Inventory,
    *,
    events: EventBus,
    workdir: Path,
    hosts: list[str] | None = None,
    group: str | None = None,
    connect_timeout: int = 10,
) -> ProvisionReport:
    """Provision the selected hosts of ``inventory`` (see
    :func:`deployer.targets.ssh.provision.provision`); a failed host is in the report, not
    raised."""
    result = provisioning.provision(
        inventory,
        events=events,
        workdir=workdir,
        hosts=hosts,
        group=group,
        connect_timeout=connect_timeout,
    )
    return ProvisionReport(result=result)


__all__ = [
    "GpuFacts",
    "HostStatus",
    "PlaybookResult",
    "ProvisionReport",
    "load_inventory",
    "provision",
]
