"""The one path from deployer to a subprocess.

Commands are argv lists, never shell strings. What is logged of them passes through
:func:`deployer.secrets.mask`; secrets travel in the environment or in files, not in argv (argv is
visible to every user of the machine through ``ps``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import IO

from deployer import secrets
from deployer.errors import CommandError

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def display(argv: Argv) -> str:
    """A masked, shell-quoted rendering of ``argv`` for logs and errors."""
    return secrets.mask(shlex.join(os.fspath(a) for a in argv))


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Argv,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv`` to completion and capture its output.

    Raises :class:`CommandError` (with the masked command and the tail of its stderr) when it
    cannot start, times out, or, with ``check``, exits non-zero.
    """
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            env=_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{display(args)} timed out after {timeout:.0f}s") from exc
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        tail = secrets.mask("\n".join(proc.stderr.strip().splitlines()[-20:]))
        raise CommandError(
            f"{display(args)} exited with code {proc.returncode}",
            details=tail or None,
        )
    return done


def spawn_detached(
    argv: Argv,
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, outliving deployer, with output appended to ``log``.

    The child gets no standard input and is not in deployer's process group, so Ctrl-C in the
    terminal that ran ``deployer apply`` does not reach it.
    """
    args = [os.fspath(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            args,
            env=_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc
    finally:
        out.close()


def stream(
    argv: Argv,
    *,
    log: Path,
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
) -> int:
    """Run ``argv`` to completion, passing each output line (stdout and stderr) to ``on_line``.

    The output is also written to ``log`` (replaced). The child stays in deployer's process
    group, so a signal to deployer's group reaches it; if deployer is interrupted or ``on_line``
    raises, the child is stopped before the exception propagates. Returns the exit code.

    ``own_group``: the child gets a process group of its own (a terminal's Ctrl-C reaches only
    deployer, which then stops it), and stopping it, or its exit, stops every process of that
    group (a tool's worker processes): nothing it started outlives the call.
    """
    args = [os.fspath(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = _piped(args, env, cwd, own_group=own_group)
    assert proc.stdout is not None  # set by stdout=PIPE
    if own_group:
        try:
            return _drain(proc, log, on_line)
        finally:
            _stop_group(proc)
    try:
        with open(log, "wb") as out:
            pending = b""
            while chunk := os.read(proc.stdout.fileno(), 65536):
                out.write(chunk)
                pending += chunk
                *lines, pending = re.split(rb"[\r\n]", pending)
                for raw in lines:
                    _deliver(raw, on_line)
            _deliver(pending, on_line)
        return proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        proc.stdout.close()


def _drain(proc: subprocess.Popen[bytes], log: Path, on_line: Callable[[str], None]) -> int:
    """Read a group leader's output until it ends; once the leader has exited, what it left
    behind (holding the pipe open) is stopped."""
    assert proc.stdout is not None  # set by stdout=PIPE
    fd = proc.stdout.fileno()
    try:
        with open(log, "wb") as out:
            pending = b""
            while True:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    if proc.poll() is not None:
                        _stop_group(proc)
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out.write(chunk)
                pending += chunk
                *lines, pending = re.split(rb"[\r\n]", pending)
                for raw in lines:
                    _deliver(raw, on_line)
            _deliver(pending, on_line)
        return proc.wait()
    finally:
        proc.stdout.close()


def follow(commands: Mapping[str, Argv]) -> Iterator[tuple[str, str]]:
    """Run every command at once and yield ``(name, line)`` for each line of their stdout
    (masked) as it arrives, until all have exited. Closing the iterator (the caller stops,
    Ctrl-C) stops the ones still running; stderr is discarded."""
    lines: Queue[tuple[str, str | None]] = Queue()
    procs: list[subprocess.Popen[bytes]] = []

    def pump(name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None  # set by stdout=PIPE
        for raw in proc.stdout:
            lines.put((name, raw.decode(errors="replace").rstrip("\r\n")))
        lines.put((name, None))

    try:
        for name, argv in commands.items():
            args = [os.fspath(a) for a in argv]
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc
            procs.append(proc)
            threading.Thread(target=pump, args=(name, proc), daemon=True).start()
        running = len(procs)
        while running:
            name, line = lines.get()
            if line is None:
                running -= 1
            else:
                yield name, secrets.mask(line)
    finally:
        for proc in procs:
            _stop(proc)


class Background:
    """A command :func:`background` started: its output (stdout and stderr) a line at a time.

    A thread reads the output as it comes, so the command never blocks on a full pipe; the last
    ``keep`` lines not yet read are kept.
    """

    def __init__(self, proc: subprocess.Popen[bytes], argv: list[str], keep: int = 1000):
        self.argv = argv
        self._proc = proc
        self._lines: deque[str] = deque(maxlen=keep)
        self._ended = False
        self._changed = threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        """The exit code, or None while the command runs."""
        return self._proc.poll()

    def readline(self, timeout: float | None = None) -> str:
        """The next line of output, masked, without its line ending; "" once the output has
        ended (the command exited). Raises :class:`CommandError` when no line comes within
        ``timeout`` seconds (None: wait as long as it takes)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._lines or self._ended, timeout):
                raise CommandError(f"{display(self.argv)} printed nothing for {timeout:.0f}s")
            return secrets.mask(self._lines.popleft()) if self._lines else ""

    def _read(self) -> None:
        assert self._proc.stdout is not None  # set by stdout=PIPE
        for raw in self._proc.stdout:
            with self._changed:
                self._lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _stop(self) -> None:
        _stop(self._proc)
        self._pump.join(timeout=5)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


@contextmanager
def background(
    argv: Argv,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Background]:
    """Run ``argv`` while the block runs (a ``kubectl port-forward``, say), reading its output
    with :meth:`Background.readline`.

    The command gets no standard input and stays in deployer's process group (a Ctrl-C reaches
    it too). When the block exits, however it exits, the command is stopped: SIGTERM, then
    SIGKILL after 10 seconds. Raises :class:`CommandError` when it cannot start.
    """
    args = [os.fspath(a) for a in argv]
    proc = _piped(args, env, cwd)
    running = Background(proc, args)
    try:
        yield running
    finally:
        running._stop()


def _piped(
    args: list[str], env: Mapping[str, str] | None, cwd: Path | None, *, own_group: bool = False
) -> subprocess.Popen[bytes]:
    """``args`` started with no standard input and stdout and stderr on one pipe (in a new
    session, so a process group of its own, with ``own_group``)."""
    try:
        return subprocess.Popen(
            args,
            env=_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc


def _deliver(raw: bytes, on_line: Callable[[str], None]) -> None:
    line = raw.decode(errors="replace").rstrip()
    if line:
        on_line(secrets.mask(line))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group ``proc`` leads: SIGTERM, then SIGKILL to what is left after 10
    seconds (its leader's exit does not end the others)."""
    group = proc.pid
    if proc.poll() is None:
        _signal_group(group, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while _group_alive(group) and time.monotonic() < deadline:
        _signal_group(group, signal.SIGTERM)
        time.sleep(0.2)
    _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies, exited and waiting for a parent that
    may never reap them, do not count)."""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(group) and fields[0] != "Z":
            return True
    return False
