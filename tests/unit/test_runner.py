"""The runner: argv lists in, captured output or a CommandError out, secrets masked."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer import runner, secrets
from deployer.errors import CommandError

PY = sys.executable
SECRET = "sk-runner-secret-4242"


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_values", set())


def python(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- run ---------------------------------------------------------------------------------------


def test_run_captures_output() -> None:
    done = runner.run(
        python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(0)")
    )

    assert done.returncode == 0
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert done.argv[0] == PY


def test_run_passes_argv_verbatim_without_a_shell(tmp_path: Path) -> None:
    tricky = ["$HOME", "a b", "; rm -rf /", "'quoted'", "*"]

    done = runner.run(python("import sys; print(sys.argv[1:])", *tricky))

    assert done.stdout.strip() == repr(tricky)


def test_run_accepts_paths_and_sets_cwd_and_env(tmp_path: Path) -> None:
    script = tmp_path / "show.py"
    script.write_text(
        "import os; print(os.getcwd()); print(os.environ['EXTRA'], 'PATH' in os.environ)"
    )

    done = runner.run([PY, script], cwd=tmp_path, env={"EXTRA": "yes"})

    assert done.argv == [PY, str(script)]
    assert done.stdout.splitlines() == [str(tmp_path), "yes True"]


def test_run_gives_no_stdin() -> None:
    done = runner.run(python("import sys; print(repr(sys.stdin.read()))"))

    assert done.stdout.strip() == "''"


def test_run_without_check_returns_the_exit_code() -> None:
    done = runner.run(python("import sys; sys.exit(3)"), check=False)

    assert done.returncode == 3


def test_non_zero_exit_raises_with_the_masked_command() -> None:
    secrets.register(SECRET)
    argv = python(
        "import sys; print('token', sys.argv[1], 'rejected', file=sys.stderr); sys.exit(2)",
        SECRET,
    )

    with pytest.raises(CommandError) as caught:
        runner.run(argv)

    error = caught.value
    assert "exited with code 2" in str(error)
    assert PY in str(error)
    assert secrets.MASK in str(error)
    assert SECRET not in str(error)
    assert error.details == f"token {secrets.MASK} rejected"
    assert SECRET not in (error.details or "")


def test_non_zero_exit_keeps_the_last_20_lines_of_stderr() -> None:
    code = "import sys\nfor i in range(30): print(f'line {i}', file=sys.stderr)\nsys.exit(1)"

    with pytest.raises(CommandError) as caught:
        runner.run(python(code))

    assert caught.value.details is not None
    assert caught.value.details.splitlines() == [f"line {i}" for i in range(10, 30)]


def test_non_zero_exit_without_stderr_has_no_details() -> None:
    with pytest.raises(CommandError) as caught:
        runner.run(python("import sys; sys.exit(5)"))

    assert caught.value.details is None


def test_missing_executable_is_a_command_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-engine"

    with pytest.raises(CommandError, match="cannot run") as caught:
        runner.run([missing, "--version"])

    assert str(missing) in str(caught.value)


def test_file_that_is_not_executable_is_a_command_error(tmp_path: Path) -> None:
    script = tmp_path / "engine"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)

    with pytest.raises(CommandError, match="cannot run"):
        runner.run([script])


def test_timeout_is_a_command_error() -> None:
    started = time.monotonic()

    with pytest.raises(CommandError, match="timed out after 1s"):
        runner.run(python("import time; time.sleep(30)"), timeout=1)

    assert time.monotonic() - started < 15


def test_display_masks_and_quotes() -> None:
    secrets.register(SECRET)

    shown = runner.display(["vllm", "--api-key", SECRET, "a b"])

    assert shown == f"vllm --api-key {secrets.MASK} 'a b'"


# --- spawn_detached ----------------------------------------------------------------------------


def test_spawn_detached_runs_in_a_new_session_and_appends_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "engine.log"
    log.parent.mkdir()
    log.write_text("earlier run\n")
    code = (
        "import os, sys, time\n"
        "print('stdin:', repr(sys.stdin.read()), flush=True)\n"
        "print('to stderr', os.environ['ENGINE_MODE'], file=sys.stderr, flush=True)\n"
        "time.sleep(30)\n"
    )

    proc = runner.spawn_detached(python(code), log=log, env={"ENGINE_MODE": "test"}, cwd=tmp_path)
    try:
        wait_for(lambda: "to stderr" in log.read_text())
        assert os.getsid(proc.pid) != os.getsid(0)
        assert os.getsid(proc.pid) == proc.pid
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()

    assert log.read_text().splitlines() == ["earlier run", "stdin: ''", "to stderr test"]


def test_spawn_detached_creates_the_log_folder(tmp_path: Path) -> None:
    log = tmp_path / "new" / "folder" / "engine.log"

    proc = runner.spawn_detached(python("print('hello')"), log=log)
    proc.wait(timeout=30)

    assert log.read_text() == "hello\n"


def test_spawn_detached_missing_executable_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot run"):
        runner.spawn_detached([tmp_path / "no-such-engine"], log=tmp_path / "engine.log")


def test_follow_interleaves_lines_of_several_commands_as_they_come() -> None:
    lines = list(
        runner.follow(
            {
                "a": ["sh", "-c", "echo one; sleep 0.3; echo three"],
                "b": ["sh", "-c", "sleep 0.15; echo two"],
            }
        )
    )
    assert lines == [("a", "one"), ("b", "two"), ("a", "three")]


def test_follow_stops_the_commands_when_the_caller_stops(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    lines = runner.follow(
        {"a": ["sh", "-c", f"echo $$ > {pid_file}; while :; do echo x; sleep 0.05; done"]}
    )
    assert next(lines) == ("a", "x")
    pid = int(pid_file.read_text())
    lines.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_follow_masks_secrets() -> None:
    secrets.register("s3cret-value-1234")
    lines = list(runner.follow({"a": ["echo", "key=s3cret-value-1234"]}))
    assert lines == [("a", f"key={secrets.MASK}")]


# --- background --------------------------------------------------------------------------------


def test_background_reads_lines_while_the_block_runs_and_stops_the_command_after(
    tmp_path: Path,
) -> None:
    secrets.register(SECRET)
    code = (
        "import sys, time\n"
        f"print('Forwarding from 127.0.0.1:4321 -> 80 {SECRET}', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(60)\n"
    )
    with runner.background(python(code)) as forward:
        assert forward.readline(timeout=10) == "Forwarding from 127.0.0.1:4321 -> 80 ********"
        assert forward.readline(timeout=10) == "to stderr"
        assert forward.poll() is None
        pid = forward.pid
    assert forward.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_background_readline_gives_up_after_its_timeout_and_ends_with_the_output() -> None:
    sleeper = python("import time; time.sleep(60)")
    with runner.background(sleeper) as quiet, pytest.raises(CommandError, match="for 0s"):
        quiet.readline(timeout=0.2)
    with runner.background(python("print('last')")) as brief:
        assert brief.readline(timeout=10) == "last"
        assert brief.readline(timeout=10) == ""


def test_background_stops_the_command_when_the_block_raises() -> None:
    with (
        pytest.raises(RuntimeError),
        runner.background(python("import time; time.sleep(60)")) as bg,
    ):
        raise RuntimeError("the caller failed")
    assert bg.poll() is not None


def test_background_of_a_missing_program_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="cannot run"), runner.background(["/nonexistent/x"]):
        pass


_CHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen(['sleep', '60']); "
    "print(child.pid, flush=True); "
    "time.sleep(float(sys.argv[1]))"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by init) is gone too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1].startswith("Z")


def test_stream_in_its_own_group_leaves_nothing_when_it_exits(tmp_path: Path) -> None:
    """The leader exits at once; the process it started (another of the group) is stopped."""
    pids: list[int] = []
    code = runner.stream(
        [sys.executable, "-c", _CHILD, "0"],
        log=tmp_path / "log",
        on_line=lambda line: pids.append(int(line)),
        own_group=True,
    )
    assert code == 0
    [pid] = pids
    assert _gone(pid)


def test_stream_in_its_own_group_stops_the_whole_group(tmp_path: Path) -> None:
    pids: list[int] = []

    def stop_at_first_line(line: str) -> None:
        pids.append(int(line))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.stream(
            [sys.executable, "-c", _CHILD, "60"],
            log=tmp_path / "log",
            on_line=stop_at_first_line,
            own_group=True,
        )
    [pid] = pids
    assert _gone(pid)
