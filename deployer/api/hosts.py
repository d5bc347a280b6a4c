"""SSH hosts for ``deployer provision``: an inventory, and provisioning its hosts."""

from deployer.targets.ssh import load_inventory
from deployer.targets.ssh.ansible import HostStatus, PlaybookResult
from deployer.targets.ssh.provision import GpuFacts, provision

__all__ = ["GpuFacts", "HostStatus", "PlaybookResult", "load_inventory", "provision"]
