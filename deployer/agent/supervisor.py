"""deployer's supervisor: keeps one engine process alive, like a tiny systemd unit.

Run as ``python -m deployer.agent.supervisor RUNTIME_DIR`` in its own session, so it
outlives the ``deployer apply`` that started it. It reads ``launch.json`` (argv and non-secret
environment), starts the engine in a process group of its own with output appended
to ``engine.log`` (or the file ``launch.json`` names as ``log``: the local target supervises its
HAProxy the same way), restarts it on failure with backoff (at most ``max_restarts`` within
``restart_window`` seconds), and on SIGTERM stops the whole group (SIGTERM, then SIGKILL after
``stop_timeout``). Its state is ``supervisor.json``, replaced atomically on every change.

``launch.json`` may name an ``env_file`` (``KEY=VALUE`` lines, mode 0600): its variables are added
to the engine's environment, which is how the SSH target's hosts hand the API key over without
putting it on a command line. ``--detach`` starts the supervisor in a session of its own, with
output appended to ``supervisor.log``, prints its pid and returns at once: the SSH target starts
it that way from an ssh session, inside the host's network namespace.

Only the standard library (and :mod:`deployer.agent.atomic`) is imported: this process lives as
long as the deployment, and the SSH target's role copies the ``deployer.agent`` package alone to
hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deployer.agent import atomic

#: What ``python -m`` runs: the local target and the SSH target's role start it by this name.
MODULE = "deployer.agent.supervisor"
#: ``pgrep -f`` pattern (extended regex) of a supervisor's command line, to be followed by
#: `` RUNTIME_DIR$``: this module, or ``deployer.targets.local.supervisor``, where earlier
#: deployers kept it (a host upgraded in place may still run one: it is found, stopped and
#: replaced like any supervisor whose code changed).
PROCESS_PATTERN = r"deployer\.(agent|targets\.local)\.supervisor"


class Supervisor:
    def __init__(self, runtime_dir: Path) -> None:
        self.dir = runtime_dir
        self.launch: dict[str, Any] = json.loads((runtime_dir / "launch.json").read_text())
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {
            "supervisor_pid": os.getpid(),
            "engine_pid": None,
            "starts": 0,
            "status": "starting",
            "exits": [],
        }

    def _save(self) -> None:
        atomic.write_json(self.dir / "supervisor.json", self.state)

    def _env(self) -> dict[str, str]:
        # The API key arrives in this process's own environment (readable by its owner only),
        # never in launch.json.
        env = dict(os.environ)
        # Variables the engine would read as settings over its argv (llama.cpp's HOST, PORT,
        # N_CTX, ...), in any case: launch.json lists them; the key is never among them.
        remove = {name.lower() for name in self.launch.get("env_remove", [])}
        env = {k: v for k, v in env.items() if k.lower() not in remove}
        env_file = self.launch.get("env_file")
        if env_file:
            env.update(read_env_file(Path(env_file)))
        env.update(self.launch.get("env", {}))
        return env

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        self._stop_child()

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)

    def _kill_group_after_timeout(self, child: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + float(self.launch.get("stop_timeout", 20))
        while time.monotonic() < deadline:
            rc = child.poll()
            if rc is not None:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        rc = child.wait()
        # Workers the engine forked live in its group; make sure none outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        return rc

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        max_restarts = int(self.launch.get("max_restarts", 5))
        window = float(self.launch.get("restart_window", 300))
        backoff = 1.0
        recent: list[float] = []
        while not self.stopping:
            with open(self.dir / self.launch.get("log", "engine.log"), "ab") as log:
                self.child = subprocess.Popen(
                    self.launch["argv"],
                    env=self._env(),
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
            self.state.update(engine_pid=self.child.pid, status="running", started_at=time.time())
            self.state["starts"] += 1
            self._save()
            while self.child.poll() is None and not self.stopping:
                time.sleep(0.2)
            rc = self._kill_group_after_timeout(self.child)
            self.state["exits"] = [*self.state["exits"][-9:], {"rc": rc, "at": time.time()}]
            self.state.update(engine_pid=None, last_exit_code=rc)
            if self.stopping:
                break
            now = time.time()
            recent = [t for t in recent if now - t < window] + [now]
            if len(recent) > max_restarts:
                self.state["status"] = "failed"
                self._save()
                return 1
            self.state["status"] = "restarting"
            self._save()
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
        self.state["status"] = "stopped"
        self._save()
        return 0


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path``; blank lines and ``#`` comments are skipped."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value
    return env


def detach(runtime_dir: Path) -> int:
    """Start a supervisor for ``runtime_dir`` in its own session and return its pid at once."""
    with open(runtime_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(runtime_dir)],
            cwd=runtime_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def main(argv: list[str]) -> int:
    detached = argv[:1] == ["--detach"]
    args = argv[1:] if detached else argv
    if len(args) != 1:
        print(
            f"usage: python -m {MODULE} [--detach] RUNTIME_DIR",
            file=sys.stderr,
        )
        return 2
    if detached:
        print(detach(Path(args[0])))
        return 0
    return Supervisor(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
