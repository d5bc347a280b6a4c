"""The server's application on each module's ``settings`` (a state it seeds), with a token of
every role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from deployer.server import auth
from deployer.server.app import create_app
from deployer.settings import Settings
from deployer.state import Role


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    """A token of each role, by role name."""
    return {role.value: auth.create_token(settings, role.value, role.value)[0] for role in Role}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The application, asked as a browser on this machine would (over the loopback)."""
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client
