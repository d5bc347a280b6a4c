"""What a user sees when apply cannot succeed: one line, a hint, no traceback, nothing left behind.

These talk to the real engine where the failure is the engine's own (a crash, a slow start).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import Result, deployer

NAME = "smollm2-demo"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    deployer("destroy", NAME, home=path)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO_MANIFEST.read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "hint:" in result.stderr


def no_processes_of(home: Path) -> bool:
    return not any(
        str(home) in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    )


def test_an_engine_that_crashes_fails_apply_with_its_log(home: Path, tmp_path: Path) -> None:
    manifest = edited(tmp_path, "enforce-eager: true", "enforce-eager: true\n      no-such-flag: 1")
    result = deployer("apply", str(manifest), home=home)
    assert_one_line_error(result, "exited with code", f"deployer logs {NAME}")
    assert "no-such-flag" in result.stderr, "the log tail should show the engine's complaint"
    assert no_processes_of(home)
    [entry] = json.loads(deployer("status", "-o", "json", home=home).stdout)
    assert entry["status"] == "failed"


def test_a_health_timeout_fails_apply_and_stops_the_engine(home: Path, tmp_path: Path) -> None:
    manifest = edited(tmp_path, "  serving:\n", "  serving:\n    startupTimeoutSeconds: 3\n")
    result = deployer("apply", str(manifest), home=home)
    assert_one_line_error(result, "did not answer", "within 3s", "startupTimeoutSeconds")
    assert no_processes_of(home)


def test_a_port_in_use_is_named(home: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        manifest = edited(tmp_path, "  serving:\n", f"  serving:\n    port: {port}\n")
        result = deployer("apply", str(manifest), home=home)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is in use", "spec.serving.port")
    assert no_processes_of(home)


def test_an_engine_that_is_not_installed_says_how_to_install_it(home: Path, tmp_path: Path) -> None:
    result = deployer(
        "apply", str(DEMO_MANIFEST), home=home, env={"DEPLOYER_CACHE": str(tmp_path / "empty")}
    )
    assert_one_line_error(result, "is not installed", "deployer engine install vllm")


def test_a_missing_model_folder_says_how_to_get_the_demo(home: Path, tmp_path: Path) -> None:
    manifest = edited(
        tmp_path,
        "path: ~/.cache/deployer/demo/SmolLM2-135M-Instruct",
        f"path: {tmp_path / 'nowhere'}",
    )
    result = deployer("apply", str(manifest), home=home)
    assert_one_line_error(result, "does not exist", "deployer demo prepare")
    # The failed first apply is a deployment status knows, not a key left on disk for nobody.
    [entry] = json.loads(deployer("status", "-o", "json", home=home).stdout)
    assert (entry["name"], entry["status"]) == (NAME, "failed")
    assert "does not exist" in entry["message"]
    key = home / "deployments" / NAME / "api-key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert deployer("destroy", NAME, home=home).code == 0
    assert not key.exists()


@pytest.mark.parametrize("command", [["logs", "ghost"], ["destroy", "ghost"], ["smoke", "ghost"]])
def test_an_unknown_deployment_is_a_clear_error(home: Path, command: list[str]) -> None:
    result = deployer(*command, home=home)
    assert_one_line_error(result, "ghost")


BAD_MANIFESTS = {
    "misspelt key": (
        "    maxModelLen: 2048\n",
        "    maxModelLenght: 2048\n",
        "spec.serving.maxModelLenght: unknown key",
        "maxModelLen",
    ),
    "bad name": ("name: smollm2-demo", "name: SmolLM2_Demo", "metadata.name", "DNS-1123"),
    "missing field": (
        "    path: ~/.cache/deployer/demo/SmolLM2-135M-Instruct\n",
        "",
        "spec.model.path",
        "",
    ),
    "YAML syntax error": ("    dtype: bfloat16\n", "    dtype: [bfloat16\n", "invalid YAML", ""),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_a_bad_manifest_is_one_line_naming_file_and_line(
    case: str, home: Path, tmp_path: Path
) -> None:
    old, new, message, hint = BAD_MANIFESTS[case]
    manifest = edited(tmp_path, old, new)
    for command in ("apply", "validate"):
        result = deployer(command, str(manifest), home=home)
        assert result.code == 1, result.output
        assert "Traceback" not in result.output
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: {manifest}:"), first
        line = int(first.split(":")[2])
        assert 1 <= line <= len(manifest.read_text().splitlines())
        assert message in first
        assert hint in result.stderr
