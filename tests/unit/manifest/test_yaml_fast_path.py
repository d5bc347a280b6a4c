"""The reader's fast path (libyaml) gives exactly what the round-trip parser (ruamel) gives, or
nothing: then the guarded parser reads the text, with its limits and its located errors."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from deployer import inputs
from deployer.errors import ManifestError
from deployer.manifest import loader
from deployer.manifest.loader import load_manifest, load_manifests
from deployer.manifest.yaml_reader import (
    MAX_DEPTH,
    PlainDocument,
    _documents,
    fast_documents,
    plain,
    read_plain,
)

ROOT = Path(__file__).resolve().parents[3]
HEADER = "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\n"
VALID = HEADER + (
    "metadata:\n  name: demo\n"
    "spec:\n  model: {source: local, path: /models/x}\n  resources: {accelerator: cpu}\n"
)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, NaN equal to NaN, mappings in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def slow(text: str, kind: inputs.FileKind = inputs.MANIFEST) -> list[Any]:
    """What the round-trip parser gives: (value, mark, index) per document, or its problems."""
    return [
        found if isinstance(found, ManifestError) else (plain(found.tree), found.mark, found.index)
        for found in _documents(Path("m.yaml"), text, kind)
    ]


def agree(text: str, kind: inputs.FileKind = inputs.MANIFEST) -> list[PlainDocument] | None:
    """The fast path's documents, after checking they are the round-trip parser's exactly."""
    fast = fast_documents(text, kind)
    if fast is not None:
        expected = slow(text, kind)
        got = [(d.value, d.mark, d.index) for d in fast]
        assert len(got) == len(expected), (got, expected)
        for (value, mark, index), wanted in zip(got, expected, strict=True):
            assert not isinstance(wanted, ManifestError), wanted
            assert same(value, wanted[0]), (value, wanted[0])
            assert (mark, index) == wanted[1:]
    return fast


# (plain scalar as written, the value both paths give); YAML 1.2 core schema as ruamel reads it.
SCALARS = [
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("Off", "Off"),
    ("y", "y"),
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("tRue", "tRue"),
    ("false", False),
    ("FALSE", False),
    ("null", None),
    ("Null", None),
    ("NULL", None),
    ("nULL", "nULL"),
    ("~", None),
    ("", None),
    ("0", 0),
    ("-0", 0),
    ("00", 0),
    ("0777", 777),
    ("0o17", 15),
    ("-0o17", -15),
    ("0o8", "0o8"),
    ("0x1F", 31),
    ("0xff", 255),
    ("-0x10", -16),
    ("0b101", 5),
    ("0b2", "0b2"),
    ("1_000", 1000),
    ("+12", 12),
    ("-12", -12),
    ("9223372036854775807", 9223372036854775807),
    ("1:20", "1:20"),
    ("1:20.5", "1:20.5"),
    ("190:20:30", "190:20:30"),
    ("1e3", 1000.0),
    ("1E3", 1000.0),
    ("-1e3", -1000.0),
    ("1.5e-3", 0.0015),
    ("1.", 1.0),
    ("1_0.5", 10.5),
    ("0.1", 0.1),
    ("-0.0", -0.0),
    (".5", 0.5),
    ("-.5", -0.5),
    ("+.5", 0.5),
    (".5e3", ".5e3"),
    (".5e+3", 500.0),
    (".inf", math.inf),
    ("-.Inf", -math.inf),
    ("+.INF", math.inf),
    (".nan", math.nan),
    (".NaN", math.nan),
    (".NAN", math.nan),
    ("-.nan", "-.nan"),
    ("inf", "inf"),
    ("nan", "nan"),
    ("1.2.3", "1.2.3"),
    ("0.32.0", "0.32.0"),
    ("8Gi", "8Gi"),
    ("512MiB", "512MiB"),
    ("0x", "0x"),
    ("_", "_"),
    ("_1", "_1"),
    ("1_", 1),
    ("+", "+"),
    (".", "."),
    ("a b  c", "a b  c"),
    ("http://x:1/y?z=1&w", "http://x:1/y?z=1&w"),
    ("Hello!", "Hello!"),
    ("2*3", "2*3"),
    ("é", "é"),
]


@pytest.mark.parametrize(("written", "value"), SCALARS, ids=[f"'{w}'" for w, _ in SCALARS])
def test_a_plain_scalar_has_the_value_ruamel_gives(written: str, value: Any) -> None:
    for text, get in [
        (f"a: {written}\n", lambda v: v["a"]),
        (f"- {written}\n", lambda v: v[0]),
        (f"[{written}, x]\n" if written else "[x]\n", lambda v: v[0] if written else None),
        (f"b:\n  - c: {written}\n", lambda v: v["b"][0]["c"]),
    ]:
        fast = agree(text)
        assert fast is not None, text
        assert same(get(fast[0].value), value), (text, fast[0].value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: 'yes'\n", {"a": "yes"}),
        ('a: "0777"\n', {"a": "0777"}),
        ("a: 'it''s'\n", {"a": "it's"}),
        ('a: "tab\\there \\x41 \\u00e9 \\/ \\\\"\n', {"a": "tab\there A é / \\"}),
        ("a: |\n  one\n  two\n", {"a": "one\ntwo\n"}),
        ("a: |-\n  one\n", {"a": "one"}),
        ("a: >\n  one\n  two\n\n  three\n", {"a": "one two\nthree\n"}),
        ("a: >+\n  one\n\n", {"a": "one\n\n"}),
        ("a: plain\n  continued\n  lines\n", {"a": "plain continued lines"}),
        ('"quoted key": 1\n', {"quoted key": 1}),
        ("'1': one\n", {"1": "one"}),
        ("? a\n: 1\n", {"a": 1}),
        ("a: {}\nb: []\nc: {d: [1, {e: f}]}\n", {"a": {}, "b": [], "c": {"d": [1, {"e": "f"}]}}),
        ("a: 1 # a comment\n# another\nb: 2\n", {"a": 1, "b": 2}),
        ("a: 1\r\nb: two\r\n", {"a": 1, "b": "two"}),
        ("a:\n- 1\n- 2\n", {"a": [1, 2]}),
        ("a: [1,\n  2]\n", {"a": [1, 2]}),
    ],
)
def test_quoted_block_and_flow_values_are_ruamels(text: str, value: Any) -> None:
    fast = agree(text)
    assert fast is not None
    assert same(fast[0].value, value)


def test_documents_marks_and_indexes_are_ruamels() -> None:
    text = "# comment\n\n---\na: 1\n---\n---\n~\n--- \n  - x\n---\nb: |\n  c\n"
    fast = agree(text)
    assert fast is not None
    assert [(d.value, d.mark.line, d.index) for d in fast] == [
        ({"a": 1}, 3, 0),
        (["x"], 8, 1),
        ({"b": "c\n"}, 10, 2),
    ]
    assert agree("") == []
    assert agree("# only a comment\n") == []


@pytest.mark.parametrize(
    "text",
    [
        # What only the guarded parser judges: it refuses these, or reads them in its own way.
        "a: &x 1\nb: *x\n",
        "a: !!int 3\n",
        "a: !env X\n",
        "a: ! 3\n",
        "%YAML 1.2\n---\na: 1\n",
        "%YAML 1.1\n---\na: 1\n",
        "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
        "a: 1\n...\n",
        "a: 1\n...\n\n...\n",
        "a: 2024-01-01\n",
        "a: 2001-12-14t21:59:43.10-05:00\n",
        "a: =\n",
        "<<: {b: 1}\na: 1\n",
        "a: 1\na: 2\n",
        "1: a\n",
        "~: a\n",
        "[a]: b\n",
        "a: 12345678901234567890\n",
        "a: 0x123456789abcdef01234\n",
        "a: x\tb\n",
        "a: 0x_\n",
        "a: +_\n",
        "a: ._\n",
        'a: "\\ud800"\n',
        "a: b\ufeffc\n",
        "a: b\x85c\n",
        "a: b\u2028c\n",
        "a: [\n",
        "a: b: c\n",
        "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 1) + "x",
        "a: [" + ", ".join(["1"] * inputs.MANIFEST.max_nodes) + "]\n",
    ],
)
def test_the_fast_path_leaves_the_rest_to_the_guarded_parser(text: str) -> None:
    assert fast_documents(text, inputs.MANIFEST) is None


def test_depth_and_value_count_up_to_the_guards_limits_take_the_fast_path() -> None:
    deep = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert agree(deep) is not None
    most = inputs.MANIFEST.max_nodes
    # The list is one value.
    assert fast_documents("[" + ", ".join(["1"] * (most - 1)) + "]\n", inputs.MANIFEST)
    assert fast_documents("[" + ", ".join(["1"] * most) + "]\n", inputs.MANIFEST) is None
    assert fast_documents("[" + ", ".join(["1"] * most) + "]\n", inputs.LOCKFILE) is not None


@pytest.mark.parametrize("value", ["0x_", "+_", "0b_", "0o_"])
def test_an_integer_ruamel_cannot_build_is_a_located_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(VALID + f"extra: {value}\n")

    with pytest.raises(ManifestError) as caught:
        load_manifests([path])

    assert caught.value.location == f"{path}:1:1"
    assert caught.value.reason.startswith("invalid YAML: cannot read a value")


def test_every_example_takes_the_fast_path() -> None:
    examples = sorted((ROOT / "model_manifests").rglob("*.yaml"))
    assert examples
    for path in [*examples, *sorted((ROOT / "inventories").glob("*.yaml"))]:
        kind = inputs.LOCKFILE if path.name.endswith(".lock.yaml") else inputs.INVENTORY
        assert agree(path.read_text(), kind) is not None, path


def test_fuzzed_inputs_agree() -> None:
    """The hostile-input fuzzer's cases (mutated manifests, inventories, lockfiles): the fast
    path gives the round-trip parser's values, or leaves the text to it."""
    from tests.hostile.fuzzing import DEFAULT_SEED, make_case

    kinds = {"manifest": inputs.MANIFEST, "inventory": inputs.INVENTORY}
    kinds["lockfile"] = inputs.LOCKFILE
    taken = 0
    for target, kind in kinds.items():
        for index in range(60):
            case = make_case(DEFAULT_SEED, target, index)
            if case.mutated_file.endswith((".ini", ".json")):
                continue
            try:
                text = case.files[case.mutated_file].decode("utf-8-sig")
            except UnicodeDecodeError:
                continue
            taken += agree(text, kind) is not None
    assert taken > 50  # many mutations keep the file plain YAML


#: Pieces of YAML for :func:`random_yaml`: scalars of every style (some spanning lines), flow
#: collections, and a few things only the guarded parser takes or that are errors.
PIECES = [
    *("a", "b c", "1", "-1", "0777", "0o17", "1.5", "1e3", ".inf", "true", "no", "null", "~", ""),
    *("'q'", "'a''b'", '"d"', '"x\\ny"', '"\\u00e9"', "é", "x #c", "x#c", "a:b", "a: b", "-x"),
    *("?x", "http://h:1/p", "[1, 2]", "{a: 1}", "{a: [b, {c: d}]}", "[a, [b, c], {d: e}]", "{}"),
    *("[]", "[a,]", "{a: b,}", "'multi\n  line'", '"multi\n  line"', "plain\n  cont"),
    *("|\n  lit\n  lines", "|-\n  x", ">\n  fold\n\n  ed", "|2\n   x", ">+\n  x\n\n", "|\n\n  x"),
    *("&a x", "!t x", "[a, b]: c", "{? a: b}", "{a, b}", "[a: b]", "'", '"', "- - x", "x\n---\ny"),
]
KEYS = ["a", "b", "c d", '"q"', "'s'", "? x", "1", "true", "null", "k.e-y_", "é", "-k", "a a"]


def random_yaml(rng: random.Random, depth: int = 0, indent: int = 0) -> str:
    """A random block mapping, block list or scalar, indented by 1 to 4 spaces a level."""
    choice = rng.random()
    pad = " " * indent
    if depth > 3 or choice < 0.35:
        return " " + rng.choice(PIECES).replace("\n", "\n" + pad + " " * rng.choice([0, 1, 2]))
    step = rng.choice([1, 2, 2, 4])
    if choice < 0.7:
        return "".join(
            f"\n{pad}{rng.choice(KEYS)}:{random_yaml(rng, depth + 1, indent + step)}"
            + rng.choice(["", "", "", " # c", "\n# c", "\n\n"])
            for _ in range(rng.randint(1, 3))
        )
    return "".join(
        f"\n{pad}-{random_yaml(rng, depth + 1, indent + step)}" for _ in range(rng.randint(1, 3))
    )


def test_random_yaml_agrees() -> None:
    """Generated texts, one to two documents each: the fast path gives the round-trip
    parser's values, or leaves the text to it (found so: ruamel goes on past '---' in a
    top-level block scalar, and refuses leading empty lines of a block scalar that libyaml
    takes)."""
    rng = random.Random(20_251_204)
    taken = 0
    for _ in range(1500):
        documents = [random_yaml(rng).lstrip("\n ") for _ in range(rng.choice([1, 1, 2]))]
        text = rng.choice(["", "---\n", "# c\n"]) + "\n---\n".join(documents)
        taken += agree(text + rng.choice(["", "\n", "\n---\n"])) is not None
    assert taken > 300


def test_a_valid_manifest_is_not_read_by_ruamel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(VALID)

    def refuse(*_: object) -> None:
        raise AssertionError("read by the round-trip parser")

    monkeypatch.setattr(loader, "read_documents", refuse)

    assert load_manifest(path).deployment.name == "demo"


def test_a_problem_found_after_the_fast_path_is_located_by_the_round_trip_parser(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(VALID + "  serving:\n    maxModelLen: lots\n")

    with pytest.raises(ManifestError) as caught:
        load_manifests([path])

    assert caught.value.location == f"{path}:9:18"
    assert caught.value.reason.startswith("spec.serving.maxModelLen")


def test_duplicate_names_read_by_the_fast_path_are_located(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(VALID)
    second.write_text("# the same\n" + VALID.replace("demo", "'demo'"))

    with pytest.raises(ManifestError) as caught:
        load_manifests([first, second])

    assert caught.value.location == f"{second}:5:9"
    assert f"already used at {first}:4:9" in caught.value.reason


def test_read_plain_takes_the_fast_path_and_keeps_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "x.lock.yaml"
    path.write_text("a: [1, on, 0o17]\n")
    assert read_plain(path, inputs.LOCKFILE) == {"a": [1, "on", 15]}
    path.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(ManifestError, match="2 YAML documents in one lockfile"):
        read_plain(path, inputs.LOCKFILE)
    path.write_text("a: 1\na: 2\n")
    with pytest.raises(ManifestError, match="duplicate key 'a'"):
        read_plain(path, inputs.LOCKFILE)
