"""Hostile and degenerate inventories: each is one located error a user can act on, never a
silent empty answer, a hang, a traceback or all the memory."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.targets.ssh import load_inventory
from deployer.targets.ssh.inventory import MAX_INI_LINE


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problem(path: Path) -> ManifestError:
    """The first problem loading ``path`` reports (there must be one)."""
    with pytest.raises(ManifestError) as info:
        load_inventory(path)
    return info.value.problems[0]


# --- what is read ---------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["hosts.ini", "hosts.yaml"])
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    os.mkfifo(path)

    found = problem(path)

    assert (found.location, found.reason) == (str(path), "is a named pipe, not a regular file")
    assert found.hint


@pytest.mark.timeout(20)
def test_a_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.symlink_to("/dev/zero")

    found = problem(path)

    assert (found.location, found.reason) == (
        str(path),
        "is a character device, not a regular file",
    )


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["hosts.ini", "hosts.yaml"])
def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with path.open("wb") as stream:
        stream.truncate(1024**3)  # 1 GiB, sparse

    found = problem(path)

    assert found.location == str(path)
    assert found.reason.startswith("inventory is larger than")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.mkdir()

    assert problem(path).reason == "is a folder, not a regular file"


def test_a_missing_ini_inventory_keeps_its_message(tmp_path: Path) -> None:
    found = problem(tmp_path / "hosts")

    assert (found.location, found.reason) == (str(tmp_path / "hosts"), "no such inventory file")
    assert found.hint == "check the path; in a manifest it is relative to the manifest's folder"


def test_an_ini_inventory_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(b"[gpu]\ngpu1\ngpu\xff2\n")

    found = problem(path)

    assert (found.location, found.reason) == (f"{path}:3:1", "not UTF-8 text (byte 15)")


@pytest.mark.timeout(20)
def test_a_giant_ini_line_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    # shlex takes minutes on one multi-megabyte word
    path = write(tmp_path, "hosts", "[gpu]\ngpu1 label=" + "x" * (3 * 1024**2) + "\n")

    found = problem(path)

    assert found.location == f"{path}:2:1"
    assert found.reason == f"line of {3 * 1024**2 + 11:,} characters; at most {MAX_INI_LINE:,}"


def test_a_line_as_long_as_allowed_is_read(tmp_path: Path) -> None:
    line = "gpu1 label=" + "x" * (MAX_INI_LINE - 11)
    inventory = load_inventory(write(tmp_path, "hosts", line + "\n"))

    assert len(inventory.hosts["gpu1"].labels["label"]) == MAX_INI_LINE - 11
