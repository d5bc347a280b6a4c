"""The engine's systemd unit, rendered by real Ansible from the role's template and checked by
systemd's own parser (``systemd-analyze verify``).

What cannot run here: starting the unit. The test hosts are network namespaces without systemd
as PID 1 (they use deployer's supervisor, whose restarts test_ssh_apply.py tests), so the unit's
restart on failure is systemd's behaviour as configured, not something this suite watched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "playbooks" / "roles" / "model_server" / "templates" / "engine.service.j2"
ANSIBLE = Path(sys.executable).parent / "ansible"
KEY = "dk-this-key-never-enters-the-unit"


def render(tmp_path: Path, **overrides: object) -> str:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    variables = {
        "model_server_deployment": "demo",
        "model_server_service_user": "deployer-engine",
        "model_server_run_dir": str(run_dir),
        "model_server_engine_env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "model_server_argv": [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            "/opt/deployer/models/with space",
            "--port",
            "8000",
        ],
        "model_server_stop_timeout": 10,
        "model_server_memory_max": "",
        "model_server_api_key": KEY,
        **overrides,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    unit = tmp_path / "deployer-demo.service"
    done = subprocess.run(
        [
            str(ANSIBLE),
            "localhost",
            "-c",
            "local",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={TEMPLATE} dest={unit}",
            "-e",
            f"@{tmp_path / 'vars.json'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return unit.read_text()


def verify(unit: Path) -> str:
    """systemd-analyze's complaints about ``unit`` (empty: none)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run bash scripts/ssh-test-hosts-setup.sh")
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else " (failed)")


def test_the_unit_restarts_on_failure_as_its_own_user_with_limits(tmp_path: Path) -> None:
    text = render(tmp_path, model_server_memory_max="90%")
    lines = set(text.splitlines())
    assert "Restart=on-failure" in lines
    assert "User=deployer-engine" in lines
    assert f"EnvironmentFile={tmp_path}/run/engine.env" in lines
    assert "LimitNOFILE=65536" in lines
    assert "MemoryMax=90%" in lines
    assert f"StandardOutput=append:{tmp_path}/run/engine.log" in lines
    assert "'/opt/deployer/models/with space'" in text
    assert KEY not in text
    assert verify(tmp_path / "deployer-demo.service") == ""


def test_without_a_memory_ceiling_the_unit_sets_none(tmp_path: Path) -> None:
    text = render(tmp_path)
    assert "MemoryMax" not in text
    assert verify(tmp_path / "deployer-demo.service") == ""


def test_systemd_would_reject_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: systemd's parser names a bad line."""
    render(tmp_path)
    unit = tmp_path / "deployer-demo.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "Failed to parse service restart specifier" in verify(unit)
