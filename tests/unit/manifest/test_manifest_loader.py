"""The loader: what a user sees for each kind of mistake (file:line:column, message, hint)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.manifest import LoadedManifest, load_manifest, load_manifests

HEADER = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
"""

VALID = """\
apiVersion: deployer/v1alpha1
kind: ModelDeployment
metadata:
  name: demo
spec:
  model:
    source: local
    path: ./weights
"""


def extend(spec: str) -> str:
    """VALID with more keys under its ``spec``."""
    return VALID + textwrap.indent(textwrap.dedent(spec), "  ")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(paths: list[Path]) -> list[ManifestError]:
    with pytest.raises(ManifestError) as info:
        load_manifests(paths)
    return info.value.problems


# Each case: a manifest, and the one problem a user must see: line:column, message, hint (the
# hint is compared as a prefix where it ends with a long list of valid values).
ONE_PROBLEM = [
    pytest.param(
        extend("""\
          serving:
            maxModelLenght: 4096
        """),
        "10:5",
        "spec.serving.maxModelLenght: unknown key",
        "did you mean 'maxModelLen'? valid keys: engine, version, servedModelName, maxModelLen,",
        id="misspelt-key-suggests-the-closest",
    ),
    pytest.param(
        extend("quantise: {method: fp8}\n"),
        "9:3",
        "spec.quantise: unknown key",
        "did you mean 'quantize'? valid keys: model, quantize, serving, resources, target, smoke",
        id="misspelt-top-level-key",
    ),
    pytest.param(
        VALID.replace("name: demo", "name: Llama-8B"),
        "4:9",
        "metadata.name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        "DNS-1123 label: lower-case letters, digits and '-', at most 63 characters. It becomes "
        "process, unit, Kubernetes and file names.",
        id="name-with-uppercase",
    ),
    pytest.param(
        VALID.replace("name: demo", "name: " + "a" * 64),
        "4:9",
        "metadata.name: String should have at most 63 characters",
        "DNS-1123 label:",
        id="name-too-long",
    ),
    pytest.param(
        VALID.replace("    path: ./weights\n", ""),
        "6:3",
        "spec.model.path: required field is missing",
        "A folder with config.json, the tokenizer and safetensors weights. Relative paths are "
        "relative to the manifest's file; '~' and ${VARS} are expanded.",
        id="missing-field-in-a-union-member",
    ),
    pytest.param(
        HEADER + "metadata:\n  name: demo\n",
        "1:1",
        "spec: required field is missing",
        "What to deploy and how.",
        id="missing-top-level-field",
    ),
    pytest.param(
        extend("""\
          serving:
            maxModelLen: 8
        """),
        "10:18",
        "spec.serving.maxModelLen: Input should be greater than or equal to 16",
        "Context length in tokens (prompt plus output).",
        id="value-below-minimum",
    ),
    pytest.param(
        extend("""\
          serving:
            tensorParallelSize: 0
        """),
        "10:25",
        "spec.serving.tensorParallelSize: Input should be greater than or equal to 1 or 'auto'",
        "GPUs to shard the model over",
        id="union-branches-become-one-message",
    ),
    pytest.param(
        """\
        apiVersion: deployer/v1alpha1
        kind: ModelDeployment
        metadata:
          name: demo
         spec: {}
        """,
        "5:2",
        "invalid YAML: expected <block end>, but found '<block mapping start>'",
        "check indentation and quoting near this line",
        id="yaml-syntax-error",
    ),
    pytest.param(
        extend("""\
          serving:
            args: [enforce-eager
        """),
        "11:1",
        "invalid YAML: expected ',' or ']', but got '<stream end>'",
        "check indentation and quoting near this line",
        id="yaml-unclosed-flow-sequence",
    ),
    pytest.param(
        """\
        apiVersion: deployer/v1alpha1
        kind: ModelDeployment
        metadata:
          name: demo
          name: other
        """,
        "5:3",
        "duplicate key 'name' (first defined on line 4)",
        "a key may appear once per mapping; remove or merge one of them",
        id="duplicate-key",
    ),
    pytest.param(
        VALID.replace("deployer/v1alpha1", "deployer/v1"),
        "1:13",
        "apiVersion: expected 'deployer/v1alpha1', got 'deployer/v1'",
        "a manifest starts with 'apiVersion: deployer/v1alpha1' and 'kind: ModelDeployment'",
        id="wrong-api-version",
    ),
    pytest.param(
        VALID.replace("apiVersion: deployer/v1alpha1\n", "# a comment\n"),
        "2:1",
        "apiVersion: required field is missing (expected apiVersion: deployer/v1alpha1)",
        "a manifest starts with 'apiVersion: deployer/v1alpha1' and 'kind: ModelDeployment'",
        id="missing-api-version",
    ),
    pytest.param(
        VALID.replace("kind: ModelDeployment", "kind: Deployment"),
        "2:7",
        "kind: expected 'ModelDeployment', got 'Deployment'",
        "a manifest starts with 'apiVersion: deployer/v1alpha1' and 'kind: ModelDeployment'",
        id="wrong-kind",
    ),
    pytest.param(
        "# not a mapping\n- apiVersion: deployer/v1alpha1\n- kind: ModelDeployment\n",
        "2:1",
        "expected a mapping (a ModelDeployment manifest), got a list",
        "a manifest starts with 'apiVersion: deployer/v1alpha1' and 'kind: ModelDeployment'",
        id="list-document",
    ),
    pytest.param(
        "just some text\n",
        "1:1",
        "expected a mapping (a ModelDeployment manifest), got a string",
        "a manifest starts with",
        id="scalar-document",
    ),
    pytest.param(
        "# only a comment\n",
        "1:1",
        "empty file: no manifest in it",
        "a manifest starts with",
        id="empty-file",
    ),
    pytest.param(
        extend("""\
          smoke:
            - chat: What is the capital of France?
              completion: The capital of France is
        """),
        "10:7",
        "spec.smoke[0]: a smoke check needs exactly one of 'chat', 'completion', 'embedding'",
        "One request to the served model and what its answer must show. Give exactly one of "
        "'chat', 'completion' or 'embedding'; write another check for another request.",
        id="smoke-check-with-two-requests",
    ),
    pytest.param(
        extend("""\
          smoke:
            - chat: hello
            - chat: What is the capital of France?
              expect:
                regex: "Paris ("
        """),
        "13:16",
        "spec.smoke[1].expect.regex: invalid regular expression: "
        "missing ), unterminated subpattern at position 6",
        "A regular expression the answer must match (re.search).",
        id="bad-regex",
    ),
    pytest.param(
        extend("""\
          target:
            kind: docker
        """),
        "10:11",
        "spec.target.kind: unknown value 'docker'; expected one of: local, ssh, kubernetes",
        "set 'kind' to one of: local, ssh, kubernetes",
        id="unknown-target-kind",
    ),
    pytest.param(
        extend("""\
          target:
            namespace: llm
        """),
        "9:3",
        "spec.target.kind: required field is missing",
        "one of: local, ssh, kubernetes",
        id="target-without-kind",
    ),
    pytest.param(
        VALID.replace("source: local", "source: hub"),
        "7:13",
        "spec.model.source: unknown value 'hub'; expected one of: huggingface, local",
        "set 'source' to one of: huggingface, local",
        id="unknown-model-source",
    ),
    pytest.param(
        extend("""\
          serving:
            env:
              bad-name: x
        """),
        "11:7",
        "spec.serving.env.bad-name: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'",
        "Extra environment variables for the engine process (not secrets).",
        id="bad-dict-key-points-at-the-key",
    ),
    pytest.param(
        extend("""\
          serving: 8192
        """),
        "9:12",
        "spec.serving: expected a mapping, got a number",
        "Engine settings.",
        id="scalar-where-a-mapping-belongs",
    ),
    pytest.param(
        """\
        apiVersion: deployer/v1alpha1
        kind: ModelDeployment
        metadata:
          name: demo
        spec:
          model:
            source: huggingface
            repo: meta-llama/Llama-3.1-8B-Instruct
            token: !env HF_TOKEN
        """,
        "9:12",
        "unsupported YAML tag '!env'",
        "manifests are plain YAML; secrets are written as {env: NAME} or {file: PATH}",
        id="custom-yaml-tag",
    ),
    pytest.param(
        """\
        apiVersion: deployer/v1alpha1
        kind: ModelDeployment
        metadata:
          name: demo
        spec:
          model:
            source: huggingface
            repo: meta-llama/Llama-3.1-8B-Instruct
            token:
              env: HF_TOKEN
              file: ~/.hf-token
        """,
        "9:5",
        "spec.model.token: give exactly one of 'env' or 'file'",
        "Hub token, as a reference to an environment variable or a file.",
        id="model-validator-on-a-nested-mapping",
    ),
]


@pytest.mark.parametrize(("text", "position", "message", "hint"), ONE_PROBLEM)
def test_one_problem_names_file_line_field_and_hint(
    tmp_path: Path, text: str, position: str, message: str, hint: str
) -> None:
    path = write(tmp_path, "manifest.yaml", text)

    with pytest.raises(ManifestError) as info:
        load_manifests([path])

    error = info.value
    assert [(p.location, p.reason) for p in error.problems] == [(f"{path}:{position}", message)]
    assert error.hint is not None
    assert error.hint.startswith(hint)
    assert str(error) == f"{path}:{position}: {message}"


def test_several_problems_in_several_files_are_all_reported_in_order(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.yaml",
        extend("""\
          serving:
            maxModelLen: 8
            dtpye: bfloat16
        """),
    )
    second = write(tmp_path, "b.yaml", VALID.replace("name: demo", "name: Demo"))
    third = write(tmp_path, "c.yaml", "a: [1\n")

    with pytest.raises(ManifestError) as info:
        load_manifests([tmp_path])

    assert [(p.location, p.reason) for p in info.value.problems] == [
        (f"{first}:10:18", "spec.serving.maxModelLen: Input should be greater than or equal to 16"),
        (f"{first}:11:5", "spec.serving.dtpye: unknown key"),
        (
            second.as_posix() + ":4:9",
            "metadata.name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (f"{third}:2:1", "invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ]
    assert info.value.reason == (
        "spec.serving.maxModelLen: Input should be greater than or equal to 16"
    )
    assert info.value.location == f"{first}:10:18"
    assert info.value.problems[1].hint is not None
    assert info.value.problems[1].hint.startswith("did you mean 'dtype'?")


def test_problems_in_every_document_of_a_file_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "two.yaml",
        """\
        apiVersion: deployer/v1
        kind: ModelDeployment
        ---
        a: 1
        a: 2
        ---
        apiVersion: deployer/v1alpha1
        kind: ModelDeployment
        metadata: {name: ok, colour: blue}
        """,
    )

    assert [(p.location, p.reason) for p in problems([path])] == [
        (f"{path}:1:13", "apiVersion: expected 'deployer/v1alpha1', got 'deployer/v1'"),
        (f"{path}:5:1", "duplicate key 'a' (first defined on line 4)"),
        (f"{path}:7:1", "spec: required field is missing"),
        (f"{path}:9:22", "metadata.colour: unknown key"),
    ]


def test_multi_document_file_gives_each_deployment_its_line_and_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pair.yaml",
        "# two deployments in one file\n---\n"
        + VALID
        + "---\n---\n"
        + VALID.replace("name: demo", "name: second"),
    )

    loaded = load_manifests([path])

    assert [(m.deployment.name, m.path, m.line, m.index) for m in loaded] == [
        ("demo", path, 3, 0),
        ("second", path, 13, 1),
    ]


def test_folder_loads_yaml_files_sorted_and_skips_lockfiles_and_hidden_files(
    tmp_path: Path,
) -> None:
    write(tmp_path, "b.yaml", VALID.replace("name: demo", "name: b"))
    write(tmp_path, "a.yml", VALID.replace("name: demo", "name: a"))
    write(tmp_path, "sub/c.yaml", VALID.replace("name: demo", "name: c"))
    write(tmp_path, "b.lock.yaml", "not: a manifest\n")
    write(tmp_path, ".hidden.yaml", "not: a manifest\n")
    write(tmp_path, ".git/x.yaml", "not: a manifest\n")
    write(tmp_path, "notes.txt", "not a manifest\n")

    loaded = load_manifests([tmp_path])

    assert [(m.deployment.name, m.path.relative_to(tmp_path).as_posix()) for m in loaded] == [
        ("a", "a.yml"),
        ("b", "b.yaml"),
        ("c", "sub/c.yaml"),
    ]


def test_a_file_given_twice_is_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path, "one.yaml", VALID)

    assert [m.deployment.name for m in load_manifests([path, tmp_path])] == ["demo"]


def test_duplicate_names_name_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", "# same name\n" + VALID)

    (problem,) = problems([tmp_path])

    assert problem.location == f"{second}:5:9"
    assert problem.reason == f"metadata.name: deployment name 'demo' is already used at {first}:4:9"
    assert problem.hint == (
        "names must be unique among the manifests loaded together; rename one of them"
    )


@pytest.mark.parametrize(
    ("given", "reason", "hint"),
    [
        pytest.param(
            "missing.yaml",
            "no such file or folder",
            "check the path; relative paths start in the current folder",
            id="missing-file",
        ),
        pytest.param(
            "empty-folder",
            "no manifest files (*.yaml, *.yml) in this folder",
            "pass a folder that holds manifests, or a manifest file",
            id="folder-without-manifests",
        ),
    ],
)
def test_paths_that_hold_no_manifest(tmp_path: Path, given: str, reason: str, hint: str) -> None:
    (tmp_path / "empty-folder").mkdir()
    path = tmp_path / given

    (problem,) = problems([path])

    assert (problem.location, problem.reason, problem.hint) == (str(path), reason, hint)


def test_unreadable_file_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"apiVersion: deployer/v1alpha1\nkind: Mod\xe9le\n")

    (problem,) = problems([path])

    assert (problem.location, problem.reason, problem.hint) == (
        f"{path}:2:1",
        "not UTF-8 text",
        "save the manifest as UTF-8",
    )


def test_yaml_1_2_keeps_yes_and_on_as_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        VALID.replace("  name: demo\n", "  name: demo\n  labels: {public: yes, mode: on}\n"),
    )

    assert load_manifest(path).deployment.metadata.labels == {"public": "yes", "mode": "on"}


def test_values_are_plain_python(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        extend("""\
          serving:
            gpuMemoryUtilization: 0.85
            kvCacheMemory: 512MiB
            args: {enforce-eager: true, max-num-batched-tokens: 2048, swap-space: 1.5}
        """),
    )

    serving = load_manifest(path).deployment.spec.serving

    assert serving.gpu_memory_utilization == 0.85
    assert serving.kv_cache_memory == 512 * 1024**2
    assert serving.args == {
        "enforce-eager": True,
        "max-num-batched-tokens": 2048,
        "swap-space": 1.5,
    }
    assert [type(v) for v in serving.args.values()] == [bool, int, float]


def test_load_manifest_wants_exactly_one_deployment(tmp_path: Path) -> None:
    path = write(tmp_path, "two.yaml", VALID + "---\n" + VALID.replace("name: demo", "name: b"))

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert info.value.location == str(path)
    assert info.value.reason == "expected exactly one deployment, found 2 (demo, b)"


def test_load_manifest_returns_the_deployment(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", VALID)

    manifest = load_manifest(path)

    assert manifest == LoadedManifest(manifest.deployment, path, 1, 0)
    assert manifest.deployment.spec.model.source == "local"
    assert manifest.base_dir == tmp_path


# --- paths in manifests ------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedManifest:
    monkeypatch.setenv("HOME", "/home/ada")
    monkeypatch.setenv("MODELS", "/srv/models")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    return load_manifest(write(tmp_path, "m/manifest.yaml", VALID))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${MODELS}/llama", "/srv/models/llama"),
        ("$MODELS/llama", "/srv/models/llama"),
        ("~/.cache/deployer/demo", "/home/ada/.cache/deployer/demo"),
        ("/abs/weights", "/abs/weights"),
    ],
)
def test_resolve_path_expands_variables_and_home(
    manifest: LoadedManifest, value: str, expected: str
) -> None:
    assert manifest.resolve_path(value) == Path(expected)


def test_resolve_path_makes_relative_paths_relative_to_the_manifest(
    manifest: LoadedManifest, tmp_path: Path
) -> None:
    assert manifest.resolve_path("./weights") == tmp_path / "m" / "weights"
    assert manifest.resolve_path("../shared/w") == tmp_path / "m" / ".." / "shared" / "w"


def test_resolve_path_names_an_unset_variable(manifest: LoadedManifest) -> None:
    with pytest.raises(ManifestError) as info:
        manifest.resolve_path("${NOT_SET_ANYWHERE}/weights")

    assert info.value.reason == (
        "path '${NOT_SET_ANYWHERE}/weights': environment variable NOT_SET_ANYWHERE is not set"
    )
    assert info.value.location == f"{manifest.path}:1:1"
    assert info.value.hint == (
        "set NOT_SET_ANYWHERE in the environment deployer runs in, or write the path without it"
    )


def test_a_control_character_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: a\x01b\n"
    )

    with pytest.raises(ManifestError) as caught:
        load_manifests([path])

    assert caught.value.location == f"{path}:4:10"
    assert caught.value.reason == "invalid YAML: character U+0001 is not allowed"
