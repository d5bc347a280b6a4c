"""How deployer reaches an SSH host: the ssh options the target's own commands and the Ansible
adapter share, and the argv of one command on a host.

Host keys are learned on first contact and then enforced (``StrictHostKeyChecking=accept-new``
into deployer's own ``known_hosts``), nothing ever prompts (``BatchMode``), and a host that does
not answer fails fast (``ConnectTimeout``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from deployer.targets.ssh.inventory import Host


def common_options(known_hosts: Path, connect_timeout: int) -> list[str]:
    """The ``-o`` options every ssh connection deployer makes carries."""
    return [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        f"ConnectTimeout={connect_timeout}",
    ]


def ssh_argv(
    host: Host,
    command: str,
    *,
    known_hosts: Path,
    jump: list[str],
    become: bool,
    connect_timeout: int = 10,
) -> list[str]:
    """``ssh`` running ``command`` on ``host`` (through ``jump``'s options; as root through
    ``sudo -n`` when ``become``: the deployment's files belong to root, mode 0700 folders)."""
    argv = ["ssh", *common_options(known_hosts, connect_timeout), "-p", str(host.port)]
    if host.key_file:
        argv += ["-i", host.key_file, "-o", "IdentitiesOnly=yes"]
    argv += jump
    if become:
        command = f"sudo -n sh -c {shlex.quote(command)}"
    return [*argv, f"{host.user}@{host.address}", command]
