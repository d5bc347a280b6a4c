"""The local target is ready when its own engine answers, not when anything on the port does.

An engine binds its port only once the model is loaded, so another process can take the port
after apply checked it was free. Real processes and sockets here: a "supervisor" that serves the
health URL itself, and one that never binds while another process answers on the port.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from deployer import atomic
from deployer.agent.runtime import RuntimeRecord
from deployer.errors import HealthTimeoutError
from deployer.events import Event, EventBus
from deployer.settings import Settings
from deployer.targets.local.target import RUNTIME, LocalTarget, free_port

SERVE_HEALTH = """
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(Settings(home=tmp_path / "home", cache=tmp_path / "cache"))


@pytest.fixture
def supervisors() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def started(
    target: LocalTarget, name: str, supervisor: subprocess.Popen[bytes], port: int
) -> SimpleNamespace:
    """runtime.json as deploy writes it, for ``supervisor`` on ``port``; a request for it.
    (Starting a real engine takes half a minute; the integration tests do that.)"""
    folder = target.settings.deployment_dir(name)
    folder.mkdir(parents=True)
    record = RuntimeRecord(
        supervisor_pid=supervisor.pid,
        supervisor_create_time=psutil.Process(supervisor.pid).create_time(),
        spec_digest="d",
        port=port,
        endpoint=f"http://127.0.0.1:{port}/v1",
        health_url=f"http://127.0.0.1:{port}/health",
        started_at=0.0,
    )
    atomic.write_text(folder / RUNTIME, record.to_json())
    target._started.add(name)  # as deploy() marks the engines it started
    return SimpleNamespace(name=name, events=EventBus())


def test_its_own_engine_answering_is_ready(
    target: LocalTarget, supervisors: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    supervisors.append(subprocess.Popen([sys.executable, "-c", SERVE_HEALTH, str(port)]))
    request = started(target, "mine", supervisors[-1], port)
    target.wait_ready(request, timeout=20)  # type: ignore[arg-type]


def test_another_process_answering_on_the_port_is_not_ready(
    target: LocalTarget, supervisors: list[subprocess.Popen[bytes]]
) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        supervisors.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        request = started(target, "squatted", supervisors[-1], int(port))
        seen: list[Event] = []
        request.events.subscribe(seen.append)
        with pytest.raises(HealthTimeoutError) as raised:
            target.wait_ready(request, timeout=1.5)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    assert f"port {port} of squatted is answered by another process" in raised.value.message
    assert "apply again to plan a free one" in (raised.value.hint or "")
    assert any("answered by another process" in event.message for event in seen)
    assert not any("healthy" in event.message for event in seen)
