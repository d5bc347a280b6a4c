"""A hostile corpus: one case per class of bad input, each checked against the promise.

Every case runs ``python -m deployer`` in a subprocess under the promise's limits (20 s, 2 GiB
of address space; see :mod:`tests.hostile.runners`) with its state folder (``DEPLOYER_HOME``)
and cache in the test's tmp_path, and asserts: exit 1, exactly one line starting with
``error:``, a ``hint:`` line, no Python traceback, no "internal error", and the check of its
class where the promise names one (fast, nothing created, a file unchanged, the file or field
named, no host contacted, no secret printed).

Many of these fail until the hostile-input issue's fixes land; they are the issue's acceptance
tests, not expected failures.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.hostile.fuzzing import MANIFESTS, tiny_model_files
from tests.hostile.runners import (
    TRACEBACK,
    Outcome,
    SubprocessRunner,
    base_env,
    listing,
    reproducer,
)

LOCAL_TEMPLATE = MANIFESTS / "demo" / "smollm2-135m.yaml"
HUB_TEMPLATE = MANIFESTS / "demo" / "smollm2-135m-mirror.yaml"
DEMO_PATH = "path: ~/.cache/deployer/demo/SmolLM2-135M-Instruct"
MIRROR_ENDPOINT = "endpoint: http://127.0.0.1:8089"
#: "Fast" for a refusal: the interpreter's start-up plus a little.
FAST_SECONDS = 5.0
#: A hub token nobody could mistake for anything else.
CANARY_TOKEN = "hf_DeployerCanaryToken7f3a9c2e41b8d6"

RUNNER = SubprocessRunner()


# --- building inputs ---------------------------------------------------------------------------


def edited(template: Path, *replacements: tuple[str, str]) -> str:
    """The template's text with each ``(old, new)`` replaced once; ``old`` must be there."""
    text = template.read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} is not in {template}"
        text = text.replace(old, new, 1)
    return text


def local_manifest(folder: Path, *replacements: tuple[str, str], model: str = "model") -> Path:
    """The demo manifest pointing at a tiny model folder in ``folder`` (written there)."""
    for name, data in tiny_model_files().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)
    text = edited(LOCAL_TEMPLATE, (DEMO_PATH, f"path: {model}"), *replacements)
    manifest = folder / "manifest.yaml"
    manifest.write_text(text)
    return manifest


def hub_manifest(folder: Path, endpoint: str, token: str) -> Path:
    """The mirror demo manifest against ``endpoint`` with ``token`` (YAML flow) as its token."""
    text = edited(HUB_TEMPLATE, (MIRROR_ENDPOINT, f"endpoint: {endpoint}\n    token: {token}"))
    manifest = folder / "hub.yaml"
    manifest.write_text(text)
    return manifest


def laughs(levels: int) -> str:
    """A billion-laughs block: ``levels`` levels of nine aliases each (9**levels strings)."""
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def bomb_manifest(folder: Path, levels: int) -> Path:
    """The demo manifest with a bomb of ``levels`` levels in a label."""
    return local_manifest(
        folder,
        ("labels:\n", f"labels:\n    bomb: *l{levels}\n"),
        ("apiVersion:", f"x-laughs:\n{laughs(levels)}\napiVersion:"),
    )


def nested(depth: int, style: str) -> str:
    """A value ``depth`` levels deep, as flow ``[[[...]]]`` or as block sequences."""
    if style == "flow":
        return "[" * depth + "]" * depth
    return "\n      " + "- " * depth + "leaf"  # compact block sequences: '- - - leaf'


# --- one case ----------------------------------------------------------------------------------


@dataclass
class Scenario:
    """What a case runs and what, beyond the common checks, it requires."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    #: Assertions of the case's class, on the outcome.
    checks: list[Callable[[Outcome], None]] = field(default_factory=list)
    #: Whether the output may hold a traceback (--debug's purpose).
    traceback_allowed: bool = False
    #: Whether even the state and cache folders must not be created (a command that only
    #: looks something up, refused).
    creates_nothing: bool = False


def run(scenario: Scenario, home: Path) -> Outcome:
    env = base_env(scenario.cwd)
    env["DEPLOYER_HOME"] = str(home)
    env["DEPLOYER_CACHE"] = str(home.parent / "cache")
    env.update(scenario.env)
    return RUNNER.run(tuple(scenario.args), scenario.cwd, env)


def assert_refused(outcome: Outcome, *, traceback_allowed: bool = False) -> None:
    """The promise for bad input: exit 1, one ``error:`` line and a ``hint:``, no traceback, no
    internal error, within the time limit."""
    context = _context(outcome)
    assert not outcome.timed_out, f"no exit within the time limit\n{context}"
    assert outcome.signal is None, f"killed by signal {outcome.signal}\n{context}"
    assert outcome.code == 1, f"exit {outcome.code}, expected 1\n{context}"
    assert "internal error" not in outcome.output, f"internal error\n{context}"
    if not traceback_allowed:
        assert TRACEBACK not in outcome.output, f"a traceback\n{context}"
    assert "MemoryError" not in outcome.output, f"out of memory\n{context}"
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{len(errors)} lines start with 'error:', expected 1\n{context}"
    hints = [line for line in outcome.stderr.splitlines() if line.lstrip().startswith("hint:")]
    assert hints, f"no 'hint:' line\n{context}"


def _context(outcome: Outcome) -> str:
    def tail(text: str) -> str:
        lines = text.splitlines()
        return "\n".join(lines[-25:]) if lines else "(empty)"

    return (
        f"command: deployer {' '.join(outcome.command)} ({outcome.seconds:.1f} s)\n"
        f"--- stderr ---\n{tail(outcome.stderr)}\n--- stdout ---\n{tail(outcome.stdout)}"
    )


def error_line(outcome: Outcome) -> str:
    return next((x for x in outcome.stderr.splitlines() if x.startswith("error:")), "")


def explanation(outcome: Outcome) -> str:
    """The error line and the hint lines."""
    return "\n".join(
        x for x in outcome.stderr.splitlines() if x.lstrip().startswith(("error:", "hint:"))
    )


def fast(outcome: Outcome) -> None:
    assert outcome.seconds < FAST_SECONDS, (
        f"took {outcome.seconds:.1f} s, more than {FAST_SECONDS:.0f} s\n{_context(outcome)}"
    )


def names(*words: str) -> Callable[[Outcome], None]:
    """The error or its hint mentions each of ``words``."""

    def check(outcome: Outcome) -> None:
        text = explanation(outcome)
        missing = [w for w in words if w not in text]
        assert not missing, f"the error and hint do not name {missing}: {text!r}"

    return check


def located(file: str) -> Callable[[Outcome], None]:
    """The error line starts with the file's path and a line number (``FILE:LINE:``)."""

    def check(outcome: Outcome) -> None:
        line = error_line(outcome)
        assert f"{file}:" in line, f"the error line does not locate {file}: {line!r}"

    return check


# --- the table ---------------------------------------------------------------------------------

Build = Callable[[Path], Scenario]
CASES: dict[str, Build] = {}


def case(name: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        assert name not in CASES
        CASES[name] = build
        return build

    return register


# Billion laughs: refused fast (an alias limit), never expanded.
for _levels in (7, 9):
    for _command in ("validate", "plan"):

        def _laughs(tmp: Path, levels: int = _levels, command: str = _command) -> Scenario:
            manifest = bomb_manifest(tmp, levels)
            return Scenario([command, str(manifest)], tmp, checks=[fast, located("manifest.yaml")])

        case(f"billion-laughs-{_levels}-levels-{_command}")(_laughs)


# Files that are not manifests to read whole.
for _command in ("validate", "plan"):

    def _dev_zero(tmp: Path, command: str = _command) -> Scenario:
        link = tmp / "zero.yaml"
        link.symlink_to("/dev/zero")
        return Scenario([command, str(link)], tmp, checks=[names("zero.yaml")])

    def _fifo(tmp: Path, command: str = _command) -> Scenario:
        pipe = tmp / "pipe.yaml"
        os.mkfifo(pipe)
        return Scenario([command, str(pipe)], tmp, checks=[names("pipe.yaml")])

    def _huge(tmp: Path, command: str = _command) -> Scenario:
        manifest = local_manifest(tmp)
        text = manifest.read_text()
        padding = ("# " + "x" * 1021 + "\n") * 1025  # 1 MiB and 1 KiB of comments
        manifest.write_text(text + padding)
        assert manifest.stat().st_size > 1024 * 1024
        return Scenario([command, str(manifest)], tmp, checks=[names("manifest.yaml")])

    case(f"manifest-symlink-to-dev-zero-{_command}")(_dev_zero)
    case(f"manifest-named-pipe-{_command}")(_fifo)
    case(f"manifest-over-1-MiB-{_command}")(_huge)


# A token file that never ends: refused before any network (nothing listens at the endpoint).
for _command in ("lock", "fetch"):

    def _token_zero(tmp: Path, command: str = _command) -> Scenario:
        manifest = hub_manifest(tmp, "http://127.0.0.1:9", "{file: /dev/zero}")

        def nothing_written(outcome: Outcome) -> None:
            assert not (tmp / "hub.lock.yaml").exists(), "a lockfile was written"

        return Scenario(
            [command, str(manifest)],
            tmp,
            checks=[names("spec.model.token"), nothing_written],
        )

    case(f"token-file-dev-zero-{_command}")(_token_zero)


# YAML features a manifest has no use for.
_SYNTAX = {
    "yaml-1.1-directive": ("%YAML 1.1\n---\n", None),
    "tag-directive": ("%TAG !e! tag:example.com,2000:\n---\n", None),
    "tag-int-abc": (None, ("maxModelLen: 2048", "maxModelLen: !!int abc")),
    "tag-python-object": (None, ("maxModelLen: 2048", "maxModelLen: !!python/object:os.system {}")),
}
for _name, (_prefix, _replacement) in _SYNTAX.items():
    for _command in ("validate", "plan"):

        def _syntax(
            tmp: Path,
            command: str = _command,
            prefix: str | None = _prefix,
            replacement: tuple[str, str] | None = _replacement,
        ) -> Scenario:
            manifest = local_manifest(tmp, *([replacement] if replacement else []))
            if prefix:
                manifest.write_text(prefix + manifest.read_text())
            return Scenario([command, str(manifest)], tmp, checks=[located("manifest.yaml")])

        case(f"{_name}-{_command}")(_syntax)


for _depth in (500, 5000):
    for _style in ("flow", "block"):
        for _command in ("validate", "plan"):

            def _deep(
                tmp: Path, depth: int = _depth, style: str = _style, command: str = _command
            ) -> Scenario:
                manifest = local_manifest(
                    tmp, ("labels:\n", f"labels:\n    deep: {nested(depth, style)}\n")
                )
                return Scenario([command, str(manifest)], tmp, checks=[located("manifest.yaml")])

            case(f"nesting-{_depth}-{_style}-{_command}")(_deep)


# Plan of manifests validate may accept: numbers no deployment has, impossible paths, hosts.
_PLANNED = {
    "maxModelLen-10**400": ("maxModelLen: 2048", "maxModelLen: 1" + "0" * 400),
    "maxModelLen-2**70": ("maxModelLen: 2048", f"maxModelLen: {2**70}"),
    "port-10**400": ("maxModelLen: 2048", "maxModelLen: 2048\n    port: 1" + "0" * 400),
    "port-2**70": ("maxModelLen: 2048", f"maxModelLen: 2048\n    port: {2**70}"),
    "startupTimeoutSeconds-10**400": (
        "maxModelLen: 2048",
        "maxModelLen: 2048\n    startupTimeoutSeconds: 1" + "0" * 400,
    ),
    "startupTimeoutSeconds-2**70": (
        "maxModelLen: 2048",
        f"maxModelLen: 2048\n    startupTimeoutSeconds: {2**70}",
    ),
    "maxNumSeqs-10**400": ("maxModelLen: 2048", "maxModelLen: 2048\n    maxNumSeqs: 1" + "0" * 400),
    "kvCacheMemory-10**400-bytes": ("kvCacheMemory: 512MiB", "kvCacheMemory: 1" + "0" * 400),
    "serving-host-not-a-host": ("maxModelLen: 2048", 'maxModelLen: 2048\n    host: "not a host!"'),
}
for _name, _replacement in _PLANNED.items():

    def _planned(tmp: Path, replacement: tuple[str, str] = _replacement) -> Scenario:
        manifest = local_manifest(tmp, replacement)
        return Scenario(["plan", str(manifest)], tmp)

    case(f"plan-{_name}")(_planned)


@case("plan-model-path-component-over-255-chars")
def _long_component(tmp: Path) -> Scenario:
    manifest = local_manifest(tmp, model="model/" + "a" * 300)
    return Scenario(["plan", str(manifest)], tmp, checks=[names("spec.model.path")])


@case("plan-model-config-nested-5000-deep")
def _deep_config(tmp: Path) -> Scenario:
    manifest = local_manifest(tmp)
    config = json.loads((tmp / "model" / "config.json").read_text())
    text = json.dumps(config)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    (tmp / "model" / "config.json").write_text(text)
    return Scenario(["plan", str(manifest)], tmp, checks=[names("config.json")])


@case("plan-model-config-architectures-not-a-list")
def _architectures_number(tmp: Path) -> Scenario:
    # Found by the fuzzer (model-config case 614): a TypeError in the local folder's facts.
    manifest = local_manifest(tmp)
    config = json.loads((tmp / "model" / "config.json").read_text())
    (tmp / "model" / "config.json").write_text(json.dumps({**config, "architectures": -1}))
    return Scenario(["plan", str(manifest)], tmp, checks=[names("architectures")])


@case("plan-model-config-integer-of-400-digits")
def _config_huge_number(tmp: Path) -> Scenario:
    # Found by the fuzz benchmark (seed 7, model-config case 79): an OverflowError in planning.
    manifest = local_manifest(tmp)
    config = (tmp / "model" / "config.json").read_text()
    (tmp / "model" / "config.json").write_text(
        config.rstrip().removesuffix("}") + ', "intermediate_size": 1' + "0" * 400 + "}"
    )
    return Scenario(["plan", str(manifest)], tmp, checks=[names("out of range")])


# Found by the fuzzer: a YAML version ruamel does not know (an AssertionError inside it), and
# lone surrogates that validate took and plan could not encode.
for _command in ("validate", "plan"):

    def _yaml_13(tmp: Path, command: str = _command) -> Scenario:
        manifest = local_manifest(tmp)
        manifest.write_text("%YAML 1.3\n---\n" + manifest.read_text())
        return Scenario([command, str(manifest)], tmp, checks=[names("%YAML 1.3")])

    def _surrogates(tmp: Path, command: str = _command) -> Scenario:
        manifest = local_manifest(
            tmp, ("enforce-eager: true", 'enforce-eager: true\n      x: "\\udfff\\ud800"')
        )
        return Scenario([command, str(manifest)], tmp, checks=[names("surrogate")])

    case(f"yaml-1.3-directive-{_command}")(_yaml_13)
    case(f"lone-surrogates-in-engine-args-{_command}")(_surrogates)


@case("lock-token-file-of-an-unknown-user")
def _unknown_user_home(tmp: Path) -> Scenario:
    # Found by the fuzzer (manifest case 1848): '~nosuchuser/...' made pathlib raise.
    manifest = hub_manifest(tmp, "http://127.0.0.1:9", "{file: ~nosuchuser/token}")
    return Scenario(["lock", str(manifest)], tmp, checks=[names("~nosuchuser/token")])


# Names of deployments that do not exist, some of them paths: refused, nothing created.
_NAMES = {
    "logs-dotdot-path": ["logs", "../../x"],
    "logs-never-deployed": ["logs", "never-deployed"],
    "status-unknown-name": ["status", "nope"],
    "key-dotdot-path": ["key", "../x"],
}
for _name, _args in _NAMES.items():

    def _unknown(tmp: Path, args: list[str] = _args) -> Scenario:
        return Scenario(list(args), tmp, creates_nothing=True)

    case(_name)(_unknown)


@case("destroy-dotdot-path")
def _destroy_dotdot(tmp: Path) -> Scenario:
    # Not a look-up (destroy records a run), so its state folder may appear; nothing outside.
    return Scenario(["destroy", "../../x"], tmp)


# A state URL naming someone else's database, or a folder that does not exist.
@case("state-url-foreign-sqlite-database")
def _foreign_database(tmp: Path) -> Scenario:
    database = tmp / "app.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("INSERT INTO users (email) VALUES ('someone@example.com')")
    conn.close()
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    def untouched(outcome: Outcome) -> None:
        after = hashlib.sha256(database.read_bytes()).hexdigest()
        assert after == before, "the foreign database's bytes changed"
        leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("app.db-")]
        assert not leftovers, f"left behind: {leftovers}"

    return Scenario(
        ["--state-url", f"sqlite:///{database}", "status"],
        tmp,
        checks=[names("app.db"), untouched],
        creates_nothing=True,
    )


@case("state-url-missing-folder")
def _missing_folder(tmp: Path) -> Scenario:
    url = f"sqlite:///{tmp}/no/such/dir/state.db"
    return Scenario(["--state-url", url, "status"], tmp, creates_nothing=True)


# Inventories provision cannot use: refused naming the file, no host contacted.
class Listener:
    """A TCP port on 127.0.0.1 that counts the connections it receives (an SSH port nobody
    should knock on)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


_LISTENERS: list[Listener] = []


def _no_host_contacted(listener: Listener) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert listener.connections == 0, f"{listener.connections} connection(s) to a host"

    return check


def _inventory_case(name: str, filename: str, text: Callable[[int], str]) -> None:
    def build(tmp: Path) -> Scenario:
        listener = Listener()
        _LISTENERS.append(listener)
        inventory = tmp / filename
        inventory.write_text(text(listener.port))
        return Scenario(
            ["provision", str(inventory), "--connect-timeout", "2"],
            tmp,
            checks=[names(filename), _no_host_contacted(listener)],
        )

    case(name)(build)


_inventory_case(
    "provision-inventory-without-hosts",
    "empty-hosts.yaml",
    lambda port: "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts: {}\n",
)
_inventory_case(
    "provision-ansible-yaml-inventory-without-hosts",
    "no-hosts.yml",
    lambda port: "all:\n  children:\n    gpu: {}\n",
)
_inventory_case(
    "provision-ansible-ini-group-cycle",
    "cycle.ini",
    lambda port: (
        f"[a]\nh1 ansible_host=127.0.0.1 ansible_port={port} ansible_user=nobody\n"
        "[a:children]\nb\n[b:children]\na\n"
    ),
)
_inventory_case(
    "provision-ansible-yaml-group-cycle",
    "cycle.yml",
    lambda port: (
        "all:\n  children:\n    a: &a\n      hosts:\n"
        f"        h1: {{ansible_host: 127.0.0.1, ansible_port: {port}, ansible_user: nobody}}\n"
        "      children:\n        b:\n          children:\n            a: *a\n"
    ),
)


# Secrets: a hub token must appear in no output, with or without --debug, whatever the hub
# answers (an error body that echoes the request's headers included).
class EchoHub:
    """A local HTTP server that answers every request with ``status`` and a body echoing the
    request's line and headers (as a careless mirror or proxy would); it records what it got."""

    def __init__(self, status: int) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                echoed = f"{self.requestline}\n{self.headers}"
                owner.requests.append(echoed)
                # Where the hub client looks for a server's message: the JSON 'error' and
                # 'errors' fields and the X-Error-Message header.
                body = json.dumps(
                    {"error": f"refused {echoed}", "errors": [{"message": echoed}]}
                ).encode()
                authorization = self.headers.get("Authorization", "")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Error-Message", f"bad credentials: {authorization}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_HUBS: list[EchoHub] = []

for _status in (401, 500):
    for _command in ("lock", "fetch"):
        for _debug in (False, True):

            def _secret(
                tmp: Path, status: int = _status, command: str = _command, debug: bool = _debug
            ) -> Scenario:
                hub = EchoHub(status)
                _HUBS.append(hub)
                manifest = hub_manifest(tmp, hub.url, "{env: HF_TOKEN}")

                def not_leaked(outcome: Outcome) -> None:
                    assert any(CANARY_TOKEN in r for r in hub.requests), (
                        "the hub never received the token: this case tests nothing"
                    )
                    for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
                        assert CANARY_TOKEN not in text, f"the token is in {stream}"
                        assert CANARY_TOKEN[3:] not in text, f"most of the token is in {stream}"

                return Scenario(
                    [*(["--debug"] if debug else []), command, str(manifest)],
                    tmp,
                    env={"HF_TOKEN": CANARY_TOKEN},
                    checks=[not_leaked],
                    traceback_allowed=debug,
                )

            case(f"token-not-leaked-hub-{_status}-{_command}{'-debug' if _debug else ''}")(_secret)


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[None]:
    yield
    while _LISTENERS:
        _LISTENERS.pop().close()
    while _HUBS:
        _HUBS.pop().close()


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused(name: str, tmp_path: Path, servers: None) -> None:
    work = tmp_path / "work"
    work.mkdir()
    scenario = CASES[name](work)
    home = tmp_path / "home"  # not created: a refusal must not create it either
    before = listing(tmp_path)
    outcome = run(scenario, home)
    assert_refused(outcome, traceback_allowed=scenario.traceback_allowed)
    for check in scenario.checks:
        check(outcome)
    created = sorted(listing(tmp_path) - before)
    assert not created, (
        f"created {created[:10]} outside the state and cache folders\n"
        f"rerun in {scenario.cwd}: {reproducer(outcome.command)}"
    )
    if scenario.creates_nothing:
        made = [p.name for p in (home, tmp_path / "cache") if p.exists()]
        assert not made, f"a refused look-up created {made} in {tmp_path}"


def test_templates_are_accepted(tmp_path: Path) -> None:
    """The cases' starting points are good input: a failure above is the edit's doing."""
    manifest = local_manifest(tmp_path)
    env = base_env(tmp_path)
    for command in ("validate", "plan"):
        outcome = RUNNER.run((command, str(manifest)), tmp_path, env)
        assert outcome.code == 0, _context(outcome)
    (tmp_path / "bomb").mkdir()
    assert bomb_manifest(tmp_path / "bomb", 2).read_text().count("*l") == 9 * 2 + 1
