"""``deployer server`` as a user starts it, for tests: on a free loopback port, its log in a file,
and tokens made with ``deployer server token create``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.cli import deployer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_of(home: Path, port: int) -> Path:
    """Where :func:`start_server` writes the server's output."""
    return home / f"server-{port}.log"


def start_server(home: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``deployer server`` on ``port`` with ``env`` over this process's environment, answering
    ``/healthz``; its log goes to :func:`log_of` (a file: an unread pipe would fill up and stall
    it)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "deployer", "server", "--port", str(port), "--scrape-interval", "1"],
        env={**os.environ, "DEPLOYER_HOME": str(home), **(env or {})},
        stdout=log_of(home, port).open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    server.wait()
    raise AssertionError(f"deployer server did not answer: {log_of(home, port).read_text()}")


def token(home: Path, role: str, env: dict[str, str] | None = None) -> str:
    """A new token of ``role``, as ``deployer server token create`` prints it."""
    made = deployer("server", "token", "create", "--role", role, "--name", role, home=home, env=env)
    assert made.code == 0, made.output
    return made.stdout.strip()
