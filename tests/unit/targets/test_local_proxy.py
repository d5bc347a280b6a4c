"""The local target's HAProxy: its config and runtime-API commands as data, then the real HAProxy
(Debian's package, installed by setup.sh) switching between two small HTTP servers while a
streamed response is held open on the old one: the stream finishes whole, the next request goes
to the new server, and the old one counts its session until the stream ends."""

from __future__ import annotations

import http.server
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from deployer.errors import CommandError
from deployer.targets.local.proxy import (
    Proxy,
    ProxyConfig,
    other,
    render,
    retire_command,
    sessions,
    switch_commands,
)

CONFIG = ProxyConfig(
    deployment="demo",
    bind_host="127.0.0.1",
    port=8011,
    servers={"a": 21001},
    active="a",
)


def test_the_config_forwards_http_per_request_to_the_active_slot() -> None:
    text = render(CONFIG)
    lines = [line.strip() for line in text.splitlines()]
    assert "master-worker" in lines
    assert "stats socket unix@./haproxy.sock mode 600 level admin" in lines
    assert "mode http" in lines
    assert "option http-server-close" in lines
    assert "bind 127.0.0.1:8011" in lines
    assert "server a 127.0.0.1:21001" in lines
    assert "server b 127.0.0.1:9 disabled" in lines, "the unused slot is in maintenance"
    assert "timeout server 10m" in lines, "a streamed answer may pause"
    assert text == render(CONFIG), "deterministic"


@pytest.mark.parametrize(
    ("host", "bind"), [("0.0.0.0", "bind 0.0.0.0:8011"), ("::", "bind [::]:8011")]
)
def test_the_config_binds_the_manifests_address(host: str, bind: str) -> None:
    config = ProxyConfig(**{**CONFIG.__dict__, "bind_host": host})
    assert bind in [line.strip() for line in render(config).splitlines()]


def test_the_second_slot_once_switched() -> None:
    config = ProxyConfig(**{**CONFIG.__dict__, "servers": {"a": 21001, "b": 21002}, "active": "b"})
    lines = [line.strip() for line in render(config).splitlines()]
    assert "server a 127.0.0.1:21001 disabled" in lines
    assert "server b 127.0.0.1:21002" in lines


def test_a_switch_readies_the_new_slot_before_draining_the_old() -> None:
    assert switch_commands("b", 21002, "a") == [
        "set server engines/b addr 127.0.0.1 port 21002",
        "set server engines/b state ready",
        "set server engines/a state drain",
    ]
    assert retire_command("a") == "set server engines/a state maint"
    assert (other("a"), other("b")) == ("b", "a")


STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot\n"
    "published,FRONTEND,,,3,5,4096,10\n"
    "engines,a,0,0,2,3,,8\n"
    "engines,b,0,0,0,1,,2\n"
    "engines,BACKEND,0,0,2,3,410,10\n"
)


def test_sessions_per_server_from_show_stat() -> None:
    assert sessions(STAT) == {"a": 2, "b": 0}


def test_an_answer_that_is_not_csv_is_an_error() -> None:
    with pytest.raises(CommandError, match="show stat answered"):
        sessions("Unknown command.\n")


# --- the real HAProxy ----------------------------------------------------------------------------


class Backend:
    """An HTTP server answering its own name; ``/stream`` sends one chunk, then waits for
    ``release`` before the last one."""

    def __init__(self, word: str) -> None:
        self.release = threading.Event()
        self.streaming = threading.Event()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/stream":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._chunk(f"data: {word}-1\n\n")
                    backend.streaming.set()
                    backend.release.wait(30)
                    self._chunk(f"data: {word}-2\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                body = word.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("A"), Backend("B")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    # Deeper than a Unix socket's path may be (107 bytes): the socket is reached all the same.
    started = Proxy(tmp_path / ("deep" * 30) / "demo")
    yield started
    started.stop()


def test_haproxy_switches_with_the_runtime_api_while_a_stream_finishes(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    port = free_port()
    config = ProxyConfig("demo", "127.0.0.1", port, {"a": a.port}, "a")
    supervisor = proxy.start(config)
    assert stat.S_IMODE(proxy.socket.stat().st_mode) == 0o600
    url = f"http://127.0.0.1:{port}"
    received: list[str] = []
    with httpx.Client(timeout=30) as client, httpx.Client(timeout=30) as streamer:
        assert client.get(f"{url}/").text == "A"

        def stream() -> None:
            with streamer.stream("GET", f"{url}/stream") as reply:
                received.extend(reply.iter_text())

        held = threading.Thread(target=stream)
        held.start()
        assert a.streaming.wait(10), "the stream reached the old server"
        for command in switch_commands("b", b.port, "a"):
            proxy.api.run(command)
        assert client.get(f"{url}/").text == "B", "the kept-alive client's next request moved"
        assert proxy.api.sessions() == {"a": 1, "b": 0}, "the stream still runs on the old one"
        a.release.set()
        held.join(10)
        assert "".join(received) == "data: A-1\n\ndata: A-2\n\n", "the stream finished whole"
        assert proxy.api.sessions()["a"] == 0
        proxy.api.run(retire_command("a"))
        assert client.get(f"{url}/").text == "B"
    with pytest.raises(CommandError, match="No such server"):
        proxy.api.run("set server engines/c state ready")
    assert proxy.stop()
    assert not psutil.pid_exists(supervisor) or psutil.Process(supervisor).status() == "zombie"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again
    assert not proxy.stop(), "stopping twice is not an error"


def test_a_killed_haproxy_is_restarted_by_its_supervisor_with_its_config(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    port = free_port()
    proxy.start(ProxyConfig("demo", "127.0.0.1", port, {"a": a.port}, "a"))
    for command in switch_commands("b", b.port, "a"):
        proxy.api.run(command)
    # What the switch writes for a restart: the new slot active.
    proxy.write_config(ProxyConfig("demo", "127.0.0.1", port, {"a": a.port, "b": b.port}, "b"))
    record = proxy.record()
    assert record is not None
    [master] = psutil.Process(record["supervisor_pid"]).children()
    master.kill()
    master.wait(10)
    deadline = time.monotonic() + 30
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    assert answer == "B", "restarted from the rewritten config"
    [again] = psutil.Process(record["supervisor_pid"]).children()
    assert again.pid != master.pid
