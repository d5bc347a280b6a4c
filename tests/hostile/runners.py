"""Run ``deployer`` commands under the hostile-input promise's limits, and check the outcome.

The promise (the "hostile input" issue): every bad input to any command exits 1 with a line
``error: ...`` (plus ``hint: ...`` lines), never a Python traceback, never exit 70 ("internal
error"), within 20 s and 2 GiB of address space, creating nothing outside the state folder.
:func:`check` lists every way an :class:`Outcome` breaks it.

Two runners: :class:`SubprocessRunner` runs ``python -m deployer`` exactly as a user would
(``RLIMIT_AS`` set in ``preexec_fn``, a timeout, its own process group), and :class:`ForkServer`
keeps one Python with deployer imported and forks a child per command (the same limits, set in
the child), about ten times faster. The fuzzer screens with the fork server and confirms every
violation with a fresh subprocess before reporting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: The promise's limits for one command.
TIMEOUT_SECONDS = 20.0
MEMORY_LIMIT = 2 * 1024**3
#: Where a case's commands keep state (DEPLOYER_HOME) and cache (DEPLOYER_CACHE), inside its
#: folder; anything else appearing in the folder is an escape.
STATE_DIRS = ("home", "cache")
#: Nothing listens here: any network access by a command fails at once.
CLOSED_ENDPOINT = "http://127.0.0.1:9"
TRACEBACK = "Traceback (most recent call last)"


def reproducer(command: tuple[str, ...]) -> str:
    """The shell command that reruns ``command`` in a case's folder with the worktree's code."""
    args = " ".join(_shell_word(a) for a in command)
    return (
        f"DEPLOYER_HOME=$PWD/home DEPLOYER_CACHE=$PWD/cache HF_ENDPOINT={CLOSED_ENDPOINT} "
        f"PYTHONPATH={ROOT} {sys.executable} -m deployer {args}"
    )


def _shell_word(word: str) -> str:
    return word if re.fullmatch(r"[\w./:=@%+-]+", word) else "'" + word.replace("'", "'\\''") + "'"


# --- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one command did."""

    command: tuple[str, ...]
    code: int | None
    """Exit code; None when killed (timeout, signal)."""
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    signal: int | None = None
    max_rss_kib: int = 0
    """Peak resident memory of the command (the fork server measures it; 0: not measured)."""
    created: tuple[str, ...] = ()
    """Paths that appeared in the case's folder outside its state and cache folders."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def base_env(folder: Path) -> dict[str, str]:
    """The environment a case's commands run in: the worktree's package first, state and cache
    inside ``folder``, no hub reachable, no colours, no token from the caller's environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEPLOYER_", "HF_", "HUGGING")) and k not in ("PYTHONPATH",)
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DEPLOYER_HOME": str(folder / "home"),
            "DEPLOYER_CACHE": str(folder / "cache"),
            "HF_ENDPOINT": CLOSED_ENDPOINT,
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def limit_resources() -> None:
    """``preexec_fn``: the promise's 2 GiB of address space; own process group."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()


def listing(folder: Path) -> set[str]:
    """Every path below ``folder`` (relative), the state and cache folders' contents left out."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        if rel == Path(".") and dirnames:
            dirnames[:] = [d for d in dirnames if d not in STATE_DIRS]
        found.update(str(rel / name) for name in (*dirnames, *filenames))
    return found


class SubprocessRunner:
    """``python -m deployer ARGS`` in a fresh interpreter, as a user runs it."""

    name = "subprocess"

    def run(
        self,
        args: tuple[str, ...],
        cwd: Path,
        env: dict[str, str],
        timeout: float = TIMEOUT_SECONDS,
        stdin: bytes | None = None,
    ) -> Outcome:
        before = listing(cwd)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=limit_resources,
        )
        timed_out = False
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        seconds = time.perf_counter() - started
        code = proc.returncode
        return Outcome(
            command=args,
            code=None if timed_out or code < 0 else code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            seconds=seconds,
            timed_out=timed_out,
            signal=-code if code is not None and code < 0 and not timed_out else None,
            created=tuple(sorted(listing(cwd) - before)),
        )


class ForkServer:
    """A Python with deployer imported that forks one child per command.

    The child sets the same limits as :func:`limit_resources`, moves to the case's folder,
    takes its environment, points stdout and stderr at files and runs deployer's ``main()``;
    the server waits for it (killing its process group after the timeout) and reports the exit
    status and the child's peak memory. One server serves one thread.
    """

    name = "fork-server"

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        env = base_env(scratch)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.hostile.runners import serve; serve()"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        hello = json.loads(self.proc.stdout.readline())
        expected = str(ROOT / "deployer")
        if not hello.get("deployer", "").startswith(expected):
            raise RuntimeError(f"fork server imported deployer from {hello}, not {expected}")
        self._count = 0

    def run(
        self,
        args: tuple[str, ...],
        cwd: Path,
        env: dict[str, str],
        timeout: float = TIMEOUT_SECONDS,
        stdin: bytes | None = None,
    ) -> Outcome:
        assert stdin is None, "the fork server gives children /dev/null as stdin"
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._count += 1
        out_file = self.scratch / f"out-{self._count % 2}"
        err_file = self.scratch / f"err-{self._count % 2}"
        before = listing(cwd)
        request = {
            "args": list(args),
            "cwd": str(cwd),
            "env": env,
            "timeout": timeout,
            "stdout": str(out_file),
            "stderr": str(err_file),
        }
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        reply = json.loads(line)
        return Outcome(
            command=args,
            code=reply["code"],
            stdout=out_file.read_bytes().decode("utf-8", "replace"),
            stderr=err_file.read_bytes().decode("utf-8", "replace"),
            seconds=reply["seconds"],
            timed_out=reply["timed_out"],
            signal=reply["signal"],
            max_rss_kib=reply["max_rss_kib"],
            created=tuple(sorted(listing(cwd) - before)),
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve() -> None:
    """The fork server's loop (see :class:`ForkServer`): one JSON request per line on stdin, one
    JSON reply per line on stdout."""
    import importlib
    import pkgutil

    import deployer
    from deployer.cli import main as cli_main

    cli_main._register()
    # Import every module now, once, rather than in each child: deployer imports its heavy
    # dependencies lazily (SQLAlchemy, jsonschema, the hub client), which would cost every
    # command the import time the server exists to save.
    for module in pkgutil.walk_packages(deployer.__path__, "deployer."):
        if not module.name.endswith("__main__"):
            with contextlib.suppress(Exception):
                importlib.import_module(module.name)
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    protocol.write(json.dumps({"deployer": str(Path(deployer.__file__).parent)}).encode() + b"\n")
    protocol.flush()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        reply = _forked(request, cli_main.main)
        protocol.write(json.dumps(reply).encode() + b"\n")
        protocol.flush()


def _forked(request: dict[str, Any], main: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            limit_resources()
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            os.dup2(os.open(request["stdout"], flags, 0o600), 1)
            os.dup2(os.open(request["stderr"], flags, 0o600), 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            sys.argv = ["deployer", *request["args"]]
            code = _run_main(main)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    deadline = started + request["timeout"]
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    killed = os.WIFSIGNALED(status)
    return {
        "code": None if timed_out or killed else os.WEXITSTATUS(status),
        "seconds": seconds,
        "timed_out": timed_out,
        "signal": os.WTERMSIG(status) if killed and not timed_out else None,
        "max_rss_kib": usage.ru_maxrss,
    }


def _run_main(main: Callable[[], None]) -> int:
    """Run ``main()`` as the interpreter would and return the process's exit code."""
    import traceback

    try:
        main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


# --- the promise -------------------------------------------------------------------------------


def check(outcome: Outcome) -> list[str]:
    """Every way ``outcome`` breaks the promise (empty when it keeps it)."""
    problems = []
    if outcome.timed_out:
        problems.append(f"hang: no exit within {TIMEOUT_SECONDS:.0f} s")
    if outcome.signal is not None:
        name = signal.Signals(outcome.signal).name if outcome.signal in signal.Signals else ""
        problems.append(f"killed by signal {outcome.signal} {name}".rstrip())
    if outcome.code not in (0, 1, None):
        problems.append(
            f"exit {outcome.code}" + (" (internal error)" if outcome.code == 70 else "")
        )
    if TRACEBACK in outcome.output:
        problems.append("Python traceback in the output")
    if "internal error" in outcome.output:
        problems.append("'internal error' in the output")
    if "MemoryError" in outcome.output:
        problems.append("MemoryError (the 2 GiB limit was reached)")
    if outcome.code == 1 and not any(
        line.startswith("error:") for line in outcome.stderr.splitlines()
    ):
        problems.append("exit 1 without a line starting with 'error:' on stderr")
    if outcome.created:
        problems.append(f"created outside the state folder: {', '.join(outcome.created[:5])}")
    return problems


def symptom(outcome: Outcome) -> str:
    """One line that says what went wrong, for a bug list."""
    lines = [line.strip() for line in outcome.stderr.splitlines() if line.strip()]
    for line in lines:
        if "internal error" in line:
            return line[:200]
    if TRACEBACK in outcome.stderr and lines:
        return lines[-1][:200]
    if outcome.timed_out:
        return f"no exit within {TIMEOUT_SECONDS:.0f} s"
    if outcome.signal is not None:
        return f"killed by signal {outcome.signal}"
    return (lines[0] if lines else "(no output on stderr)")[:200]


def signature(outcome: Outcome) -> str:
    """A symptom with its specifics (paths, numbers, quoted values) removed, so that cases
    failing the same way group together."""
    text = symptom(outcome)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"(/[^\s:]+)+", "PATH", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\\x[0-9a-fA-F]{2}", "N", text)
    text = re.sub(r"\d+", "N", text)
    return f"{outcome.command[0]}: {text[:140]}"


class RunnerPool:
    """One runner per thread (fork servers, or plain subprocesses when asked)."""

    def __init__(self, scratch: Path, kind: str) -> None:
        self.scratch = scratch
        self.kind = kind
        self._local = threading.local()
        self._all: list[ForkServer] = []
        self._lock = threading.Lock()

    def get(self) -> ForkServer | SubprocessRunner:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            if self.kind == "subprocess":
                runner = SubprocessRunner()
            else:
                with self._lock:
                    runner = ForkServer(self.scratch / f"server-{len(self._all)}")
                    self._all.append(runner)
            self._local.runner = runner
        return runner

    def close(self) -> None:
        for server in self._all:
            server.close()


def runner_kind() -> str:
    """``DEPLOYER_FUZZ_RUNNER``: 'fork' (default) or 'subprocess' (every command a fresh
    interpreter; about twenty times slower)."""
    kind = os.environ.get("DEPLOYER_FUZZ_RUNNER", "fork")
    if kind not in ("fork", "subprocess"):
        raise ValueError(f"DEPLOYER_FUZZ_RUNNER is {kind!r}; give fork or subprocess")
    return kind
