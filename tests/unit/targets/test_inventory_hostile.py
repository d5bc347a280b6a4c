"""Hostile and degenerate inventories: each is one located error a user can act on, never a
silent empty answer, a hang, a traceback or all the memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from deployer.errors import ManifestError
from deployer.targets.ssh import Host, Inventory, load_inventory
from deployer.targets.ssh.inventory import MAX_HOSTS, MAX_INI_LINE, MAX_JUMPS, MAX_MEMBERSHIPS
from deployer.targets.ssh.provision import select_hosts

ROOT = Path(__file__).resolve().parents[3]

HEADER = "apiVersion: deployer/v1alpha1\nkind: Inventory\n"
DEPLOYER_YAML = (
    HEADER
    + """\
hosts:
  gpu1: {address: 10.0.0.11}
  gpu2: {address: 10.0.0.12}
groups:
  gpu: [gpu1, gpu2]
  web: []
"""
)

INI = """\
[gpu]
gpu1 ansible_host=10.0.0.11

[web]

[web:vars]
role=frontend
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problem(path: Path) -> ManifestError:
    """The first problem loading ``path`` reports (there must be one)."""
    with pytest.raises(ManifestError) as info:
        load_inventory(path)
    return info.value.problems[0]


def selection_error(inventory: Inventory, *args: object) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        inventory.select(*args)  # type: ignore[arg-type]
    return info.value


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

    assert (found.location, found.reason) == (f"{path}:3:1", "not UTF-8 text")


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


# --- cycles in Ansible groups ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "position", "cycle"),
    [
        (
            "hosts.ini",
            "[app]\nh1\n[web:children]\napp\n[app:children]\nweb\n",
            ":6:1",
            "web -> app -> web",
        ),
        ("hosts.ini", "[web]\nh1\n[web:children]\nweb\n", ":4:1", "web -> web"),
        (
            "hosts.ini",
            "[a]\nh1\n[a:children]\nb\n[b:children]\nc\n[c:children]\na\n",
            ":8:1",
            "a -> b -> c -> a",
        ),
        ("hosts.ini", "[web]\nh1\n[web:children]\nall\n", ":4:1", "all -> web -> all"),
        (
            "hosts.yml",
            """\
            all:
              children:
                web:
                  children:
                    app:
                app:
                  hosts:
                    h1:
                  children:
                    web:
            """,
            ":10:9",
            "web -> app -> web",
        ),
        (
            "hosts.yml",
            "all:\n  hosts:\n    h1:\n  children:\n    web:\n      children:\n        web:\n",
            ":7:9",
            "web -> web",
        ),
    ],
    ids=["ini", "ini-itself", "ini-three", "ini-all", "yaml", "yaml-itself"],
)
def test_a_group_containing_itself_is_one_error_where_the_cycle_closes(
    tmp_path: Path, name: str, text: str, position: str, cycle: str
) -> None:
    path = write(tmp_path, name, text)

    with pytest.raises(ManifestError) as info:
        load_inventory(path)

    assert len(info.value.problems) == 1
    assert str(info.value) == f"{path}{position}: group cycle: {cycle}"
    assert info.value.hint is not None
    assert info.value.hint.startswith("a group cannot contain itself")


def chain_ini(depth: int, closing: str | None = None) -> str:
    links = "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(depth))
    end = f"[g{depth}:children]\n{closing}\n" if closing else ""
    return f"{links}[g{depth}]\nh1\n{end}"


def chain_yaml(depth: int) -> str:
    links = "".join(f"    g{i}:\n      children:\n        g{i + 1}:\n" for i in range(depth))
    return f"all:\n  children:\n{links}    g{depth}:\n      hosts:\n        h1:\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "text"),
    [("hosts.ini", chain_ini(5000)), ("hosts.yml", chain_yaml(5000))],
    ids=["ini", "yaml"],
)
def test_5000_nested_groups_load(tmp_path: Path, name: str, text: str) -> None:
    inventory = load_inventory(write(tmp_path, name, text))

    assert len(inventory.groups) == 5001
    assert inventory.groups["g0"] == ["h1"]


@pytest.mark.timeout(60)
def test_a_cycle_5000_groups_long_is_spelled_out(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", chain_ini(5000, closing="g0"))

    with pytest.raises(ManifestError) as info:
        load_inventory(path)

    cycle = " -> ".join(f"g{i}" for i in range(5001)) + " -> g0"
    assert str(info.value) == f"{path}:{2 * 5000 + 4}:1: group cycle: {cycle}"


@pytest.mark.timeout(20)
def test_groups_sharing_children_are_resolved_once_each(tmp_path: Path) -> None:
    # Each level has two children that share one grandchild: walking every path would take
    # 2**40 steps.
    levels = "".join(
        f"[g{i}:children]\ng{i + 1}a\ng{i + 1}b\n"
        f"[g{i + 1}a:children]\ng{i + 1}\n[g{i + 1}b:children]\ng{i + 1}\n"
        for i in range(40)
    )
    inventory = load_inventory(write(tmp_path, "hosts.ini", levels + "[g40]\nh1\n"))

    assert inventory.groups["g0"] == ["h1"]


@pytest.mark.timeout(60)
def test_nested_groups_too_large_to_resolve_are_one_error(tmp_path: Path) -> None:
    depth = MAX_MEMBERSHIPS // 5000 + 5
    hosts = "".join(f"h{i}\n" for i in range(5000))
    path = write(tmp_path, "hosts.ini", chain_ini(depth).replace("h1\n", hosts))

    found = problem(path)

    assert found.reason.startswith("group 'g")
    assert f"the groups add up to more than {MAX_MEMBERSHIPS:,} hosts" in found.reason
    assert found.location is not None
    assert found.location.startswith(f"{path}:")
    assert found.hint == "use fewer or flatter groups, or split the inventory"


def test_a_group_written_in_two_places_is_one_group(tmp_path: Path) -> None:
    text = """\
    all:
      children:
        app:
          hosts:
            h1:
        web:
          children:
            app:
          hosts:
            h2:
    """
    inventory = load_inventory(write(tmp_path, "hosts.yml", text))

    assert inventory.groups == {"app": ["h1"], "web": ["h2", "h1"]}


def test_ansible_variables_apply_outermost_group_first_then_the_host(tmp_path: Path) -> None:
    text = """\
    [gpu:children]
    big

    [big]
    gpu2 ansible_host=10.0.0.12 speed=host

    [gpu]
    gpu1 ansible_host=10.0.0.11

    [big:vars]
    speed=big

    [gpu:vars]
    speed=gpu
    size=gpu

    [all:vars]
    size=all
    zone=all
    """
    hosts = load_inventory(write(tmp_path, "hosts.ini", text)).hosts

    assert hosts["gpu1"].labels == {"size": "gpu", "zone": "all", "speed": "gpu"}
    assert hosts["gpu2"].labels == {"size": "gpu", "zone": "all", "speed": "host"}


def test_a_yaml_alias_to_another_group_is_refused(tmp_path: Path) -> None:
    text = """\
    all:
      children:
        web: &web
          hosts:
            h1:
        app: *web
    """
    path = write(tmp_path, "hosts.yml", text)

    found = problem(path)

    assert str(found) == f"{path}:6:5: group 'app' is group 'web' again, through a YAML alias"


# --- no hosts at all ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "position", "hint"),
    [
        ("hosts.ini", "", ":1:1", "add a host line"),
        ("hosts.ini", "# only a comment\n", ":1:1", "add a host line"),
        ("hosts.ini", "[web]\n[web:vars]\nrole=frontend\n[web:children]\napp\n", ":1:1", "add"),
        ("hosts.yml", "all:\n", ":1:1", "add a host: 'all: {hosts:"),
        ("hosts.yml", "all:\n  children:\n    web:\n      vars: {a: b}\n", ":1:1", "add a host"),
        (
            "hosts.yaml",
            "apiVersion: deployer/v1alpha1\nkind: Inventory\nhosts: {}\n",
            ":3:1",
            "add a host: hosts: {NAME: {address: ADDRESS}}",
        ),
    ],
    ids=["empty-ini", "comment-only-ini", "groups-only-ini", "null-all", "groups-only", "deployer"],
)
def test_an_inventory_without_hosts_is_an_error_at_the_file(
    tmp_path: Path, name: str, text: str, position: str, hint: str
) -> None:
    path = write(tmp_path, name, text)

    found = problem(path)

    assert found.location == f"{path}{position}"
    assert found.reason.endswith("the inventory has no hosts")
    assert found.hint is not None
    assert found.hint.startswith(hint)


def test_an_inventory_built_in_code_without_hosts_is_refused() -> None:
    with pytest.raises(ValidationError, match="the inventory has no hosts"):
        Inventory(hosts={})


# --- selections of no host ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), [("hosts.yaml", DEPLOYER_YAML), ("hosts.ini", INI)])
@pytest.mark.parametrize("replicas", [1, 0])
def test_a_group_without_hosts_selects_nothing_and_says_so(
    tmp_path: Path, name: str, text: str, replicas: int
) -> None:
    path = write(tmp_path, name, text)
    inventory = load_inventory(path)

    error = selection_error(inventory, None, "web", replicas)

    assert str(error) == f"target.group: group 'web' of inventory {path} has no hosts"
    assert error.hint == (
        "add hosts to group 'web' in the inventory, or choose a group with hosts: gpu"
    )


def test_an_empty_host_list_selects_nothing_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yaml", DEPLOYER_YAML)

    error = selection_error(load_inventory(path), [], None, 1)

    assert (
        str(error)
        == f"target.hosts: an empty list selects none of the 2 host(s) of inventory {path}"
    )
    assert error.hint == f"list hosts of inventory {path}: gpu1, gpu2"


def test_unknown_hosts_and_groups_name_the_inventory_file_in_the_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yaml", DEPLOYER_YAML)
    inventory = load_inventory(path)

    group = selection_error(inventory, None, "gpus", 1)
    host = selection_error(inventory, ["gpu01"], None, 1)

    assert group.hint == f"did you mean 'gpu'? groups in inventory {path}: gpu, web"
    assert host.hint == f"did you mean 'gpu1'? hosts in inventory {path}: gpu1, gpu2"


def test_the_inventory_file_survives_resolving_key_files(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yaml", DEPLOYER_YAML)
    inventory = load_inventory(path).resolve_key_files(tmp_path)

    assert inventory.source == path
    assert str(path) in str(selection_error(inventory, None, "web", 1))


def test_provision_options_that_select_no_host_name_the_file_and_the_group(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "hosts.ini", INI)

    with pytest.raises(ManifestError) as info:
        select_hosts(load_inventory(path), None, "web")

    assert info.value.message == f"--group: group 'web' of inventory {path} has no hosts"


@pytest.mark.timeout(60)
def test_deployer_provision_of_an_empty_group_exits_1_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", INI)

    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "provision", str(path), "--group", "web"],
        cwd=ROOT,
        env={**os.environ, "DEPLOYER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    output = " ".join((proc.stdout + proc.stderr).split())  # undo the terminal's line wrapping
    assert "group 'web'" in output
    assert str(path) in output
    assert "has no hosts" in output


# --- limits and odd values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "position", "host"),
    [
        ("hosts", "[web]\nweb[1:1000000000] ansible_host=10.0.0.1\n", ":2:1", "web[1:1000000000]"),
        (
            "hosts.yml",
            "all:\n  hosts:\n    web[01:50].example.com:\n",
            ":3:5",
            "web[01:50].example.com",
        ),
    ],
    ids=["ini", "yaml"],
)
def test_host_ranges_are_refused_not_expanded(
    tmp_path: Path, name: str, text: str, position: str, host: str
) -> None:
    path = write(tmp_path, name, text)

    found = problem(path)

    assert str(found) == f"{path}{position}: host {host!r}: host ranges are not supported"
    assert found.hint == "list each host by name"


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("9" * 5000, "hosts.gpu1.port: Unable to parse input string as an integer"),
        ("99999999999999999999", "hosts.gpu1.port: Input should be less than or equal to 65535"),
        ("-1", "hosts.gpu1.port: Input should be greater than or equal to 1"),
        ("1e400", "hosts.gpu1.port: Input should be a valid integer"),
    ],
    ids=["5000-digits", "huge", "negative", "float"],
)
def test_absurd_ports_are_errors_naming_the_host(tmp_path: Path, port: str, message: str) -> None:
    path = write(tmp_path, "hosts", f"gpu1 ansible_port={port}\n")

    found = problem(path)

    assert found.location == str(path)
    assert found.reason.startswith(message)
    assert found.hint == "SSH port, 1 to 65535 (default 22)."


@pytest.mark.timeout(30)
def test_more_hosts_than_deployer_reads_is_an_error_at_the_first_one_too_many(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "hosts", "".join(f"h{i}\n" for i in range(MAX_HOSTS + 5)))

    found = problem(path)

    assert str(found) == f"{path}:{MAX_HOSTS + 1}:1: more than {MAX_HOSTS:,} hosts"
    assert found.hint is not None
    assert f"at most {MAX_HOSTS:,} hosts" in found.hint


def test_more_hosts_than_deployer_reads_is_refused_in_code_too() -> None:
    hosts = {f"h{i}": Host(address="10.0.0.1") for i in range(MAX_HOSTS + 1)}

    with pytest.raises(ValidationError, match="more than"):
        Inventory(hosts=hosts)


def jump_chain(length: int) -> dict[str, Host]:
    hosts = {"h0": Host(address="10.0.0.1")}
    hosts.update(
        {f"h{i}": Host(address="10.0.0.1", jump_host=f"h{i - 1}") for i in range(1, length)}
    )
    return hosts


def test_a_chain_of_jump_hosts_as_long_as_allowed_is_used() -> None:
    inventory = Inventory(hosts=jump_chain(MAX_JUMPS + 1))

    assert inventory.jump_options(f"h{MAX_JUMPS}")[1].count(",") == MAX_JUMPS - 1


@pytest.mark.timeout(20)
def test_a_long_chain_of_jump_hosts_is_one_error_found_in_linear_time() -> None:
    with pytest.raises(ValidationError) as info:
        Inventory(hosts=jump_chain(MAX_HOSTS))

    (error,) = info.value.errors()
    assert error["loc"] == ("hosts", f"h{MAX_JUMPS + 1}", "jumpHost")
    assert (
        error["msg"] == f"{MAX_JUMPS + 1} jump hosts on the way to this host; at most {MAX_JUMPS}"
    )


@pytest.mark.timeout(20)
def test_a_long_circle_of_jump_hosts_is_found_in_linear_time() -> None:
    hosts = jump_chain(MAX_HOSTS)
    hosts["h0"] = Host(address="10.0.0.1", jump_host=f"h{MAX_HOSTS - 1}")

    with pytest.raises(ValidationError) as info:
        Inventory(hosts=hosts)

    messages = {error["msg"] for error in info.value.errors()}
    assert messages == {"jump hosts go round in a circle"}


@pytest.mark.timeout(20)
def test_many_unknown_group_members_are_summed_up(tmp_path: Path) -> None:
    hosts = "".join(f"  host{i}: {{address: 10.0.0.1}}\n" for i in range(500))
    members = ", ".join(f"x{i}" for i in range(3000))
    text = f"{HEADER}hosts:\n{hosts}groups:\n  g: [{members}]\n"
    path = write(tmp_path, "hosts.yaml", text)

    with pytest.raises(ManifestError) as info:
        load_inventory(path)

    reasons = [p.reason for p in info.value.problems]
    assert len(reasons) == 21
    assert reasons[0] == "groups.g[0]: unknown host 'x0'"
    assert (
        reasons[-1] == "groups.g[20]: unknown host 'x20', and 2,979 more unknown host(s) after it"
    )
    hint = info.value.problems[0].hint
    assert hint is not None
    assert hint.endswith("host19, ... (500 in all)")


def test_a_host_listed_twice_in_a_group_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yaml", DEPLOYER_YAML.replace("[gpu1, gpu2]", "[gpu1, gpu1]"))

    found = problem(path)

    assert str(found) == f"{path}:7:15: groups.gpu[1]: host 'gpu1' is listed twice"
    assert found.hint == "list each host once; replicas run one per host"


def test_provision_hosts_option_with_no_names_selects_nothing_not_everything(
    tmp_path: Path,
) -> None:
    # `deployer provision INV --hosts ","` gives an empty list: an error, never every host.
    path = write(tmp_path, "hosts.ini", INI)

    with pytest.raises(ManifestError, match="selects none of the"):
        select_hosts(load_inventory(path), [], None)
