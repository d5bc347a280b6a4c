"""The SSH target: on-premises hosts from an inventory, provisioned with Ansible."""

from deployer.targets.ssh.inventory import Host, Inventory, load_inventory

__all__ = ["Host", "Inventory", "load_inventory"]
