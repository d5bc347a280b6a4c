"""The local target's port for a deployment that never ran: the same on every plan (so the plan
prints the port apply uses), below the ephemeral range, and another one when it is taken."""

from __future__ import annotations

import socket
from pathlib import Path

from deployer.settings import Settings
from deployer.targets.local.target import PORT_RANGE, LocalTarget, preferred_port


def test_a_new_deployment_gets_the_same_port_on_every_plan(tmp_path: Path) -> None:
    target = LocalTarget(Settings(home=tmp_path / "home", cache=tmp_path / "cache"))
    first = target.default_port("tiny", "127.0.0.1")
    assert first in PORT_RANGE
    assert [target.default_port("tiny", "127.0.0.1") for _ in range(3)] == [first] * 3
    assert target.default_port("tiny", "0.0.0.0") == first  # checked on the loopback address


def test_a_taken_port_moves_the_deployment_to_the_next_free_one() -> None:
    port = preferred_port("busy")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        moved = preferred_port("busy")
        assert moved != port
        assert moved in PORT_RANGE
        assert preferred_port("busy") == moved, "still deterministic while it is taken"
    assert preferred_port("busy") == port, "back once it is free"
