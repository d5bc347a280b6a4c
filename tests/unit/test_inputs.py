"""deployer.inputs: user files are regular files within their kind's limit, and nothing blocks."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from deployer import inputs
from deployer.errors import ManifestError


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: ModelDeployment\n")

    assert inputs.read_text(path, inputs.MANIFEST) == "kind: ModelDeployment\n"


def test_a_symlink_is_followed_then_checked(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text("a: 1\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")

    assert inputs.read_text(tmp_path / "link.yaml", inputs.MANIFEST) == "a: 1\n"
    with pytest.raises(ManifestError, match="is a character device, not a regular file"):
        inputs.read_text(tmp_path / "zero.yaml", inputs.MANIFEST)


@pytest.mark.timeout(10)
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)

    with pytest.raises(ManifestError) as caught:
        inputs.read_text(fifo, inputs.MANIFEST)

    assert (caught.value.location, caught.value.reason) == (
        str(fifo),
        "is a named pipe, not a regular file",
    )
    assert (
        caught.value.hint
        == "deployer reads a manifest from a regular file; give the file's own path"
    )


def test_a_folder_and_a_socket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is a folder, not a regular file"):
        inputs.read_text(tmp_path, inputs.INVENTORY)
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(ManifestError, match="is a socket, not a regular file"):
            inputs.read_text(path, inputs.SECRET)


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:
        handle.truncate(inputs.MANIFEST.limit + 1)  # sparse: nothing to read, only a size

    with pytest.raises(ManifestError) as caught:
        inputs.read_bytes(path, inputs.MANIFEST)

    assert caught.value.reason == "manifest is larger than 1.0 MiB, the most deployer reads"
    assert "at most 1.0 MiB" in (caught.value.hint or "")
    assert len(inputs.read_bytes(path, inputs.TEXT)) == inputs.MANIFEST.limit + 1


def test_a_file_that_reports_no_size_is_still_bounded() -> None:
    # /proc files say st_size 0 and can be longer: the read stops one byte past the limit.
    small = inputs.FileKind("test", 16)
    with pytest.raises(ManifestError, match="larger than 16 B"):
        inputs.read_bytes(Path("/proc/self/maps"), small)


def test_missing_files_raise_file_not_found_for_the_caller_to_word(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        inputs.read_text(tmp_path / "nope", inputs.LOCKFILE)
    with pytest.raises(FileNotFoundError):
        inputs.check_file(tmp_path / "nope", inputs.TEXT)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.ini"
    path.write_bytes(b"[web]\nhost1\nh\xe9st2\n")

    with pytest.raises(ManifestError) as caught:
        inputs.read_text(path, inputs.INVENTORY)

    assert (caught.value.location, caught.value.reason, caught.value.hint) == (
        f"{path}:3:1",
        "not UTF-8 text",
        "save the inventory as UTF-8",
    )


def test_json_nested_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    ok, deep, deeper = tmp_path / "ok.json", tmp_path / "deep.json", tmp_path / "deeper.json"
    ok.write_text(json.dumps({"model_type": "llama", "x": [[1]]}))
    deep.write_text("[" * 101 + "]" * 101)
    deeper.write_text('{"a":' * 5000 + "1" + "}" * 5000)  # past Python's own recursion limit

    assert inputs.read_json(ok, inputs.MODEL_CONFIG) == {"model_type": "llama", "x": [[1]]}
    for path in (deep, deeper):
        with pytest.raises(ManifestError, match="JSON nested more than 100 levels deep"):
            inputs.read_json(path, inputs.MODEL_CONFIG)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("1" + "0" * 400, "not valid JSON: number 100000000000... is out of range (at most 2**63)"),
        (str(2**63), "not valid JSON: number 922337203685... is out of range (at most 2**63)"),
        ("1e400", "not valid JSON: number 1e400 is out of range"),
        ("NaN", "not valid JSON: NaN is not a JSON number"),
        ("-Infinity", "not valid JSON: -Infinity is not a JSON number"),
    ],
)
def test_json_numbers_no_model_has_are_refused(tmp_path: Path, number: str, reason: str) -> None:
    # A 400-digit intermediate_size made the planner's float division overflow.
    path = tmp_path / "config.json"
    path.write_text(f'{{"model_type": "llama", "intermediate_size": {number}}}')

    with pytest.raises(ManifestError) as caught:
        inputs.read_json(path, inputs.MODEL_CONFIG)

    assert caught.value.reason == reason
    path.write_text(f'{{"intermediate_size": {2**63 - 1}, "rope_theta": 1e6}}')
    assert inputs.read_json(path, inputs.MODEL_CONFIG) == {
        "intermediate_size": 2**63 - 1,
        "rope_theta": 1e6,
    }


def test_invalid_json_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")

    with pytest.raises(ManifestError, match=r"not valid JSON: Expecting property name"):
        inputs.read_json(path, inputs.MODEL_CONFIG)


def test_every_kind_has_a_limit_a_person_can_read() -> None:
    assert {kind.noun: kind.limit for kind in inputs.KINDS} == {
        "manifest": 1024**2,
        "inventory": 4 * 1024**2,
        "lockfile": 16 * 1024**2,
        "secret file": 64 * 1024,
        "model config": 16 * 1024**2,
        "calibration or evaluation text": 256 * 1024**2,
    }


def test_a_json_object_is_required_where_one_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")

    with pytest.raises(ManifestError) as caught:
        inputs.read_json_object(path, inputs.MODEL_CONFIG)

    assert (caught.value.location, caught.value.reason) == (str(path), "not a JSON object")
    path.write_text('{"model_type": "llama"}')
    assert inputs.read_json_object(path, inputs.MODEL_CONFIG) == {"model_type": "llama"}
