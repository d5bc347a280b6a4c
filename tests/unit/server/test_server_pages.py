"""The dashboard's pages through the real application: a token exchanged for a session cookie,
CSRF tokens on every form, roles, and every value escaped."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployer.api import DeploymentView
from deployer.server import auth
from deployer.server.sessions import COOKIE
from deployer.settings import Settings
from deployer.state import DeploymentRecord, DeploymentStatus, RunStatus, StateStore

HOSTILE = "<script>alert('owned')</script>"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        store.upsert_deployment("alpha", target_kind="local", status=DeploymentStatus.FAILED)
        store.upsert_deployment("bravo", target_kind="ssh", status=DeploymentStatus.DESTROYED)
        store.upsert_deployment("charlie", target_kind="local", status=DeploymentStatus.FAILED)
        store.upsert_deployment("delta", target_kind="ssh", status=DeploymentStatus.FAILED)
        run = store.start_run("alpha", "apply")
        store.finish_run(run.id, RunStatus.FAILED, f"the engine said {HOSTILE}")
    return settings


def log_in(client: TestClient, token: str) -> str:
    """Log in as a browser would; return the page's CSRF token."""
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def test_a_page_without_a_session_goes_to_the_login(client: TestClient) -> None:
    answer = client.get("/", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert 'name="token"' in client.get("/login").text


def test_a_token_becomes_an_httponly_strict_session_cookie(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    answer = client.post("/login", data={"token": tokens["viewer"]}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert tokens["viewer"] not in cookie  # the cookie holds no token
    assert (settings.home / "server-session.key").stat().st_mode & 0o777 == 0o600
    wrong = client.post("/login", data={"token": "dps_nope"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert "that token is not valid" in wrong.text


def test_the_fleet_filters_and_escapes(client: TestClient, tokens: dict[str, str]) -> None:
    log_in(client, tokens["viewer"])
    names = re.findall(r'<tr data-name="([^"]+)"', client.get("/").text)
    assert names == ["alpha", "charlie", "delta"]  # destroyed ones are not in the fleet
    names = re.findall(r'<tr data-name="([^"]+)"', client.get("/?target=ssh").text)
    assert names == ["delta"]
    page = client.get("/deployments/alpha").text
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page


def test_a_viewer_sees_no_actions_and_cannot_post_one(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    csrf = log_in(client, tokens["viewer"])
    page = client.get("/deployments/alpha").text
    assert 'id="destroy"' not in page
    refused = client.post("/deployments/alpha/destroy", data={"csrf": csrf})
    assert refused.status_code == 403
    with StateStore(settings.database_url) as store:
        assert store.get_deployment("alpha").status is DeploymentStatus.FAILED  # type: ignore[union-attr]


def test_a_form_without_its_csrf_token_changes_nothing(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    log_in(client, tokens["operator"])
    for data in ({}, {"csrf": "0" * 64}):
        refused = client.post("/deployments/alpha/destroy", data=data)
        assert refused.status_code == 403
        assert "stale or not from this site" in refused.text
    with StateStore(settings.database_url) as store:
        assert store.get_deployment("alpha").status is DeploymentStatus.FAILED  # type: ignore[union-attr]
        assert [a.action for a in store.list_audit()][:2] == ["csrf", "csrf"]


def test_an_operator_destroys_from_the_page_and_watches_the_run(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    csrf = log_in(client, tokens["operator"])
    assert 'id="destroy"' in client.get("/deployments/charlie").text
    started = client.post(
        "/deployments/charlie/destroy", data={"csrf": csrf}, follow_redirects=False
    )
    assert started.status_code == 303, started.text
    run_page = started.headers["location"]
    deadline = time.monotonic() + 20
    body = client.get(run_page + "/body").text
    while 'class="status-running"' in body and time.monotonic() < deadline:
        time.sleep(0.2)
        body = client.get(run_page + "/body").text
    assert '<strong id="run-status" class="status-succeeded">succeeded</strong>' in body
    assert "destroy (delete): done" in body


def test_revoking_the_token_ends_its_sessions(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    log_in(client, tokens["viewer"])
    [viewer] = [t for t in auth.list_tokens(settings) if t.name == "viewer"]
    auth.revoke_token(settings, viewer.id)
    answer = client.get("/", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")


def test_the_pages_scripts_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/login").text
    scripts = re.findall(r'src="(/static/[^"]+)"', page)
    for src in [*scripts, "/static/vendor/uplot/uPlot.iife.min.js"]:
        answer = client.get(src)
        assert answer.status_code == 200, src
        assert "javascript" in answer.headers["content-type"], src


def test_the_fleet_names_the_model_revision_that_runs() -> None:
    from deployer.server.pages import _revision

    def shown(model: str | None) -> str:
        view = DeploymentView(
            record=DeploymentRecord(
                "a",
                "local",
                DeploymentStatus.HEALTHY,
                *[None] * 6,
                datetime.now(UTC),
                datetime.now(UTC),
                None,
            ),
            running=True,
            healthy=True,
            pid=1,
            detail=None,
            running_model=model,
        )
        return _revision(view)

    assert shown("1193df9a12ded3bf049f546273ce0ef4821e3ce2") == "1193df9a12de"  # a hub commit
    assert shown("/root/.cache/deployer/demo/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert shown(None) == "-"  # a target that does not record it (kubernetes)
