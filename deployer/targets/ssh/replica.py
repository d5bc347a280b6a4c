"""One replica of an ssh deployment: an inventory host and where its engine answers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployer.errors import PermanentError
from deployer.targets.ssh.inventory import Host

_ENDPOINT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")


@dataclass(frozen=True)
class Replica:
    """One inventory host that runs one engine of a deployment."""

    name: str
    host: Host

    @property
    def root(self) -> str:
        return self.host.labels.get("host_root", "/").rstrip("/")

    @property
    def become(self) -> bool:
        """Whether root's work goes through sudo on this host: label ``become``, else any user
        but root (as in the playbooks)."""
        label = self.host.labels.get("become")
        if label is None:
            return self.host.user != "root"
        return label.lower() in ("true", "yes", "1")

    def run_dir(self, deployment: str) -> str:
        return f"{self.root}/opt/deployer/deployments/{deployment}"

    def base_url(self, port: int) -> str:
        """Where this machine reaches the replica's engine: the inventory address and ``port``,
        or the host's ``endpoint`` label (``HOST:PORT``) for a host behind NAT or a container
        whose port is published elsewhere."""
        endpoint = self.host.labels.get("endpoint")
        if endpoint is None:
            return f"http://{_url_host(self.host.address)}:{port}/v1"
        match = _ENDPOINT.fullmatch(endpoint)
        if match is None:
            raise PermanentError(
                f"host {self.name}: label endpoint is {endpoint!r}",
                hint="give HOST:PORT, where this machine reaches the engine (e.g. 127.0.0.1:18000)",
            )
        return f"http://{_url_host(match['host'])}:{match['port']}/v1"


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
