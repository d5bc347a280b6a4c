"""The kubernetes target: a Helm release of the model-server chart in a context and namespace.

Its plan: ``render`` (the chart's values from the plan, rendered and validated), ``secrets``
(the API key and hub token as Secrets), ``deploy`` (``helm upgrade --install --wait --atomic``:
Helm rolls a failed upgrade back itself; skipped when the live Deployment carries the plan's spec
digest), ``ready`` (every replica ready) and ``smoke`` through ``kubectl port-forward`` to the
Service; an upgrade that passes ``--atomic`` but fails its smoke checks is rolled back
(``helm rollback``, :meth:`KubernetesTarget.roll_back`). ``destroy`` is ``helm uninstall``.
Not run against a cluster in deployer's tests (none can run there): the chart, the values and
the rendered objects are tested; this module is the thin rest.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from deployer import runner
from deployer.errors import CommandError, DeployerError, EngineStartError, UnsupportedError
from deployer.events import EventBus
from deployer.kube import render as kube_render
from deployer.kube.helm import Helm, find_helm
from deployer.kube.render import chart_dir
from deployer.kube.validate import KUBE_VERSIONS
from deployer.kube.values import DEFAULT_PORT, chart_values, describe_pin
from deployer.manifest.models import KubernetesTargetSpec, ModelDeployment
from deployer.planner import Observed, Plan, PlannedStep, StepAction, TargetSteps
from deployer.planner.plan import Placement
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator, host_memory_bytes, lookup
from deployer.targets.base import Change, DeployRequest, Endpoint, StepRunner
from deployer.targets.kubernetes.cluster import Cluster
from deployer.targets.kubernetes.diff import compare

#: Seconds the init container may take to download the weights, on top of the engine's start.
FETCH_ALLOWANCE = 1800
#: Seconds ``helm rollback`` may take to bring the previous revision's pods back.
ROLLBACK_TIMEOUT = 900
#: The Deployment annotation holding the plan's spec digest (see the chart's engine.specDigest).
DIGEST_ANNOTATION = "deployer.dev/spec-digest"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    values_text: str
    startup_seconds: int


class KubernetesTarget:
    kind: ClassVar[str] = "kubernetes"
    observes_offline: ClassVar[bool] = False

    def __init__(self, spec: KubernetesTargetSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.namespace = spec.namespace
        self._cluster: Cluster | None = None
        self._helm: Helm | None = None
        self._rendered: dict[str, tuple[Release, kube_render.RenderResult]] = {}

    @classmethod
    def from_spec(
        cls, spec: KubernetesTargetSpec, settings: Settings, base_dir: Path
    ) -> KubernetesTarget:
        return cls(spec, settings)

    def spec_record(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.spec.context)
        return self._cluster

    @property
    def helm(self) -> Helm:
        if self._helm is None:
            self._helm = find_helm(self.settings)
        return self._helm

    def preflight(self) -> None:
        self.cluster.check_reachable()

    # --- planning ------------------------------------------------------------------------------

    def placement(self, accelerator: str) -> Placement:
        """The cluster's nodes: the CPU when asked for, else a GPU of the named model."""
        if accelerator.lower() == "cpu":
            return Placement("cpu", cpu_accelerator(host_memory_bytes()))
        return Placement("cuda", None if accelerator == "auto" else lookup(accelerator))

    def default_port(self, name: str, host: str) -> int:
        return DEFAULT_PORT

    def plan_steps(self, deployment: ModelDeployment, port: int, *, offline: bool) -> TargetSteps:
        token = getattr(deployment.spec.model, "token", None)
        secrets = "API key and hub token" if token is not None else "API key"
        return TargetSteps(
            fetches_model=False,
            checks_engine=False,
            prepare=(
                PlannedStep(
                    name="render",
                    action=StepAction.CHECK,
                    reason=f"chart {kube_render.CHART_NAME} values from this plan, validated "
                    f"for Kubernetes {', '.join(KUBE_VERSIONS)}",
                ),
                PlannedStep(
                    name="secrets",
                    action=StepAction.CHECK,
                    reason=f"{secrets} as Secrets in {self.namespace}",
                ),
            ),
            deploy_how="helm upgrade --install --wait --atomic",
            ready="every replica ready",
            smoke_where=" through a port-forward",
            endpoint=f"http://{deployment.name}.{self.namespace}.svc:{port}/v1",
            bind_host="0.0.0.0",  # noqa: S104 - the pod's network namespace; the Service in front
            digest_extra=(("chart", _chart_digest()), ("manifest", _manifest_digest(deployment))),
            unobserved="not observed (deployer plan does not contact the cluster; deployer diff "
            "does)",
        )

    def step_runners(self) -> Mapping[str, StepRunner]:
        return {"render": self.render, "secrets": self._secrets}

    def render(self, request: DeployRequest) -> kube_render.RenderResult:
        """The release's objects from the plan, validated; kept for the deploy step."""
        values = chart_values(request.deployment, request.plan, request.lock)
        rendered = kube_render.render(
            kube_render.RenderInput(
                name=request.name,
                namespace=self.namespace,
                manifest_file=f"{request.name}.yaml",
                values=values,
                formats={kube_render.Format.manifests},
            ),
            self.helm,
        )
        release = Release(
            name=request.name,
            namespace=self.namespace,
            values_text=kube_render.dump_yaml(values.as_yaml_data()),
            startup_seconds=values.engine.startup_seconds,
        )
        self._rendered[request.name] = (release, rendered)
        request.events.log(
            f"{rendered.objects} objects valid for Kubernetes {', '.join(rendered.versions)}; "
            f"{describe_pin(values)}",
            step="render",
        )
        return rendered

    def diff(self, request: DeployRequest) -> list[Change]:
        """The rendered objects against the live ones (drift included), read-only."""
        rendered = self.render(request)
        objects = kube_render.load_objects(
            rendered.files[f"manifests/{request.name}.yaml"].decode()
        )
        self.cluster.check_reachable()
        changes = [compare(obj, self.cluster.live(obj, self.namespace)) for obj in objects]
        return [
            Change(f"{c.kind}/{c.name}", "create" if c.action == "create" else ", ".join(c.fields))
            for c in changes
            if c.action != "unchanged"
        ]

    def _secrets(self, request: DeployRequest) -> None:
        values = chart_values(request.deployment, request.plan, request.lock)
        self.cluster.ensure_secret(
            self.namespace, values.api_key.existing_secret, {"api-key": request.api_key}
        )
        if request.hub_token and values.hub_token.existing_secret:
            self.cluster.ensure_secret(
                self.namespace, values.hub_token.existing_secret, {"token": request.hub_token}
            )

    @contextmanager
    def smoke_endpoints(self, name: str, plan: Plan | None = None) -> Iterator[list[str]]:
        port = plan.engine.port if plan is not None else DEFAULT_PORT
        with self.port_forward(self.namespace, name, port) as local:
            yield [local]

    def endpoint(self, name: str) -> Endpoint:
        base = f"http://{name}.{self.namespace}.svc:{DEFAULT_PORT}"
        return Endpoint(base_url=f"{base}/v1", health_url=f"{base}/health", api_key=None)

    # --- changes -------------------------------------------------------------------------------

    def deploy(self, request: DeployRequest) -> None:
        """Install or upgrade the release and wait for it; Helm rolls back a failed upgrade
        (``--atomic``). Raises EngineStartError with Helm's reason."""
        if request.name not in self._rendered:
            self.render(request)
        release, _ = self._rendered[request.name]
        events = request.events
        timeout = release.startup_seconds + FETCH_ALLOWANCE
        with tempfile.TemporaryDirectory(prefix="deployer-helm-") as tmp:
            values = Path(tmp) / "values.yaml"
            values.write_text(release.values_text)
            argv = [
                *self._helm_argv(release.namespace),
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

    def roll_back(self, name: str, events: EventBus) -> str:
        """``helm rollback`` to the revision before this apply's upgrade, waiting for its pods:
        the upgrade passed ``--atomic`` but failed the smoke checks after it."""
        namespace = self.namespace
        argv = [
            *self._helm_argv(namespace),
            "rollback",
            name,
            "--wait",
            "--timeout",
            f"{ROLLBACK_TIMEOUT}s",
        ]
        events.log(f"helm rollback {name} (up to {ROLLBACK_TIMEOUT}s)", step="rollback")
        try:
            runner.run(argv, timeout=ROLLBACK_TIMEOUT + 120)
        except CommandError as exc:
            raise EngineStartError(
                f"helm could not roll {name} back in {namespace}",
                hint=f"helm --namespace {namespace} history {name}",
                details=exc.details,
            ) from exc
        return f"helm release {name}'s previous revision"

    def wait_ready(self, request: DeployRequest, timeout: float) -> None:
        """Every desired replica ready (Helm's --wait has usually seen to it already)."""
        name = request.name
        deadline = time.monotonic() + timeout
        while True:
            ready, desired = self.cluster.deployment_ready(self.namespace, name)
            if desired and ready >= desired:
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"{name}: {ready} of {desired} replica(s) ready after {timeout:.0f}s",
                    hint=f"kubectl --context {self.cluster.name} -n {self.namespace} "
                    f"logs deployment/{name} -c vllm",
                )
            time.sleep(5)

    def observe(self, name: str) -> Observed:
        """Ready replicas of the release's Deployment and the spec digest it was planned from;
        an unreachable cluster is a detail."""
        namespace = self.namespace
        try:
            ready, desired, annotations, args = self.cluster.deployment_state(namespace, name)
        except DeployerError as exc:
            return Observed(running=False, detail=exc.message)
        except Exception as exc:  # the client's errors: status stays informative, not fatal
            return Observed(running=False, detail=f"cannot read the Deployment: {exc}"[:200])
        return Observed(
            running=ready > 0,
            healthy=desired > 0 and ready >= desired,
            spec_digest=annotations.get(DIGEST_ANNOTATION),
            args=args,
            detail=f"{ready}/{desired} replica(s) ready in {namespace} ({self.cluster.name})",
        )

    def logs(self, name: str, lines: int, follow: bool, host: str | None = None) -> Iterator[str]:
        """The engine's log from every pod (following is kubectl's job: logs -f)."""
        if host is not None:
            raise UnsupportedError(
                f"{name} does not run on SSH hosts; --host applies to ssh targets only",
                hint=f"deployer logs {name}",
            )
        if follow:
            raise UnsupportedError(
                f"{name} runs on Kubernetes; deployer does not follow pod logs",
                hint=f"kubectl -n {self.namespace} logs -f deployment/{name} -c vllm",
            )
        self.cluster.check_reachable()
        return iter(self.cluster.pod_logs(self.namespace, name, lines))

    def destroy(self, name: str, events: EventBus) -> bool:
        """``helm uninstall``; False when there was no such release. The model cache claim is
        kept (helm.sh/resource-policy: keep) so a reinstall does not download again."""
        self.cluster.check_reachable()
        done = runner.run(
            [*self._helm_argv(self.namespace), "uninstall", name, "--wait"],
            check=False,
            timeout=600,
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
        with runner.background(argv) as forward:
            line = forward.readline(timeout=60)
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if match is None:
                raise CommandError(f"kubectl port-forward to {service} failed: {line.strip()}")
            yield f"http://127.0.0.1:{match.group(1)}/v1"

    def _helm_argv(self, namespace: str) -> list[str | Path]:
        argv: list[str | Path] = [self.helm.path, "--namespace", namespace]
        if self.spec.context:
            argv += ["--kube-context", self.spec.context]
        return argv


@functools.cache
def _chart_digest() -> str:
    """A digest of the chart's files: a new chart changes what runs. Once per process: the
    chart is deployer's own, it does not change while deployer runs."""
    digest = hashlib.sha256()
    for name, data in kube_render.chart_files(chart_dir()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


#: What the release does not run with: how the deployment is measured, rolled out and tuned.
#: Left out of its digest, so that editing an SLO or a benchmark does not restart its pods.
_NOT_RELEASED = {"spec": {"slo", "benchmark", "rollout", "tune"}}


def _manifest_digest(deployment: ModelDeployment) -> str:
    canonical = deployment.model_dump_json(
        by_alias=True, exclude_defaults=False, exclude=_NOT_RELEASED
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
