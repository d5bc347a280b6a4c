"""The SSH target's pure helpers: the arguments the role gets, the model's hash list, and the
supervisor's environment file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deployer.targets.local.supervisor import read_env_file
from deployer.targets.ssh.inventory import Host
from deployer.targets.ssh.target import Replica, file_hashes, host_args


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "/m", "--host", "127.0.0.1", "--port", "8000"], []),
        (
            ["--model", "/m", "--served-model-name", "x", "--port", "9", "--enforce-eager"],
            ["--served-model-name", "x", "--enforce-eager"],
        ),
        (["--port=8000", "--dtype", "bfloat16"], ["--dtype", "bfloat16"]),
    ],
)
def test_host_args_drop_what_the_role_sets_per_host(args: list[str], expected: list[str]) -> None:
    assert host_args(args) == expected


def test_file_hashes_list_every_file_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub" / "w.bin").write_bytes(b"abc")
    assert file_hashes(tmp_path) == [
        {"path": "config.json", "sha256": hashlib.sha256(b"{}").hexdigest()},
        {"path": "sub/w.bin", "sha256": hashlib.sha256(b"abc").hexdigest()},
    ]


def test_replica_paths_and_urls_follow_the_host_root_label() -> None:
    host = Host(address="10.0.0.5", labels={"host_root": "/srv/h1/"})
    replica = Replica("h1", host)
    assert replica.run_dir("demo") == "/srv/h1/opt/deployer/deployments/demo"
    assert replica.base_url(8000) == "http://10.0.0.5:8000/v1"
    assert Replica("h2", Host(address="10.0.0.6")).run_dir("d") == "/opt/deployer/deployments/d"


def test_env_file_lines_become_variables(tmp_path: Path) -> None:
    path = tmp_path / "engine.env"
    path.write_text("# comment\n\nVLLM_API_KEY=dk-a=b\n")
    assert read_env_file(path) == {"VLLM_API_KEY": "dk-a=b"}
