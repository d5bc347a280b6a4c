"""A kubeconfig context, through the official ``kubernetes`` client: the only code that talks to
a live API server. Kept thin on purpose: no cluster can run where deployer is tested, so what
is here is what has not run against one (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import base64
from typing import Any

from deployer.errors import NotFoundError, TemporaryError
from deployer.targets.base import WHOLE_LOG

#: Seconds to wait for the API server before calling it unreachable.
CONNECT_TIMEOUT = 5


class ClusterUnreachableError(TemporaryError):
    """The context's API server did not answer; the message names the context and server."""

    code = "cluster_unreachable"


class Cluster:
    """One kubeconfig context (``None``: the current one)."""

    def __init__(self, context: str | None) -> None:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        self.context = context
        self._dynamic: Any = None
        try:
            contexts, current = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, TypeError) as exc:
            raise NotFoundError(
                f"no usable kubeconfig for context {context or '(current)'}: {_first_line(exc)}",
                hint="set KUBECONFIG, or check it with: kubectl config get-contexts",
            ) from exc
        names = [c["name"] for c in contexts or []]
        if context is not None and context not in names:
            raise NotFoundError(
                f"kubeconfig has no context {context!r}",
                hint=f"known contexts: {', '.join(names) or 'none'}",
            )
        try:
            self.api = config.new_client_from_config(context=context)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, TypeError) as exc:
            raise NotFoundError(
                f"kubeconfig context {context or '(current)'} is not usable: {_first_line(exc)}",
                hint="check it with: kubectl config view --minify",
            ) from exc
        self.name = context or (current or {}).get("name", "(current)")
        self.server = str(self.api.configuration.host)

    def check_reachable(self) -> None:
        """Ask the API server its version; ClusterUnreachableError (one line) if it will not."""
        from kubernetes import client

        try:
            client.VersionApi(self.api).get_code(_request_timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # urllib3, ssl and ApiException all mean the same to a user
            raise ClusterUnreachableError(
                f"cannot reach the Kubernetes API of context {self.name!r} ({self.server}): "
                f"{_reason(exc)}",
                hint=f"check it with: kubectl --context {self.name} cluster-info "
                "(deployer render works without a cluster)",
            ) from exc

    def ensure_secret(self, namespace: str, name: str, data: dict[str, str]) -> bool:
        """Create or replace the Opaque Secret ``name``; True when it changed. The namespace is
        created when missing. Values never leave this function except to the API server."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api)
        self._ensure_namespace(namespace)
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "deployer"}
            ),
            type="Opaque",
            data=encoded,
        )
        try:
            current = core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespaced_secret(namespace, body)
            return True
        if (current.data or {}) == encoded:
            return False
        core.replace_namespaced_secret(name, namespace, body)
        return True

    def live(self, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
        """The live version of a rendered object, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import NotFoundError as DynamicNotFound
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if self._dynamic is None:  # discovery is a round of requests: once per Cluster
            self._dynamic = DynamicClient(self.api)  # type: ignore[no-untyped-call]
        resources = self._dynamic.resources
        try:
            api = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            return None  # the kind itself is not installed (a CRD such as ServiceMonitor)
        try:
            found = api.get(name=obj["metadata"]["name"], namespace=namespace)
        except (DynamicNotFound, ApiException) as exc:
            if isinstance(exc, ApiException) and exc.status not in (404, None):
                raise
            return None
        result: dict[str, Any] = found.to_dict()
        return result

    def deployment_ready(self, namespace: str, name: str) -> tuple[int, int]:
        """(ready replicas, desired replicas) of a Deployment; (0, 0) when it does not exist."""
        ready, desired, _, _ = self.deployment_state(namespace, name)
        return ready, desired

    def deployment_state(
        self, namespace: str, name: str, container: str = "vllm"
    ) -> tuple[int, int, dict[str, str], tuple[str, ...]]:
        """(ready replicas, desired replicas, annotations, ``container``'s args) of a
        Deployment; (0, 0, {}, ()) when it does not exist."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            found = client.AppsV1Api(self.api).read_namespaced_deployment(
                name, namespace, _request_timeout=CONNECT_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return 0, 0, {}, ()
            raise
        ready = found.status.ready_replicas if found.status else None
        desired = (found.spec.replicas if found.spec else None) or 0
        annotations = (found.metadata.annotations if found.metadata else None) or {}
        pod = found.spec.template.spec if found.spec and found.spec.template else None
        args = next(
            (
                tuple(c.args or ())
                for c in (pod.containers if pod else None) or []
                if c.name == container
            ),
            (),
        )
        return ready or 0, desired, dict(annotations), args

    def pod_logs(self, namespace: str, release: str, lines: int) -> list[str]:
        """The last ``lines`` lines of the engine container of each pod of ``release``, each
        prefixed with its pod's name when there are several."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        ).items
        names = sorted(str(p.metadata.name) for p in pods if p.metadata is not None)
        out: list[str] = []
        for pod in names:
            text = core.read_namespaced_pod_log(
                pod, namespace, container="vllm", tail_lines=None if lines == WHOLE_LOG else lines
            )
            prefix = f"{pod}: " if len(names) > 1 else ""
            out += [prefix + line for line in str(text).splitlines()]
        return out

    def _ensure_namespace(self, namespace: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api)
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))


def _reason(exc: BaseException) -> str:
    text = _first_line(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "certificate"):
        if marker.lower() in text.lower():
            return marker.lower()
    return text[:160]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
