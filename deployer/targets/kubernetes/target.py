"""The kubernetes target: a Helm release of the model-server chart in a context and namespace.

``deploy`` is ``helm upgrade --install --wait --atomic`` (Helm rolls a failed upgrade back
itself), ``destroy`` is ``helm uninstall``; smoke checks go through ``kubectl port-forward`` to
the Service. Not run against a cluster in deployer's tests (none can run there): the chart,
the values and the rendered objects are tested; this module is the thin rest.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deployer import runner
from deployer.errors import CommandError, DeployerError, EngineStartError
from deployer.events import EventBus
from deployer.kube.helm import Helm
from deployer.kube.render import chart_dir
from deployer.manifest.models import KubernetesTargetSpec
from deployer.planner import Observed
from deployer.targets.kubernetes.cluster import Cluster

#: Seconds the init container may take to download the weights, on top of the engine's start.
FETCH_ALLOWANCE = 1800


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    values_text: str
    startup_seconds: int


class KubernetesTarget:
    kind = "kubernetes"

    def __init__(self, spec: KubernetesTargetSpec, helm: Helm) -> None:
        self.spec = spec
        self.helm = helm
        self.cluster = Cluster(spec.context)

    def check_reachable(self) -> None:
        self.cluster.check_reachable()

    def deploy(self, release: Release, events: EventBus) -> None:
        """Install or upgrade the release and wait for it; Helm rolls back a failed upgrade
        (``--atomic``). Raises EngineStartError with Helm's reason."""
        timeout = release.startup_seconds + FETCH_ALLOWANCE
        with tempfile.TemporaryDirectory(prefix="deployer-helm-") as tmp:
            values = Path(tmp) / "values.yaml"
            values.write_text(release.values_text)
            argv = [
                *self._helm(release.namespace),
                "upgrade",
                "--install",
                release.name,
                chart_dir(),
                "--values",
                values,
                "--create-namespace",
                "--wait",
                "--atomic",
                "--timeout",
                f"{timeout}s",
            ]
            events.log(f"helm upgrade --install {release.name} (up to {timeout}s)")
            try:
                runner.run(argv, timeout=timeout + 120)
            except CommandError as exc:
                raise EngineStartError(
                    f"helm could not roll out {release.name} in {release.namespace}; "
                    "it was rolled back",
                    hint=f"kubectl --context {self.cluster.name} -n {release.namespace} "
                    f"describe deployment {release.name}",
                    details=exc.details,
                ) from exc

    def wait_rollout(self, release: Release, timeout: float) -> None:
        """Every desired replica ready (Helm's --wait has usually seen to it already)."""
        deadline = time.monotonic() + timeout
        while True:
            ready, desired = self.cluster.deployment_ready(release.namespace, release.name)
            if desired and ready >= desired:
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"{release.name}: {ready} of {desired} replica(s) ready after {timeout:.0f}s",
                    hint=f"kubectl --context {self.cluster.name} -n {release.namespace} "
                    f"logs deployment/{release.name} -c vllm",
                )
            time.sleep(5)

    def observe(self, name: str, namespace: str) -> Observed:
        """Ready replicas of the release's Deployment; an unreachable cluster is a detail."""
        try:
            ready, desired = self.cluster.deployment_ready(namespace, name)
        except DeployerError as exc:
            return Observed(running=False, detail=exc.message)
        except Exception as exc:  # the client's errors: status stays informative, not fatal
            return Observed(running=False, detail=f"cannot read the Deployment: {exc}"[:200])
        return Observed(
            running=ready > 0,
            healthy=desired > 0 and ready >= desired,
            detail=f"{ready}/{desired} replica(s) ready in {namespace} ({self.cluster.name})",
        )

    def logs(self, name: str, namespace: str, lines: int) -> Iterator[str]:
        """The engine's log from every pod (following is kubectl's job: logs -f)."""
        self.cluster.check_reachable()
        yield from self.cluster.pod_logs(namespace, name, lines)

    def destroy(self, name: str, namespace: str) -> bool:
        """``helm uninstall``; False when there was no such release. The model cache claim is
        kept (helm.sh/resource-policy: keep) so a reinstall does not download again."""
        done = runner.run(
            [*self._helm(namespace), "uninstall", name, "--wait"], check=False, timeout=600
        )
        if done.returncode == 0:
            return True
        if "not found" in done.stderr:
            return False
        raise CommandError(f"helm uninstall {name} failed", details=done.stderr.strip()[-2000:])

    @contextmanager
    def port_forward(self, namespace: str, service: str, port: int) -> Iterator[str]:
        """A local base URL (…/v1) forwarded to the Service while the block runs."""
        argv = [
            "kubectl",
            "--context",
            self.cluster.name,
            "--namespace",
            namespace,
            "port-forward",
            f"service/{service}",
            f":{port}",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None  # set by stdout=PIPE
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if match is None:
                raise CommandError(f"kubectl port-forward to {service} failed: {line.strip()}")
            yield f"http://127.0.0.1:{match.group(1)}/v1"
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def _helm(self, namespace: str) -> list[str | Path]:
        argv: list[str | Path] = [self.helm.path, "--namespace", namespace]
        if self.spec.context:
            argv += ["--kube-context", self.spec.context]
        return argv
