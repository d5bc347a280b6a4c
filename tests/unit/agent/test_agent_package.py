"""The agent package as hosts get it: the role copies all of it, and it runs on its own (the
standard library and nothing else from deployer)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deployer.agent import supervisor

ROOT = Path(__file__).resolve().parents[3]
AGENT = ROOT / "deployer" / "agent"
ROLE = ROOT / "playbooks" / "roles" / "model_server"


def role_vars() -> dict[str, object]:
    loaded: dict[str, object] = YAML(typ="safe").load((ROLE / "vars" / "main.yml").read_text())
    return loaded


def test_the_role_copies_every_file_of_the_agent_and_nothing_else() -> None:
    files = sorted(p.name for p in AGENT.iterdir() if p.suffix == ".py")
    assert role_vars()["model_server_agent_files"] == files
    assert not [p for p in AGENT.iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_the_role_starts_and_finds_the_supervisor_by_the_agents_names() -> None:
    assert role_vars()["model_server_supervisor_pattern"] == supervisor.PROCESS_PATTERN
    tasks = ROLE / "tasks"
    assert f"- {supervisor.MODULE}\n" in (tasks / "supervisor.yml").read_text()
    for name in ("supervisor.yml", "destroy.yml", "stop_supervisor.yml"):
        text = (tasks / name).read_text()
        assert "{{ model_server_supervisor_pattern }} {{ model_server_run_dir }}$" in text, name
        assert "deployer.targets" not in text, name


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def state(run_dir: Path) -> dict[str, object]:
    try:
        loaded: dict[str, object] = json.loads((run_dir / "supervisor.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return loaded


@pytest.fixture
def host_lib(tmp_path: Path) -> Path:
    """The agent laid out as the role lays it out on a host: ``lib/deployer/agent/`` and an
    empty ``lib/deployer/__init__.py``, nothing else of deployer."""
    lib = tmp_path / "lib"
    (lib / "deployer" / "agent").mkdir(parents=True)
    (lib / "deployer" / "__init__.py").write_text("")
    for name in role_vars()["model_server_agent_files"]:  # type: ignore[attr-defined]
        shutil.copy(AGENT / name, lib / "deployer" / "agent" / name)
    return lib


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "run"
    folder.mkdir()
    yield folder
    # Whatever happened, nothing the test started outlives it.
    for key in ("supervisor_pid", "engine_pid"):
        pid = state(folder).get(key)
        if isinstance(pid, int):
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)


def test_the_copied_agent_supervises_an_engine_with_the_standard_library_alone(
    host_lib: Path, run_dir: Path
) -> None:
    (run_dir / "engine.env").write_text("API_KEY=k-123\n")
    engine = "import os, time; print('up', os.environ['API_KEY'], flush=True); time.sleep(60)"
    launch = {
        "argv": [sys.executable, "-c", engine],
        "env": {},
        "env_file": str(run_dir / "engine.env"),
        "stop_timeout": 5,
    }
    (run_dir / "launch.json").write_text(json.dumps(launch))
    # -S: no site-packages, so deployer's own install cannot be found: the agent comes from lib.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(host_lib)}
    with open(run_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", supervisor.MODULE, str(run_dir)],
            env=env,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: state(run_dir).get("status") == "running" or proc.poll() is not None)
        assert proc.poll() is None, (run_dir / "supervisor.log").read_text()
        wait_for(lambda: "up k-123" in (run_dir / "engine.log").read_text())
        assert state(run_dir)["starts"] == 1

        proc.send_signal(signal.SIGTERM)

        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert state(run_dir)["status"] == "stopped"
    assert (run_dir / "supervisor.log").read_text() == ""


def test_detach_prints_the_pid_of_a_supervisor_in_a_session_of_its_own(
    host_lib: Path, run_dir: Path
) -> None:
    launch = {"argv": [sys.executable, "-c", "import time; time.sleep(60)"], "stop_timeout": 5}
    (run_dir / "launch.json").write_text(json.dumps(launch))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(host_lib)}

    started = subprocess.run(
        [sys.executable, "-S", "-m", supervisor.MODULE, "--detach", str(run_dir)],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert started.returncode == 0, started.stderr
    pid = int(started.stdout)
    wait_for(lambda: state(run_dir).get("status") == "running")
    assert state(run_dir)["supervisor_pid"] == pid
    assert os.getsid(pid) == pid
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: state(run_dir).get("status") == "stopped")
