"""SSH inventories: what a user sees for each mistake, the Ansible formats, which hosts a target
uses, and what ansible-runner is given."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deployer.errors import ManifestError
from deployer.manifest import load_manifest
from deployer.manifest.models import SshTargetSpec
from deployer.targets.ssh import Host, Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "model_manifests"

VALID = """\
apiVersion: deployer/v1alpha1
kind: Inventory
hosts:
  bastion:
    address: 203.0.113.10
    user: ops
    agent: true
  gpu1:
    address: 10.0.0.11
    port: 2222
    user: ubuntu
    keyFile: keys/gpu
    jumpHost: bastion
    labels:
      accelerator: L40S
      gpus: "2"
  gpu2:
    address: gpu2.example.com
    jumpHost: ops@jump.example.com:2200
groups:
  gpu: [gpu2, gpu1]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_in(path: Path) -> list[ManifestError]:
    with pytest.raises(ManifestError) as info:
        load_inventory(path)
    return info.value.problems


# --- deployer's format -------------------------------------------------------------------------


def test_a_valid_inventory_loads_and_round_trips(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yaml", VALID))

    gpu1 = inventory.hosts["gpu1"]
    assert (gpu1.address, gpu1.port, gpu1.user) == ("10.0.0.11", 2222, "ubuntu")
    assert gpu1.key_file == str(tmp_path / "keys/gpu")
    assert gpu1.labels == {"accelerator": "L40S", "gpus": "2"}
    bastion = inventory.hosts["bastion"]
    assert (bastion.port, bastion.agent, bastion.key_file) == (22, True, None)
    assert inventory.hosts["gpu2"].user == "root"
    assert inventory.groups == {"gpu": ["gpu2", "gpu1"]}
    dumped = inventory.model_dump(by_alias=True, exclude_defaults=True)
    assert Inventory.model_validate(dumped) == inventory
    assert dumped["hosts"]["gpu1"]["keyFile"] == str(tmp_path / "keys/gpu")


def test_key_files_expand_the_home_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yaml", VALID.replace("keys/gpu", "~/.ssh/id_ed25519"))

    assert load_inventory(path).hosts["gpu1"].key_file == str(Path.home() / ".ssh/id_ed25519")


# Each case: a change to VALID, and the one problem a user must see: line:column, message, hint
# (compared as a prefix).
ONE_PROBLEM = [
    pytest.param(
        ("port: 2222", "prot: 2222"),
        "10:5",
        "hosts.gpu1.prot: unknown key",
        "did you mean 'port'? valid keys: address, port, user, keyFile, agent, jumpHost, labels",
        id="misspelt-key",
    ),
    pytest.param(
        ("gpu: [gpu2, gpu1]", "gpu: [gpu2, bastoin]"),
        "21:15",
        "groups.gpu[1]: unknown host 'bastoin'",
        "did you mean 'bastion'? hosts: bastion, gpu1, gpu2",
        id="unknown-host-in-group",
    ),
    pytest.param(
        ("    keyFile: keys/gpu\n", "    keyFile: keys/gpu\n    agent: true\n"),
        "8:3",
        "hosts.gpu1: give 'keyFile' or 'agent: true', not both",
        "remove one: keyFile names a key",
        id="key-file-and-agent",
    ),
    pytest.param(
        ("port: 2222", "port: 70000"),
        "10:11",
        "hosts.gpu1.port: Input should be less than or equal to 65535",
        "SSH port, 1 to 65535 (default 22).",
        id="port-out-of-range",
    ),
    pytest.param(
        ("port: 2222", "port: ssh"),
        "10:11",
        "hosts.gpu1.port: Input should be a valid integer",
        "SSH port",
        id="port-not-a-number",
    ),
    pytest.param(
        ("    address: 10.0.0.11\n", ""),
        "8:3",
        "hosts.gpu1.address: required field is missing",
        "IP address or DNS name the host is reached at.",
        id="missing-address",
    ),
    pytest.param(
        ("address: 10.0.0.11", "address: 10.0.0.11 gpu1"),
        "9:14",
        "hosts.gpu1.address: expected an IP address or a DNS name, got '10.0.0.11 gpu1'",
        "IP address or DNS name",
        id="address-with-a-space",
    ),
    pytest.param(
        ("    port: 2222\n", "    port: 2222\n    port: 22\n"),
        "11:5",
        "duplicate key 'port' (first defined on line 10)",
        "a key may appear once per mapping",
        id="duplicate-key",
    ),
    pytest.param(
        ("jumpHost: bastion", "jumpHost: bastoin"),
        "13:15",
        "hosts.gpu1.jumpHost: unknown host 'bastoin'",
        "did you mean 'bastion'? hosts: bastion, gpu1, gpu2; a host outside the inventory is "
        "written user@host:port",
        id="unknown-jump-host",
    ),
    pytest.param(
        ('gpus: "2"', "gpus: 2"),
        "16:13",
        "hosts.gpu1.labels.gpus: Input should be a valid string",
        "Facts about the host as strings",
        id="label-not-a-string",
    ),
    pytest.param(
        ("  gpu2:\n", "  GPU_2:\n"),
        "17:3",
        "hosts.GPU_2: String should match pattern",
        "names are lower-case letters, digits, '-', '_' and '.'",
        id="host-name-with-capitals",
    ),
    pytest.param(
        ("  gpu: [", "  all: ["),
        "21:3",
        "groups.all: group name 'all' is reserved by Ansible",
        "rename the group",
        id="reserved-group-name",
    ),
    pytest.param(
        ("kind: Inventory", "kind: Inventroy"),
        "2:7",
        "kind: expected 'Inventory', got 'Inventroy'",
        "an inventory starts with 'apiVersion: deployer/v1alpha1' and 'kind: Inventory'",
        id="wrong-kind",
    ),
    pytest.param(
        ("    agent: true\n", "    agent: true\n    jumpHost: gpu1\n"),
        "8:15",
        "hosts.bastion.jumpHost: jump hosts go round in a circle",
        "one host in the chain must be reachable without a jump host",
        id="jump-host-cycle",
    ),
]


@pytest.mark.parametrize(("change", "position", "message", "hint"), ONE_PROBLEM)
def test_each_mistake_is_one_located_problem_with_a_hint(
    tmp_path: Path, change: tuple[str, str], position: str, message: str, hint: str
) -> None:
    old, new = change
    assert old in VALID
    path = write(tmp_path, "hosts.yaml", VALID.replace(old, new, 1))

    problems = problems_in(path)

    assert [(p.location, p.reason[: len(message)]) for p in problems][:1] == [
        (f"{path}:{position}", message)
    ], [str(p) for p in problems]
    assert problems[0].hint is not None
    assert problems[0].hint.startswith(hint), problems[0].hint


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("port: 2222", "prot: 2222").replace('gpus: "2"', "gpus: 2")
    path = write(tmp_path, "hosts.yaml", text)

    assert [str(p) for p in problems_in(path)] == [
        f"{path}:10:5: hosts.gpu1.prot: unknown key",
        f"{path}:16:13: hosts.gpu1.labels.gpus: Input should be a valid string",
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.yaml", None, "no such inventory file"),
        ("empty.yaml", "# nothing\n", "expected one YAML document, found 0"),
        ("list.yaml", "- gpu1\n", "expected a mapping (an Inventory), got a list"),
        ("tagged.yaml", VALID.replace("10.0.0.11", "!env GPU1"), "unsupported YAML tag '!env'"),
    ],
)
def test_files_that_are_not_inventories(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name if text is None else write(tmp_path, name, text)

    (problem,) = problems_in(path)

    assert problem.reason == message
    assert problem.location is not None
    assert problem.location.startswith(str(path))


# --- Ansible's formats -------------------------------------------------------------------------

ANSIBLE_YAML = """\
all:
  vars:
    ansible_user: ubuntu
  hosts:
    lonely:
  children:
    gpu:
      vars:
        accelerator: L40S
      hosts:
        gpu1:
          ansible_host: 10.0.0.11
          ansible_port: 2222
          ansible_ssh_private_key_file: keys/gpu
          gpus: 2
      children:
        big:
          hosts:
            gpu2: {ansible_host: 10.0.0.12, accelerator: H100, nvlink: true}
"""

ANSIBLE_INI = """\
# ungrouped first
lonely

[gpu]
gpu1 ansible_host=10.0.0.11 ansible_port=2222 ansible_ssh_private_key_file=keys/gpu gpus=2

[big]
gpu2 ansible_host=10.0.0.12 accelerator=H100 nvlink=true

[gpu:children]
big

[gpu:vars]
accelerator=L40S

[all:vars]
ansible_user=ubuntu
"""


@pytest.mark.parametrize(
    ("name", "text"), [("hosts.yml", ANSIBLE_YAML), ("hosts.ini", ANSIBLE_INI)], ids=["yaml", "ini"]
)
def test_ansible_inventories_become_the_same_inventory(
    tmp_path: Path, name: str, text: str
) -> None:
    inventory = load_inventory(write(tmp_path, name, text))

    assert inventory.hosts == {
        "lonely": Host(address="lonely", user="ubuntu"),
        "gpu1": Host(
            address="10.0.0.11",
            port=2222,
            user="ubuntu",
            key_file=str(tmp_path / "keys/gpu"),
            labels={"accelerator": "L40S", "gpus": "2"},
        ),
        "gpu2": Host(
            address="10.0.0.12",
            user="ubuntu",
            labels={"accelerator": "H100", "nvlink": "true"},
        ),
    }
    assert {g: sorted(m) for g, m in inventory.groups.items()} == {
        "gpu": ["gpu1", "gpu2"],
        "big": ["gpu2"],
    }


@pytest.mark.parametrize(
    ("name", "text", "location", "message"),
    [
        (
            "hosts.yml",
            "all:\n  hosts:\n    gpu1: {ansible_host: 10.0.0.11, ansible_become: true}\n",
            "",
            "hosts.gpu1.ansible_become: Ansible variable not supported in an inventory",
        ),
        (
            "hosts.yml",
            "all:\n  hosts: [gpu1]\n",
            ":2:10",
            "hosts: expected a mapping, got a list",
        ),
        (
            "hosts.yml",
            "all:\n  hots: {gpu1: }\n",
            ":2:3",
            "all.hots: unknown key in an Ansible group",
        ),
        (
            "hosts.yml",
            "all:\n  hosts:\n    gpu1: {ansible_port: 70000}\n",
            "",
            "hosts.gpu1.port: Input should be less than or equal to 65535",
        ),
        ("hosts", "[gpu\ngpu1\n", ":1:1", "invalid section header '[gpu'"),
        ("hosts", "[gpu]\ngpu1 ansible_user\n", ":2:1", "expected key=value, got 'ansible_user'"),
    ],
)
def test_ansible_mistakes_are_named(
    tmp_path: Path, name: str, text: str, location: str, message: str
) -> None:
    path = write(tmp_path, name, text)

    (problem,) = problems_in(path)

    assert (problem.location, problem.reason) == (f"{path}{location}", message)
    assert problem.hint


# --- select ------------------------------------------------------------------------------------

SELECT = [
    pytest.param(None, "gpu", 1, ["gpu2"], id="group-in-written-order"),
    pytest.param(None, "gpu", 2, ["gpu2", "gpu1"], id="whole-group"),
    pytest.param(["gpu1", "bastion"], None, 1, ["gpu1"], id="hosts-in-given-order"),
    pytest.param(None, None, 3, ["bastion", "gpu1", "gpu2"], id="neither-means-every-host"),
]


@pytest.mark.parametrize(("hosts", "group", "replicas", "expected"), SELECT)
def test_select_picks_one_host_per_replica(
    tmp_path: Path, hosts: list[str] | None, group: str | None, replicas: int, expected: list[str]
) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yaml", VALID))

    chosen = inventory.select(hosts, group, replicas)

    assert chosen == [inventory.hosts[name] for name in expected]


SELECT_ERRORS = [
    pytest.param(
        None, "gpus", 1, "target.group: unknown group 'gpus'", "did you mean 'gpu'? groups", id="g"
    ),
    pytest.param(
        ["gpu3"], None, 1, "target.hosts: unknown host 'gpu3'", "did you mean", id="unknown-host"
    ),
    pytest.param(
        ["gpu1", "gpu1"], None, 1, "target.hosts: host 'gpu1' is listed twice", "list each", id="2x"
    ),
    pytest.param(
        None,
        "gpu",
        3,
        "target.replicas: 3 replicas need 3 hosts; group 'gpu' has 2",
        "add hosts to the inventory or the target, or lower replicas",
        id="fewer-hosts-than-replicas",
    ),
]


@pytest.mark.parametrize(("hosts", "group", "replicas", "message", "hint"), SELECT_ERRORS)
def test_select_refuses_what_it_cannot_satisfy(
    tmp_path: Path,
    hosts: list[str] | None,
    group: str | None,
    replicas: int,
    message: str,
    hint: str,
) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yaml", VALID))

    with pytest.raises(ManifestError) as info:
        inventory.select(hosts, group, replicas)

    assert str(info.value) == message
    assert info.value.hint is not None
    assert info.value.hint.startswith(hint)


# --- to_ansible --------------------------------------------------------------------------------


def test_to_ansible_is_the_runner_inventory_sorted(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yaml", VALID))

    rendered = inventory.to_ansible()

    assert rendered == {
        "all": {
            "hosts": {
                "bastion": {
                    "ansible_host": "203.0.113.10",
                    "ansible_port": 22,
                    "ansible_user": "ops",
                },
                "gpu1": {
                    "ansible_host": "10.0.0.11",
                    "ansible_port": 2222,
                    "ansible_user": "ubuntu",
                    "ansible_ssh_private_key_file": str(tmp_path / "keys/gpu"),
                    "ansible_ssh_common_args": "-o ProxyJump=ops@203.0.113.10:22",
                    "deployer_accelerator": "L40S",
                    "deployer_gpus": "2",
                },
                "gpu2": {
                    "ansible_host": "gpu2.example.com",
                    "ansible_port": 22,
                    "ansible_user": "root",
                    "ansible_ssh_common_args": "-o ProxyJump=ops@jump.example.com:2200",
                },
            },
            "children": {"gpu": {"hosts": {"gpu1": {}, "gpu2": {}}}},
        }
    }
    assert list(rendered["all"]["hosts"]) == ["bastion", "gpu1", "gpu2"]


def test_jump_hosts_chain_first_hop_first() -> None:
    inventory = Inventory(
        hosts={
            "edge": Host(address="edge.example.com", jump_host="me@outer.example.com"),
            "inner": Host(address="10.0.0.2", user="ops", jump_host="edge"),
            "gpu": Host(address="10.0.1.3", jump_host="inner"),
        }
    )

    args = inventory.to_ansible()["all"]["hosts"]["gpu"]["ansible_ssh_common_args"]

    assert args == ("-o ProxyJump=me@outer.example.com,root@edge.example.com:22,ops@10.0.0.2:22")


def test_to_ansible_loads_back_as_the_same_inventory(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yaml", VALID))
    rendered = inventory.to_ansible()
    for host in rendered["all"]["hosts"].values():
        host.pop("ansible_ssh_common_args", None)
    path = tmp_path / "ansible.yml"
    with path.open("w") as stream:
        YAML(typ="safe").dump(rendered, stream)

    again = load_inventory(path)

    assert again.groups == {"gpu": ["gpu1", "gpu2"]}
    assert {name: host.labels for name, host in again.hosts.items()} == {
        "bastion": {},
        "gpu1": {"deployer_accelerator": "L40S", "deployer_gpus": "2"},
        "gpu2": {},
    }


# --- the example -------------------------------------------------------------------------------


def test_the_example_manifest_targets_the_example_inventory() -> None:
    manifest = load_manifest(EXAMPLES / "mistral-7b-instruct.yaml")
    target = manifest.deployment.spec.target
    assert isinstance(target, SshTargetSpec)

    inventory = load_inventory(manifest.resolve_path(target.inventory))
    (host,) = inventory.select(target.hosts, target.group, target.replicas)

    assert host.labels == {"accelerator": "A10G", "gpus": "1"}
    assert manifest.deployment.spec.resources.accelerator == "A10G"
    assert inventory.hosts["bastion"].agent
