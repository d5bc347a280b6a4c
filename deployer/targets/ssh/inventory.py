"""SSH inventories: which hosts a deployment may use and how to reach them.

An inventory is read from one file in one of three formats, all giving the same
:class:`Inventory`:

* deployer's YAML (``apiVersion: deployer/v1alpha1``, ``kind: Inventory``, ``hosts``, ``groups``),
  validated like a manifest: every problem is located ``FILE:LINE:COLUMN`` with the field's dotted
  path and a hint (``hosts.gpu1.prot: unknown key``, did you mean 'port'?);
* an Ansible YAML inventory (``all: {hosts: ..., children: ...}``);
* an Ansible INI inventory (``[group]`` sections of ``name ansible_host=... ansible_user=...``
  lines), for any file not named ``*.yaml``, ``*.yml`` or ``*.json``.

Loading only reads the file; nothing here connects to a host. :meth:`Inventory.select` picks the
hosts a target uses and :meth:`Inventory.to_ansible` renders what ansible-runner takes.

Neither gives an empty answer: an inventory without hosts, and a selection of none, are errors
that name the file. Hostile input is one located error, never a hang, a traceback or all the
memory: the file is read through :mod:`deployer.inputs` (a regular file of bounded size), Ansible
groups are walked iteratively with cycles refused (``group cycle: web -> app -> web``), and lines,
hosts, jump chains and nested group sizes have limits (the ``MAX_*`` constants).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from ruamel.yaml.comments import CommentedMap

from deployer import inputs
from deployer.errors import ManifestError
from deployer.manifest.base import Spec
from deployer.manifest.explain import (
    SCHEMA_HINT,
    describe_field,
    explain_error,
    is_model,
    join_reasons,
    model_doc,
    model_field,
    unwrap,
)
from deployer.manifest.models import API_VERSION
from deployer.manifest.yaml_reader import (
    Document,
    Mark,
    child_marks,
    custom_tags,
    header_problems,
    plain,
    read_documents,
    yaml_type,
)

KIND = "Inventory"
HEADER_HINT = f"an inventory starts with 'apiVersion: {API_VERSION}' and 'kind: {KIND}'"
YAML_SUFFIXES = (".yaml", ".yml", ".json")

#: Host and group names: lower-case letters, digits, '-', '_' and '.', starting and ending with a
#: letter or digit (DNS-1123, plus the '_' Ansible group names use).
NAME = r"^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$"
#: Label keys become Ansible variables (``deployer_<key>``), so they are identifiers.
LABEL_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"
USER = r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$"
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$"
)
_JUMP = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>[^@\s:\[\]]+)(?::(?P<port>\d{1,5}))?$")
#: Groups Ansible defines itself.
RESERVED_GROUPS = ("all", "ungrouped")
#: An Ansible host range (``web[01:20]``), which deployer does not expand.
_HOST_RANGE = re.compile(r"\[[^\]]*:[^\]]*\]")
#: Most jump hosts on the way to one host: ssh's ProxyJump lists every hop for every host.
MAX_JUMPS = 16
#: Longest line of an INI inventory (a host and its variables); longer ones are refused before
#: they are parsed.
MAX_INI_LINE = 16 * inputs.KiB
#: Most host memberships the groups of an Ansible inventory add up to, child groups' hosts
#: counted in each parent: a bound on the time and memory resolving nested groups takes.
MAX_MEMBERSHIPS = 1_000_000
#: Most hosts an inventory may have: loading takes time in proportion (a few seconds at most).
MAX_HOSTS = 10_000
#: Most names a hint lists.
_LISTED = 20
#: Most unknown host names reported one by one (each is compared with every host's name).
_REPORTED = 20

Name = Annotated[str, StringConstraints(max_length=253, pattern=NAME)]
LabelKey = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_KEY)]


class Host(Spec):
    """One machine reached over SSH."""

    address: str
    """IP address or DNS name the host is reached at."""
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    """SSH port, 1 to 65535 (default 22)."""
    user: Annotated[str, StringConstraints(pattern=USER)] = "root"
    """Login user (default root)."""
    key_file: Annotated[str, StringConstraints(min_length=1)] | None = None
    """Private key file; a relative path starts at the inventory file's folder, '~' is expanded.
    Not with 'agent: true'; with neither, ssh's own defaults apply."""
    agent: bool = False
    """Authenticate with the keys of the running ssh-agent; not with 'keyFile'."""
    jump_host: Annotated[str, StringConstraints(min_length=1)] | None = None
    """Host to connect through: a host name from this inventory, or 'user@host:port'."""
    labels: dict[LabelKey, str] = Field(default_factory=dict)
    """Facts about the host as strings, e.g. accelerator: L40S, gpus: "2". Keys are identifiers
    (letters, digits, '_'); values are quoted when they look like numbers."""

    @field_validator("address")
    @classmethod
    def _ip_or_dns_name(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _DNS_NAME.match(value):
                raise ValueError(f"expected an IP address or a DNS name, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _key_file_or_agent(self) -> Host:
        if self.key_file is not None and self.agent:
            raise PydanticCustomError(
                "key_file_and_agent",
                "give 'keyFile' or 'agent: true', not both",
                {"hint": "remove one: keyFile names a key, agent: true uses the ssh-agent's keys"},
            )
        return self


class Inventory(Spec):
    """Hosts reached over SSH, and named groups of them."""

    api_version: Literal["deployer/v1alpha1"] = "deployer/v1alpha1"
    """Always 'deployer/v1alpha1'."""
    kind: Literal["Inventory"] = "Inventory"
    """Always 'Inventory'."""
    hosts: dict[Name, Host]
    """Hosts by name. Names are lower-case letters, digits, '-', '_' and '.'."""
    groups: dict[Name, list[str]] = Field(default_factory=dict)
    """Named lists of host names defined under 'hosts'; 'all' and 'ungrouped' are reserved."""

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file the inventory was read from; None for one built in code."""
        return self._source

    def __eq__(self, other: object) -> bool:
        """Equal hosts and groups: where an inventory was read from is not part of it."""
        if not isinstance(other, Inventory):
            return NotImplemented
        return (self.hosts, self.groups) == (other.hosts, other.groups)

    __hash__ = None  # type: ignore[assignment]  # dict fields: never hashable

    @model_validator(mode="after")
    def _references(self) -> Inventory:
        """At least one host; group members and jump hosts must name defined hosts; raised
        located at the value."""
        errors: list[InitErrorDetails] = []
        if not self.hosts:
            errors.append(
                _error(
                    ("hosts",),
                    self.hosts,
                    "the inventory has no hosts",
                    "add a host: hosts: {NAME: {address: ADDRESS}}",
                )
            )
        if len(self.hosts) > MAX_HOSTS:
            errors.append(_error(("hosts",), len(self.hosts), *_too_many_hosts()))
        unknown: list[tuple[tuple[str | int, ...], str, bool]] = []
        for group, members in self.groups.items():
            if group in RESERVED_GROUPS:
                errors.append(
                    _error(
                        ("groups", group, "[key]"),
                        group,
                        f"group name {group!r} is reserved by Ansible",
                        "rename the group",
                    )
                )
            listed: set[str] = set()
            for index, member in enumerate(members):
                if member not in self.hosts:
                    unknown.append((("groups", group, index), member, False))
                elif member in listed:
                    errors.append(
                        _error(
                            ("groups", group, index),
                            member,
                            f"host {member!r} is listed twice",
                            "list each host once; replicas run one per host",
                        )
                    )
                listed.add(member)
        for name, host in self.hosts.items():
            jump = host.jump_host
            if jump is None or jump in self.hosts:
                continue
            if not _JUMP.match(jump) or not re.search(r"[@.:]", jump):
                unknown.append((("hosts", name, "jumpHost"), jump, True))
        errors.extend(self._unknown(loc, n, jump=j) for loc, n, j in unknown[:_REPORTED])
        if len(unknown) > _REPORTED:  # each costs a search of every host name: say how many
            loc, name, _ = unknown[_REPORTED]
            more = len(unknown) - _REPORTED - 1
            errors.append(
                _error(
                    loc,
                    name,
                    f"unknown host {name!r}, and {more:,} more unknown host(s) after it",
                    "name hosts defined under 'hosts'; check that this is the inventory meant",
                )
            )
        errors.extend(self._jump_problems())
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    # --- what a target uses --------------------------------------------------------------------

    def select(self, hosts: list[str] | None, group: str | None, replicas: int) -> list[Host]:
        """The hosts a target runs its ``replicas`` on, one replica per host: the first
        ``replicas`` of ``hosts`` (in the order given), of ``group`` (in the order written), or,
        with neither, of every host (by name).

        Pure. Raises ManifestError with a hint, naming the inventory file, for an unknown host or
        group, a host listed twice, a selection of no host at all (an empty ``hosts`` list, a
        group without hosts), or fewer hosts than replicas. Only ``replicas=0`` (a caller
        checking the selection) gives an empty list.
        """
        where = self._where()
        if hosts is not None:
            if not hosts:
                raise ManifestError(
                    f"target.hosts: an empty list selects none of the {len(self.hosts)} "
                    f"host(s) of {where}",
                    hint=_listing(list(self.hosts), f"list hosts of {where}", ""),
                )
            names, source = hosts, f"the {len(hosts)} host(s) listed"
            for name in hosts:
                if name not in self.hosts:
                    raise ManifestError(
                        f"target.hosts: unknown host {name!r}",
                        hint=_did_you_mean(name, list(self.hosts), f"hosts in {where}"),
                    )
            twice = _first_repeated(hosts)
            if twice is not None:
                raise ManifestError(
                    f"target.hosts: host {twice!r} is listed twice",
                    hint="list each host once; replicas run one per host",
                )
        elif group is not None:
            if group not in self.groups:
                raise ManifestError(
                    f"target.group: unknown group {group!r}",
                    hint=_did_you_mean(group, list(self.groups), f"groups in {where}"),
                )
            names, source = self.groups[group], f"group {group!r} has {len(self.groups[group])}"
            if not names:
                with_hosts = [g for g, members in self.groups.items() if members]
                raise ManifestError(
                    f"target.group: group {group!r} of {where} has no hosts",
                    hint=f"add hosts to group {group!r} in the inventory, or "
                    + _listing(with_hosts, "choose a group with hosts", "no group has any"),
                )
        else:
            names, source = sorted(self.hosts), f"the inventory has {len(self.hosts)} host(s)"
        if len(names) < replicas:
            raise ManifestError(
                f"target.replicas: {replicas} replicas need {replicas} hosts; {source}",
                hint="add hosts to the inventory or the target, or lower replicas",
            )
        return [self.hosts[name] for name in names[:replicas]]

    def to_ansible(self) -> dict[str, Any]:
        """The YAML inventory ansible-runner takes: every host under ``all.hosts`` with its
        connection variables and its labels as ``deployer_<key>`` variables, every group under
        ``all.children``. Hosts, groups and variables are sorted, so the same inventory always
        renders the same text. Pure."""
        hosts: dict[str, dict[str, Any]] = {}
        for name in sorted(self.hosts):
            host = self.hosts[name]
            variables: dict[str, Any] = {
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_user": host.user,
            }
            if host.key_file is not None:
                variables["ansible_ssh_private_key_file"] = host.key_file
            jump = self.jump_options(name)
            if jump:
                variables["ansible_ssh_common_args"] = shlex.join(jump)
            for key in sorted(host.labels):
                variables[f"deployer_{key}"] = host.labels[key]
            hosts[name] = variables
        children: dict[str, Any] = {
            group: {"hosts": {member: {} for member in sorted(self.groups[group])}}
            for group in sorted(self.groups)
        }
        inventory: dict[str, Any] = {"hosts": hosts}
        if children:
            inventory["children"] = children
        return {"all": inventory}

    def resolve_key_files(self, base_dir: Path) -> Inventory:
        """The same inventory with every ``keyFile`` absolute: '~' expanded, then a relative path
        joined to ``base_dir``. Pure: the files are not checked."""
        hosts = {}
        for name, host in self.hosts.items():
            if host.key_file is not None:
                path = Path(os.path.expanduser(host.key_file))
                host = host.model_copy(update={"key_file": str(base_dir / path)})
            hosts[name] = host
        return self.model_copy(update={"hosts": hosts})

    def jump_options(self, name: str) -> list[str]:
        """The ssh options that reach host ``name`` through its jump hosts (none: direct)."""
        chain = self._jump_chain(name)
        return ["-o", f"ProxyJump={','.join(chain)}"] if chain else []

    # --- helpers -------------------------------------------------------------------------------

    def _jump_chain(self, name: str) -> list[str] | None:
        """The ProxyJump hops to reach ``name``, first hop first; None on a cycle."""
        chain: list[str] = []
        seen = {name}
        jump = self.hosts[name].jump_host
        while jump is not None:
            if jump not in self.hosts:
                chain.append(jump)
                break
            if jump in seen:
                return None
            seen.add(jump)
            hop = self.hosts[jump]
            chain.append(f"{hop.user}@{hop.address}:{hop.port}")
            jump = hop.jump_host
        return list(reversed(chain))

    def _jump_hops(self) -> dict[str, int | None]:
        """How many hops :meth:`_jump_chain` gives each host (0: reached directly); None for a
        host whose jump hosts go round in a circle. Iterative and linear in the hosts: each host
        is walked once."""
        hops: dict[str, int | None] = {}
        for start in self.hosts:
            path: list[str] = []
            on_path: set[str] = set()
            name = start
            while name not in hops and name not in on_path:
                jump = self.hosts[name].jump_host
                if jump is None or jump not in self.hosts:
                    hops[name] = 0 if jump is None else 1
                    break
                path.append(name)
                on_path.add(name)
                name = jump
            below = hops.get(name)  # None: the walk came back to a host on its own path
            for hop in reversed(path):
                below = None if below is None else below + 1
                hops[hop] = below
        return hops

    def _jump_problems(self) -> list[InitErrorDetails]:
        """Jump hosts in a circle, at every host whose chain reaches it; chains longer than
        :data:`MAX_JUMPS`, at the first host past the limit on each."""
        problems = []
        every = self._jump_hops()
        for name in self.hosts:
            hops = every[name]
            if hops is None:
                problems.append(
                    _error(
                        ("hosts", name, "jumpHost"),
                        self.hosts[name].jump_host,
                        "jump hosts go round in a circle",
                        "one host in the chain must be reachable without a jump host",
                    )
                )
            elif hops == MAX_JUMPS + 1:
                problems.append(
                    _error(
                        ("hosts", name, "jumpHost"),
                        self.hosts[name].jump_host,
                        f"{hops} jump hosts on the way to this host; at most {MAX_JUMPS}",
                        "ssh connects through every hop in turn: reach the host through fewer "
                        "jump hosts",
                    )
                )
        return problems

    def _where(self) -> str:
        return f"inventory {self._source}" if self._source is not None else "the inventory"

    def _unknown(
        self, loc: tuple[str | int, ...], name: str, *, jump: bool = False
    ) -> InitErrorDetails:
        hint = _did_you_mean(name, list(self.hosts), "hosts")
        if jump:
            hint += "; a host outside the inventory is written user@host:port"
        return _error(loc, name, f"unknown host {name!r}", hint)


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory in ``path`` (any of the three formats); key files are
    made absolute (:meth:`Inventory.resolve_key_files`) but not checked.

    Raises one ManifestError listing every problem found, each located ``FILE:LINE:COLUMN``:
    also for an inventory without hosts, and for a named pipe, a device or a file larger than
    :data:`deployer.inputs.INVENTORY` allows (refused before anything is read).
    """
    try:
        inputs.check_file(path, inputs.INVENTORY)
    except FileNotFoundError:
        raise _no_such_file(path) from None
    if path.suffix not in YAML_SUFFIXES:
        return _validated(path, None, _from_ini(path))
    documents = list(read_documents(path, inputs.INVENTORY))
    problems = [d for d in documents if isinstance(d, ManifestError)]
    if problems:
        raise _combined(problems)
    found = [d for d in documents if isinstance(d, Document)]
    if len(found) != 1:
        raise ManifestError(
            f"expected one YAML document, found {len(found)}",
            location=f"{path}:1:1",
            hint=HEADER_HINT,
        )
    return _from_yaml(path, found[0])


# --- deployer's YAML ---------------------------------------------------------------------------


def _from_yaml(path: Path, document: Document) -> Inventory:
    tree = document.tree
    if not isinstance(tree, CommentedMap):
        raise ManifestError(
            f"expected a mapping (an {KIND}), got {yaml_type(tree)}",
            location=document.mark.render(path),
            hint=HEADER_HINT,
        )
    tags = [
        ManifestError(
            f"unsupported YAML tag {tag!r}",
            location=mark.render(path),
            hint="inventories are plain YAML",
        )
        for tag, mark in custom_tags(tree)
    ]
    if tags:
        raise _combined(tags)
    if "apiVersion" not in tree and "kind" not in tree:
        return _validated(path, None, _from_ansible_yaml(path, tree))
    header = _header_problems(path, document)
    if header:
        raise _combined(header)
    return _validated(path, document, plain(tree))


def _header_problems(path: Path, document: Document) -> list[ManifestError]:
    return header_problems(path, document, api_version=API_VERSION, kind=KIND, hint=HEADER_HINT)


def _validated(path: Path, document: Document | None, data: Any) -> Inventory:
    """``data`` as an Inventory; errors are located in ``document`` when there is one (deployer's
    format), else at the file (a converted Ansible inventory)."""
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        if document is None:
            raise _combined(_converted_problems(path, exc)) from None
        raise _combined(_schema_problems(path, document, exc)) from None
    resolved = inventory.resolve_key_files(Path(os.path.abspath(path)).parent)
    resolved._source = path
    return resolved


def _no_such_file(path: Path) -> ManifestError:
    return ManifestError(
        "no such inventory file",
        location=str(path),
        hint="check the path; in a manifest it is relative to the manifest's folder",
    )


def _schema_problems(path: Path, document: Document, exc: ValidationError) -> list[ManifestError]:
    """:func:`deployer.manifest.explain.schema_problems` for the Inventory model: the same
    locations and reasons, with hints taken from the inventory's models rather than the
    manifest's."""
    grouped: dict[tuple[Mark, str], list[tuple[str, str]]] = {}
    for error in exc.errors(include_url=False):
        mark, field_path, reason, _ = explain_error(document, error)
        grouped.setdefault((mark, field_path), []).append((reason, _hint(error)))
    problems = []
    for (mark, field_path), explained in sorted(grouped.items(), key=lambda item: item[0][0]):
        reason = join_reasons([r for r, _ in explained])
        message = f"{field_path}: {reason}" if field_path else reason
        problems.append(ManifestError(message, location=mark.render(path), hint=explained[0][1]))
    return problems


def _converted_problems(path: Path, exc: ValidationError) -> list[ManifestError]:
    """Problems of an inventory converted from Ansible's format: no YAML positions to point at,
    so the path names the host and deployer's field."""
    problems = []
    for error in exc.errors(include_url=False):
        parts = [str(p) for p in error["loc"] if p != "[key]"]
        dotted = ".".join(parts)
        reason = str(error["msg"]).removeprefix("Value error, ")
        problems.append(
            ManifestError(
                f"{dotted}: {reason}" if dotted else reason, location=str(path), hint=_hint(error)
            )
        )
    return problems


def _hint(error: Any) -> str:
    """What to do about one pydantic error, from the inventory's models."""
    ctx = error.get("ctx") or {}
    if "hint" in ctx:
        return str(ctx["hint"])
    loc = tuple(error["loc"])
    owner, field, target = _schema_at(loc[:-1] if error["type"] == "missing" else loc)
    if error["type"] == "missing":
        field = model_field(target, loc[-1]) if is_model(target) else None
        return describe_field(field) or f"add '{loc[-1]}' here"
    if error["type"] == "extra_forbidden" and owner is not None:
        valid = [f.alias or n for n, f in owner.model_fields.items()]
        return _did_you_mean(str(loc[-1]), valid, "valid keys")
    if loc and loc[-1] == "[key]":
        return "names are lower-case letters, digits, '-', '_' and '.'"
    return describe_field(field) or model_doc(target) or SCHEMA_HINT


def _schema_at(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, Any, Any]:
    """The model holding the last key of ``loc``, that key's field, and the type ``loc`` ends at:
    model fields by alias or name, dict values, list items."""
    target: Any = Inventory
    owner: type[BaseModel] | None = None
    field = None
    for element in loc:
        target = unwrap(target)
        if is_model(target):
            owner, field = target, model_field(target, element)
            if field is None:
                return owner, None, None
            target = field.annotation
        elif element == "[key]":
            break
        elif get_origin(target) is dict:
            target = get_args(target)[1]
        elif get_origin(target) is list:
            target = get_args(target)[0]
    return owner, field, unwrap(target)


# --- Ansible's YAML ----------------------------------------------------------------------------

#: Ansible connection variables and the Host field each becomes (older spellings included).
_ANSIBLE_VARS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "keyFile",
    "ansible_private_key_file": "keyFile",
}


def _from_ansible_yaml(path: Path, tree: CommentedMap) -> dict[str, Any]:
    """An Ansible YAML inventory as deployer's inventory data: top-level groups (usually just
    'all') with ``hosts``, ``children`` and ``vars``; a group mentioned in several places is
    one group. Read iteratively (any nesting is safe); see :func:`_resolved` for the rest."""
    written = _Written(path, "add a host: 'all: {hosts: {NAME: {ansible_host: ADDRESS}}}'")
    problems: list[ManifestError] = []
    read_as: dict[int, str] = {}  # each group mapping read, by id: the group it was read as
    pending = [(str(name), tree[name], child_marks(tree, name)[0]) for name in tree]
    pending.reverse()
    while pending:
        name, node, mark = pending.pop()
        group = written.group(name, mark)
        if node is None:
            continue
        if not isinstance(node, CommentedMap):
            problems.append(_ansible_problem(path, mark, f"group {name!r}", node))
            continue
        if id(node) in read_as:  # a YAML alias to a group's mapping
            if read_as[id(node)] != name:
                problems.append(
                    ManifestError(
                        f"group {name!r} is group {read_as[id(node)]!r} again, through a YAML "
                        "alias",
                        location=mark.render(path),
                        hint="write each group out; to nest a group, list it under 'children'",
                    )
                )
            continue
        read_as[id(node)] = name
        group.vars.update(_mapping(path, node, "vars", problems))
        for host, host_vars in _mapping(path, node, "hosts", problems).items():
            key_mark, value_mark = child_marks(node["hosts"], host)
            if _HOST_RANGE.search(host):
                problems.append(_host_range(host, key_mark.render(path)))
            elif not isinstance(host_vars, dict | None):
                problems.append(_ansible_problem(path, value_mark, f"host {host!r}", host_vars))
            else:
                written.add_host(group, host, host_vars or {}, key_mark)
        children = node.get("children")
        if children is not None and not isinstance(children, CommentedMap):
            mark = child_marks(node, "children")[1]
            problems.append(_ansible_problem(path, mark, "children", children))
            children = None
        listed = []
        for child in children or {}:
            child_mark = child_marks(children, child)[0]
            group.children.setdefault(str(child), child_mark)
            listed.append((str(child), children[child], child_mark))
        pending.extend(reversed(listed))
        for key in node:
            if key not in ("hosts", "children", "vars"):
                problems.append(
                    ManifestError(
                        f"{name}.{key}: unknown key in an Ansible group",
                        location=child_marks(node, key)[0].render(path),
                        hint="an Ansible group holds hosts, children and vars",
                    )
                )
    if problems:
        raise _combined(problems)
    return _resolved(written)


def _mapping(
    path: Path, group: CommentedMap, key: str, problems: list[ManifestError]
) -> dict[str, Any]:
    value = group.get(key)
    if value is None:
        return {}
    if not isinstance(value, CommentedMap):
        problems.append(_ansible_problem(path, child_marks(group, key)[1], key, value))
        return {}
    return {str(k): plain(v) for k, v in value.items()}


def _ansible_problem(path: Path, mark: Mark, what: str, value: Any) -> ManifestError:
    return ManifestError(
        f"{what}: expected a mapping, got {yaml_type(value)}",
        location=mark.render(path),
        hint="an Ansible YAML inventory is 'all: {hosts: {NAME: {VARS}}, children: {GROUP: ...}}'",
    )


def _host(name: str, variables: dict[str, Any], path: Path) -> dict[str, Any]:
    """One Ansible host's variables as deployer's Host data: connection variables become fields,
    other variables labels (as strings); other ``ansible_*`` variables are refused rather than
    silently dropped."""
    host: dict[str, Any] = {"address": name}
    labels: dict[str, str] = {}
    for key, value in variables.items():
        if key in _ANSIBLE_VARS:
            host[_ANSIBLE_VARS[key]] = value
        elif key.startswith("ansible_"):
            raise ManifestError(
                f"hosts.{name}.{key}: Ansible variable not supported in an inventory",
                location=str(path),
                hint="deployer reads ansible_host, ansible_port, ansible_user and "
                "ansible_ssh_private_key_file; remove the others",
            )
        else:
            labels[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if labels:
        host["labels"] = labels
    return host


# --- Ansible's INI -----------------------------------------------------------------------------


def _from_ini(path: Path) -> dict[str, Any]:
    """An Ansible INI inventory: ``[group]`` sections of ``NAME key=value ...`` host lines,
    ``[group:vars]`` sections of ``key=value`` lines and ``[group:children]`` sections of group
    names; lines before any section are ungrouped hosts. Comments start with '#' or ';'.
    Read through :func:`deployer.inputs.read_text` (a regular file of bounded size); see
    :func:`_resolved` for the rest."""
    try:
        text = inputs.read_text(path, inputs.INVENTORY)
    except FileNotFoundError:
        raise _no_such_file(path) from None
    written = _Written(path, "add a host line: 'NAME ansible_host=ADDRESS'")
    section, part = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines()):
        mark = Mark(number, 0)
        location = mark.render(path)
        if len(raw) > MAX_INI_LINE:
            raise ManifestError(
                f"line of {len(raw):,} characters; at most {MAX_INI_LINE:,}",
                location=location,
                hint="a line is a section header, a host and its variables, a key=value or a "
                "group name; check that this is an inventory file",
            )
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            header = re.fullmatch(r"\[([^:\]]+)(?::(vars|children))?\]", line)
            if header is None:
                raise ManifestError(
                    f"invalid section header {line!r}",
                    location=location,
                    hint="write [group], [group:vars] or [group:children]",
                )
            section, part = header.group(1), header.group(2) or "hosts"
            written.group(section, mark)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ManifestError(
                f"cannot parse: {exc}", location=location, hint="check the quoting on this line"
            ) from None
        if not words:
            continue
        group = written.group(section, mark)
        if part == "children":
            group.children.setdefault(words[0], mark)
            written.group(words[0], mark)
            continue
        pairs = words if part == "vars" else words[1:]
        variables = {}
        for pair in pairs:
            key, equals, value = pair.partition("=")
            if not equals:
                raise ManifestError(
                    f"expected key=value, got {pair!r}",
                    location=location,
                    hint="host lines are 'NAME key=value ...'",
                )
            variables[key] = value
        if part == "vars":
            group.vars.update(variables)
        elif _HOST_RANGE.search(words[0]):
            raise _host_range(words[0], location)
        else:
            written.add_host(group, words[0], variables, mark)
    return _resolved(written)


# --- Ansible's groups --------------------------------------------------------------------------


@dataclass
class _Group:
    """One Ansible group as written, every mention of it merged."""

    mark: Mark
    """Where the group is first mentioned."""
    hosts: dict[str, None] = field(default_factory=dict)
    """Its own hosts, in the order written (the keys)."""
    vars: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Mark] = field(default_factory=dict)
    """Its child groups in the order written, each with where it is first listed here."""


@dataclass
class _Written:
    """An Ansible inventory as written, in either format."""

    path: Path
    no_hosts_hint: str
    """What to add to an inventory without hosts, in this format."""
    groups: dict[str, _Group] = field(default_factory=dict)
    """Every group mentioned, in the order first mentioned."""
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every host's own variables, hosts in the order first mentioned."""

    def group(self, name: str, mark: Mark) -> _Group:
        """The group ``name``, first mentioned at ``mark`` if it is new."""
        if name not in self.groups:
            self.groups[name] = _Group(mark)
        return self.groups[name]

    def add_host(self, group: _Group, name: str, variables: dict[str, Any], mark: Mark) -> None:
        """Add host ``name`` (written at ``mark``) to ``group``; raises ManifestError for the
        host past :data:`MAX_HOSTS`."""
        if name not in self.host_vars and len(self.host_vars) >= MAX_HOSTS:
            message, hint = _too_many_hosts()
            raise ManifestError(message, location=mark.render(self.path), hint=hint)
        group.hosts[name] = None
        self.host_vars.setdefault(name, {}).update(variables)


def _resolved(written: _Written) -> dict[str, Any]:
    """Deployer's inventory data for an Ansible inventory: a group's members are its own hosts
    and then its children's, each once; a host's variables are 'all''s, then its groups' from
    the outermost in (by depth below 'all', then by name), then its own, as in Ansible.

    Raises ManifestError for a group that contains itself (``group cycle: a -> b -> a``), an
    inventory without hosts, and groups too large once nested (:data:`MAX_MEMBERSHIPS`).
    """
    path, groups = written.path, written.groups
    order = _children_first(path, groups)
    if not written.host_vars:
        raise ManifestError(
            "the inventory has no hosts", location=f"{path}:1:1", hint=written.no_hosts_hint
        )
    members = _members(path, groups, order)
    depth = dict.fromkeys(groups, 1)
    depth["all"] = 0
    for name in reversed(order):  # parents before children
        for child in groups[name].children:
            depth[child] = max(depth[child], depth[name] + 1)
    in_groups: dict[str, list[str]] = {host: [] for host in written.host_vars}
    for name, hosts in members.items():
        for host in hosts:
            in_groups[host].append(name)
    common = groups["all"].vars if "all" in groups else {}
    resolved = {}
    for host, own in written.host_vars.items():
        variables = dict(common)
        for name in sorted(in_groups[host], key=lambda g: (depth[g], g)):
            variables.update(groups[name].vars)
        resolved[host] = _host(host, {**variables, **own}, path)
    return {
        "hosts": resolved,
        "groups": {name: members[name] for name in groups if name not in RESERVED_GROUPS},
    }


def _children_first(path: Path, groups: dict[str, _Group]) -> list[str]:
    """Every group, each after all of its children. 'all' has as children, besides those
    written, every group that is no other group's child (as in Ansible), so a group listing
    'all' as a child closes a cycle too.

    Raises ManifestError for a cycle: named, and located where the file, read from the top,
    closes it (its last-written link). Iterative (a depth-first walk with its own stack): any
    depth of nesting is safe.
    """
    listed = {child for group in groups.values() for child in group.children}
    implicit = {name: group.mark for name, group in groups.items() if name not in listed}
    implicit.pop("all", None)

    def children(name: str) -> list[tuple[str, Mark]]:
        written = list(groups[name].children.items())
        return written + list(implicit.items()) if name == "all" else written

    order: list[str] = []
    done: set[str] = set()
    for root in ["all", *groups] if "all" in groups else groups:
        if root in done:
            continue
        trail, on_trail = [root], {root}
        pending = [iter(children(root))]
        while pending:
            step = next(pending[-1], None)
            if step is None:
                pending.pop()
                finished = trail.pop()
                on_trail.discard(finished)
                done.add(finished)
                order.append(finished)
                continue
            child = step[0]
            if child in on_trail:
                raise _cycle(path, groups, trail[trail.index(child) :])
            if child not in done:
                trail.append(child)
                on_trail.add(child)
                pending.append(iter(children(child)))
    return order


def _cycle(path: Path, groups: dict[str, _Group], circle: list[str]) -> ManifestError:
    """The error for groups ``circle`` (each a child of the one before, the first a child of the
    last): spelled from the group its last-written link leads to, located at that link. An
    implicit link (from 'all') is never last: it is not written at all."""
    links = [(circle[i - 1], name) for i, name in enumerate(circle)]
    written = [(parent, child) for parent, child in links if child in groups[parent].children]
    parent, child = max(written, key=lambda link: groups[link[0]].children[link[1]])
    start = circle.index(child)
    names = circle[start:] + circle[:start] + [child]
    return ManifestError(
        f"group cycle: {' -> '.join(names)}",
        location=groups[parent].children[child].render(path),
        hint="a group cannot contain itself, directly or through other groups: remove "
        f"{child!r} from the children of {parent!r}",
    )


def _members(path: Path, groups: dict[str, _Group], order: list[str]) -> dict[str, list[str]]:
    """Every group's hosts but 'all''s (every host): its own, then its children's, each once.

    Raises ManifestError when the hosts gathered, counted once per group they are gathered
    into, pass :data:`MAX_MEMBERSHIPS`: deep nesting of many hosts would otherwise take
    time and memory that grow with depth times hosts."""
    members: dict[str, list[str]] = {}
    counted = 0
    for name in order:
        if name == "all":
            continue
        group = groups[name]
        found = dict(group.hosts)
        counted += len(found)
        for child in group.children:
            counted += len(members[child])
            if counted > MAX_MEMBERSHIPS:
                break
            found.update(dict.fromkeys(members[child]))
        if counted > MAX_MEMBERSHIPS:
            raise ManifestError(
                f"group {name!r}: the groups add up to more than {MAX_MEMBERSHIPS:,} hosts "
                "(a host counts once in every group it is in, through child groups too)",
                location=group.mark.render(path),
                hint="use fewer or flatter groups, or split the inventory",
            )
        members[name] = list(found)
    return members


def _too_many_hosts() -> tuple[str, str]:
    return (
        f"more than {MAX_HOSTS:,} hosts",
        f"deployer reads inventories of at most {MAX_HOSTS:,} hosts; give it one of the hosts "
        "it deploys to",
    )


def _host_range(name: str, location: str) -> ManifestError:
    return ManifestError(
        f"host {name!r}: host ranges are not supported",
        location=location,
        hint="list each host by name",
    )


# --- shared ------------------------------------------------------------------------------------


def _error(loc: tuple[str | int, ...], value: Any, message: str, hint: str) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("inventory_reference", message, {"hint": hint}),
        loc=loc,
        input=value,
    )


def _did_you_mean(name: str, valid: list[str], what: str) -> str:
    # difflib is quadratic in the name's length: a name no one would mistype gets no suggestion.
    close = (
        difflib.get_close_matches(name.lower(), [v.lower() for v in valid], n=1, cutoff=0.6)
        if len(name) <= 253
        else []
    )
    by_lower = {v.lower(): v for v in valid}
    listing = _listing(valid, what, f"there are no {what}")
    return f"did you mean '{by_lower[close[0]]}'? {listing}" if close else listing


def _listing(names: list[str], what: str, none: str) -> str:
    """``what: a, b, c`` with at most :data:`_LISTED` names; ``none`` when there are none."""
    if not names:
        return none
    shown = ", ".join(names[:_LISTED])
    more = f", ... ({len(names)} in all)" if len(names) > _LISTED else ""
    return f"{what}: {shown}{more}"


def _first_repeated(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _combined(problems: list[ManifestError]) -> ManifestError:
    if len(problems) == 1:
        return problems[0]
    first = problems[0]
    return ManifestError(first.reason, location=first.location, hint=first.hint, problems=problems)
