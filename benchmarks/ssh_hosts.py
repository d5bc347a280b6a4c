"""Provision and deploy on N real SSH hosts: wall time of the first run and of a no-op second run.

The hosts are network namespaces with their own sshd on this machine (tests/support/sshhosts.py;
run as root after `bash scripts/ssh-test-hosts-setup.sh`). For each N:

1. `deployer provision INVENTORY`, twice (the second must report changed=0);
2. `deployer apply` of the demo model on all N hosts (one replica each, the real vLLM CPU build),
   then a second, unchanged apply;
3. the baseline in the same run: Ansible's own floor for touching N hosts, an ad-hoc
   `ansible all -m ansible.builtin.ping` over the same inventory.

The hosts use the engine deployer installed in this machine's cache (inventory label
engine_python), so the deploy time is Ansible, the model copy with its sha256 check on each host,
and the engines' start; installing the engine from a wheelhouse adds about two minutes per host
(see tests/integration/test_ssh_apply.py). N engines share this machine's 2 cores and 24 GiB (each
gets a 128 MiB KV cache here), so the first apply's wait for /health grows with N: on real hosts
each has its own. ``--quick`` measures one host only, for CI (no figure is asserted).

    sudo .venv/bin/python benchmarks/ssh_hosts.py [--hosts 2 8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from _common import DEMO, NAME, ROOT, deployer, table, timed

from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings
from deployer.targets.ssh.inventory import load_inventory

if TYPE_CHECKING:
    from tests.support.sshhosts import SshHost


def inventory(hosts: list[SshHost], engine_python: Path) -> str:
    lines = ["apiVersion: deployer/v1alpha1", "kind: Inventory", "hosts:"]
    for host in hosts:
        lines += [
            f"  {host.name}:",
            f"    address: {host.address}",
            f"    port: {host.port}",
            f"    user: {host.user}",
            f"    keyFile: {host.key_file}",
            f"    labels: {{host_root: {host.root}, engine_python: {engine_python}}}",
        ]
    lines += ["groups:", f"  all_hosts: [{', '.join(host.name for host in hosts)}]"]
    return "\n".join(lines) + "\n"


def ansible_ping(folder: Path) -> None:
    """`ansible all -m ping` over the inventory deployer renders for ansible-runner."""
    rendered = folder / "ansible-inventory.yaml"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "all",
            "-i",
            str(rendered),
            "-m",
            "ansible.builtin.ping",
            "--ssh-common-args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ansible ping failed:\n{done.stdout}\n{done.stderr}")


def measure(count: int, engine_python: Path) -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))  # the test suite's SSH hosts
    from tests.support.sshhosts import ssh_hosts

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = folder / "home"
        with ssh_hosts(count, folder / "hosts") as hosts:
            inv = folder / "hosts.yaml"
            inv.write_text(inventory(hosts, engine_python))
            (folder / "ansible-inventory.yaml").write_text(
                yaml.safe_dump(load_inventory(inv).to_ansible())
            )
            manifest = folder / "demo-ssh.yaml"
            manifest.write_text(
                DEMO.read_text()
                .replace(
                    "  target:\n    kind: local\n",
                    "  target:\n    kind: ssh\n    inventory: hosts.yaml\n"
                    f"    group: all_hosts\n    replicas: {count}\n",
                )
                .replace("  serving:\n", "  serving:\n    startupTimeoutSeconds: 1800\n")
                # N engines share this machine's memory: a smaller KV cache each.
                .replace("kvCacheMemory: 512MiB", "kvCacheMemory: 128MiB")
            )
            ping = timed(lambda: ansible_ping(folder))
            provision_first = timed(lambda: deployer("provision", str(inv), home=home))
            second = deployer("provision", str(inv), home=home)
            provision_second = timed(lambda: deployer("provision", str(inv), home=home))
            apply_first = timed(lambda: deployer("apply", str(manifest), home=home))
            try:
                apply_second = timed(lambda: deployer("apply", str(manifest), home=home))
            finally:
                deployer("destroy", NAME, home=home, check=False)
            noop = "no changes" in second.stdout
    return [
        (f"{count} hosts: ansible ping (baseline)", f"{ping:.1f} s"),
        (f"{count} hosts: provision, first", f"{provision_first:.1f} s"),
        (
            f"{count} hosts: provision, second",
            f"{provision_second:.1f} s ({'changed=0' if noop else 'CHANGED'}; "
            f"{provision_second / ping:.1f}x the ping)",
        ),
        (f"{count} hosts: apply, first (to smoke-tested)", f"{apply_first:.1f} s"),
        (
            f"{count} hosts: apply, second (no-op)",
            f"{apply_second:.1f} s ({apply_second / ping:.1f}x the ping)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--quick", action="store_true", help="one host, for CI")
    args = parser.parse_args()
    counts = [1] if args.quick else args.hosts
    if os.geteuid() != 0 or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        raise SystemExit("needs root and sshd: run bash scripts/ssh-test-hosts-setup.sh first")
    engine_python = find_engine(Settings.from_env(), default_package()).python
    rows: list[tuple[str, str]] = []
    for count in counts:
        rows += measure(count, engine_python)
    table(rows)


if __name__ == "__main__":
    main()
