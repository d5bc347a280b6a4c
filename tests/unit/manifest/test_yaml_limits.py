"""The YAML reader cannot be made slow, deep or strange: each case is one located error, fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.inputs import LOCKFILE
from deployer.manifest.loader import load_manifest, load_manifests
from deployer.manifest.yaml_reader import MAX_DEPTH, MAX_NODES, read_plain

HEADER = "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\n"
VALID = HEADER + (
    "metadata:\n  name: demo\n"
    "spec:\n  model: {source: local, path: /models/x}\n  resources: {accelerator: cpu}\n"
)


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return HEADER + "\n".join(lines) + "\n"


def only_problem(tmp_path: Path, text: str) -> ManifestError:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert len(caught.value.problems) == 1, [p.message for p in caught.value.problems]
    return caught.value


@pytest.mark.timeout(20)
@pytest.mark.parametrize("levels", [7, 9, 30])
def test_exponential_aliases_are_refused_at_once(tmp_path: Path, levels: int) -> None:
    started = time.monotonic()
    error = only_problem(tmp_path, laughs(levels))

    assert error.reason == f"more than {MAX_NODES:,} values with aliases expanded"
    assert str(error.location).startswith(f"{tmp_path / 'm.yaml'}:")
    assert "anchors and aliases may repeat a value a few times" in (error.hint or "")
    assert time.monotonic() - started < 5


def test_aliases_that_repeat_a_value_a_few_times_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        VALID
        + "  smoke:\n"
        + "    - &paris {chat: What is the capital of France?, expect: {contains: Paris}}\n"
        + "    - *paris\n"
        + "    - *paris\n"
    )

    assert len(load_manifest(path).deployment.spec.smoke) == 3


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = only_problem(tmp_path, HEADER + "a: &a [1, *a]\n")

    assert error.reason == "alias *a is inside the node it refers to (a recursive structure)"
    assert error.location == f"{tmp_path / 'm.yaml'}:3:11"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "body",
    [
        "a: " + "[" * 500 + "]" * 500,
        "a: " + "[" * 5000 + "]" * 5000,
        "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1",
    ],
    ids=["flow-500", "flow-5000", "block-200"],
)
def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path: Path, body: str) -> None:
    error = only_problem(tmp_path, HEADER + body + "\n")

    assert error.reason == f"nested more than {MAX_DEPTH} levels deep"
    assert error.hint == "a manifest nests a few levels; flatten this value"


@pytest.mark.parametrize(
    ("text", "reason", "hint"),
    [
        (
            "%YAML 1.1\n---\n" + VALID,
            "%YAML 1.1 directive: deployer reads YAML 1.2",
            "remove the %YAML line (YAML 1.2 is the default)",
        ),
        (
            "%YAML 1.3\n---\n" + VALID,
            "%YAML 1.3 directive: deployer reads YAML 1.2",
            "remove the %YAML line (YAML 1.2 is the default)",
        ),
        (
            VALID + 'x: "\\udfff\\ud800"\n',
            "a lone surrogate (\\ud800 to \\udfff) is not a character",
            "write the character itself, or its \\U escape, in UTF-8",
        ),
        (
            "%TAG !e! tag:example.com,2000:\n---\n" + VALID,
            "%TAG directives are not supported",
            "remove the %TAG line; manifests are plain YAML without tags",
        ),
        (
            VALID.replace("name: demo", "name: !!int abc"),
            "!!int 'abc': not a valid int value",
            "write a valid int after !!int, or drop the tag",
        ),
        (
            VALID + "x: !!binary aGVsbG8=\n",
            "unsupported YAML tag '!!binary'",
            "manifests are plain YAML; secrets are written as {env: NAME} or {file: PATH}",
        ),
        (
            VALID + "x: !!python/object:os.system {}\n",
            "unsupported YAML tag '!!python/object:os.system'",
            "manifests are plain YAML; secrets are written as {env: NAME} or {file: PATH}",
        ),
        (
            VALID.replace("spec:\n", "spec:\n  serving: {maxModelLen: " + "9" * 400 + "}\n"),
            "integer 999999999999... has 400 digits, more than deployer takes (19)",
            "quote it if it is meant as text",
        ),
    ],
    ids=[
        "yaml-1.1",
        "yaml-1.3",
        "surrogates",
        "tag-directive",
        "bad-int-tag",
        "binary",
        "python-object",
        "huge-int",
    ],
)
def test_directives_tags_and_huge_numbers_are_one_located_error(
    tmp_path: Path, text: str, reason: str, hint: str
) -> None:
    error = only_problem(tmp_path, text)

    assert (error.reason, error.hint) == (reason, hint)
    assert str(error.location).count(":") == 2


def test_yaml_1_2_directive_and_plain_tags_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "%YAML 1.2\n---\n"
        + VALID.replace("name: demo", "name: !!str demo")
        + "  serving: {maxModelLen: !!int 2048, kvCacheMemory: 1GiB}\n"
    )

    deployment = load_manifest(path).deployment
    assert (deployment.name, deployment.spec.serving.max_model_len) == ("demo", 2048)


def test_a_big_document_without_aliases_is_told_to_split(tmp_path: Path) -> None:
    error = only_problem(tmp_path, HEADER + "".join(f"k{i}: v\n" for i in range(MAX_NODES)))

    assert error.reason == f"more than {MAX_NODES:,} values in one document"
    assert error.hint == f"a manifest holds at most {MAX_NODES:,} values; split it into several"


def test_lockfiles_are_read_with_the_same_limits(tmp_path: Path) -> None:
    path = tmp_path / "m.lock.yaml"
    path.write_text(laughs(8).replace(HEADER, ""))

    with pytest.raises(ManifestError, match="values with aliases expanded"):
        read_plain(path, LOCKFILE)
    path.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(ManifestError, match="2 YAML documents in one lockfile"):
        read_plain(path, LOCKFILE)
    path.write_text("")
    assert read_plain(path, LOCKFILE) is None
