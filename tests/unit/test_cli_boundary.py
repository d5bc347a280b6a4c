"""The CLI's one error boundary: one line per problem, no traceback, secrets masked."""

from __future__ import annotations

import errno
import io
import time

import pytest
from rich.console import Console

from deployer import secrets
from deployer.cli.context import MAX_SHOWN, STATE, boundary, shown
from deployer.errors import ManifestError


def test_shown_masks_secrets_and_cuts_long_text() -> None:
    secrets.register("tok-boundary-1234")

    assert shown("bad token tok-boundary-1234 [red]") == "bad token ******** \\[red]"
    started = time.monotonic()
    long = shown("[" + "\\" * 200_000)  # rich's escape is slow on this much markup-like text
    assert time.monotonic() - started < 1
    assert long.endswith("... (199,001 more characters)")
    assert len(long) < MAX_SHOWN * 2 + 40


def run(exc: BaseException, capfd: pytest.CaptureFixture[str], *, debug: bool) -> tuple[int, str]:
    """What the boundary does with ``exc``: the exit code, and everything on stderr (the
    console's lines and a traceback written to sys.stderr)."""
    console, STATE.err = STATE.err, Console(file=io.StringIO(), width=200)
    STATE.debug = debug
    try:
        with pytest.raises(SystemExit) as caught, boundary():
            raise exc
        printed = STATE.err.file.getvalue()  # type: ignore[attr-defined]
    finally:
        STATE.debug, STATE.err = False, console
    return int(caught.value.code or 0), printed + capfd.readouterr().err


def test_an_os_error_is_one_line_and_exit_1(capfd: pytest.CaptureFixture[str]) -> None:
    code, err = run(
        OSError(errno.ENAMETOOLONG, "File name too long", "/x/" + "a" * 300), capfd, debug=False
    )

    assert code == 1
    assert err.splitlines()[0].startswith("error: /x/aaaa")
    assert "File name too long" in err.splitlines()[0]
    assert "Traceback" not in err


def test_a_bug_is_exit_70_without_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    code, err = run(ZeroDivisionError("boom"), capfd, debug=False)

    assert code == 70
    assert "internal error: ZeroDivisionError: boom" in err
    assert "Traceback" not in err


def test_debug_tracebacks_are_masked(capfd: pytest.CaptureFixture[str]) -> None:
    token = secrets.register("hf_debugtoken_5678")
    try:
        raise RuntimeError(f"hub said: Authorization: Bearer {token}")
    except RuntimeError as cause:
        error = ManifestError("cannot reach the hub", hint="check the token")
        error.__cause__ = cause
    code, err = run(error, capfd, debug=True)

    assert code == 1
    assert "Traceback" in err
    assert "Bearer ********" in err
    assert token not in err
