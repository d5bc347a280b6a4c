"""Faults for deployer's hub mirror (:mod:`deployer.hub.mirror`), for tests only.

The mirror serves what it is given, honestly; these make it misbehave through its public
surface: :func:`tamper` makes a file's bytes differ from the size and hashes every listing
advertises (a :class:`TamperedFile` in the commit), and :class:`FaultyMirror` sends bodies slowly
(``throttle_bytes_per_second``) or cuts the next one short (``cut_next_download``), as a slow or
failing network would.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from deployer.hub.mirror import Mirror, MirrorFile, MirrorRepo


@dataclass(frozen=True, eq=False)
class TamperedFile(MirrorFile):
    """A file whose metadata describes ``data`` while ``resolve`` sends ``served``."""

    served: bytes | Path = b""

    def served_size(self) -> int:
        content = self.served
        return len(content) if isinstance(content, bytes) else content.stat().st_size

    def open_served(self) -> IO[bytes]:
        content = self.served
        return io.BytesIO(content) if isinstance(content, bytes) else content.open("rb")


def tamper(repo: MirrorRepo, path: str, served: bytes | Path, revision: str = "main") -> None:
    """Make ``resolve`` serve ``served`` for ``path`` at ``revision`` while every listing keeps
    advertising the original size and hashes. Edits that commit in place: its id does not
    change. Raises ``ValueError`` for an unknown revision or path."""
    commit = repo.resolve(revision)
    if commit is None or path not in commit.files:
        raise ValueError(f"{repo.repo_id}@{revision} has no file {path!r}")
    original = commit.files[path]
    tampered = TamperedFile(data=original.data, lfs=original.lfs, served=served)
    tampered.__dict__["digest"] = original.digest  # same data: reuse its hashes, no re-read
    commit.files[path] = tampered


class FaultyMirror(Mirror):
    """A :class:`Mirror` whose file bodies can be slow or cut short. With neither armed it
    serves exactly as a Mirror does.

    ``throttle_bytes_per_second`` (a plain attribute, may change while serving) limits each file
    body; :meth:`cut_next_download` cuts the next one.
    """

    def __init__(
        self,
        repos: Iterable[MirrorRepo] = (),
        *,
        throttle_bytes_per_second: int | None = None,
        **options: Any,
    ):
        super().__init__(repos, **options)
        self.throttle_bytes_per_second = throttle_bytes_per_second
        self._cut_after: int | None = None
        self._faults = threading.Lock()

    def cut_next_download(self, after_bytes: int) -> None:
        """Make the next file body (a ``GET`` on ``resolve``) stop after ``after_bytes`` bytes
        and close its connection, as a network failure would. One-shot."""
        with self._faults:
            self._cut_after = after_bytes

    def open_body(self, file: MirrorFile) -> IO[bytes]:
        body = super().open_body(file)
        with self._faults:
            cut, self._cut_after = self._cut_after, None
        if cut is None and self.throttle_bytes_per_second is None:
            return body
        return cast(IO[bytes], _FaultyBody(body, self, cut))


class _FaultyBody(io.RawIOBase):
    """``body`` read at the mirror's throttle (read at each read), ending after ``cut`` bytes."""

    def __init__(self, body: IO[bytes], mirror: FaultyMirror, cut: int | None):
        super().__init__()
        self._body = body
        self._mirror = mirror
        self._left = cut
        self._began = time.monotonic()
        self._read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._body.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        rate = self._mirror.throttle_bytes_per_second
        if rate:
            want = min(want, max(1, rate // 20))
        if self._left is not None:
            want = min(want, self._left)
        chunk = self._body.read(want) if want else b""
        buffer[: len(chunk)] = chunk
        self._read += len(chunk)
        if self._left is not None:
            self._left -= len(chunk)
        if rate:
            time.sleep(max(0.0, self._began + self._read / rate - time.monotonic()))
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()
