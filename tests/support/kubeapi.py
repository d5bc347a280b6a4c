"""A loopback stand-in for a Kubernetes API server, for the few calls deployer's own client
makes (version, namespaces, Secrets, one Deployment), in the real wire format (JSON over HTTP,
the API's paths and status objects).

No Kubernetes API server can run on these machines, so this is a fake, and the tests that use
it say so. It does not run workloads: a Deployment is whatever the test puts in ``objects``.
Every request is kept (method, path, User-Agent), so a test can tell that Helm (User-Agent
``Helm/...``) never called.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A kubeconfig whose one context, ``prod``, points at a closed port (nothing listens on 9).
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:9"}
contexts:
  - name: prod
    context: {cluster: nowhere, user: nobody}
current-context: prod
users:
  - name: nobody
    user: {token: not-a-secret}
"""


@dataclass
class KubeApi:
    url: str
    #: path -> object, e.g. "/apis/apps/v1/namespaces/demo/deployments/x" -> {...}
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def kubeconfig(self, context: str = "standin") -> str:
        return (
            "apiVersion: v1\nkind: Config\n"
            f'clusters:\n  - name: standin\n    cluster: {{server: "{self.url}"}}\n'
            f"contexts:\n  - name: {context}\n    context: {{cluster: standin, user: u}}\n"
            f"current-context: {context}\n"
            "users:\n  - name: u\n    user: {token: standin-not-a-secret}\n"
        )

    def deployment(
        self,
        namespace: str,
        name: str,
        *,
        annotations: dict[str, str],
        args: list[str],
        ready: int = 1,
    ) -> None:
        """A Deployment whose engine container ``vllm`` runs with ``args``."""
        self.objects[f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "vllm", "image": "vllm", "args": args}]},
                },
            },
            "status": {"replicas": 1, "readyReplicas": ready},
        }


VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@contextmanager
def kube_api() -> Iterator[KubeApi]:
    """A stand-in API server on a free loopback port, until the block ends."""
    api = KubeApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> str:
            path = self.path.split("?", 1)[0]
            api.requests.append((self.command, path, self.headers.get("User-Agent", "")))
            return path

        def do_GET(self) -> None:
            path = self._record()
            if path.rstrip("/") == "/version":
                self._send(200, VERSION)
            elif path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
                name = path.rsplit("/", 1)[1]
                self._send(
                    200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}}
                )
            elif path in api.objects:
                self._send(200, api.objects[path])
            else:
                self._send(404, _status(404, "NotFound", f"{path} not found"))

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", "0"))
            body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            return body

        def do_POST(self) -> None:
            path = self._record()
            body = self._body()
            name = body.get("metadata", {}).get("name", "")
            api.objects[f"{path}/{name}"] = body
            self._send(201, body)

        def do_PUT(self) -> None:
            path = self._record()
            api.objects[path] = self._body()
            self._send(200, api.objects[path])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
