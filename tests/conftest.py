"""Shared fixtures, and the rule that no test may be skipped in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer.settings import Settings
from tests.support.browser import (  # noqa: F401 (fixtures)
    blocked_requests,
    chromium,
    loopback_page,
    playwright_sync,
)

# The browser fixtures, defined here once: a module importing them would get its own
# session-scoped Playwright, and a second Playwright in the same thread cannot start.
from tests.support.demotext import demo_unmeasured  # noqa: F401 (for tests)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "model_manifests"
DEMO_MANIFEST = MANIFESTS / "demo" / "smollm2-135m.yaml"


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a test that did not run: fail the run and name it.
    if _skipped and os.environ.get("CI"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI forbids skipped tests; {len(_skipped)} skipped: " + ", ".join(_skipped),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh deployer home (state, runtime folders) for one test; the cache stays shared."""
    path = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(path))
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env()
