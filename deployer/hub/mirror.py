"""A small Hugging Face-compatible model mirror: local model folders served over the hub's HTTP API.

Three users: air-gapped sites (``deployer mirror serve``) serve their model folders to deployer and
to ``huggingface_hub`` clients; the test suite uses it as the real hub endpoint that
``snapshot_download``, ``hf_hub_download`` and ``HfApi.model_info`` talk to; the benchmarks
compare deployer against ``hf download`` through it.

What it answers (what ``huggingface_hub`` 1.x and 2.x send):

- ``GET /api/models/{org}/{name}[/revision/{rev}]``: model info (``sha``, ``siblings``, with sizes
  and LFS hashes when ``?blobs=true``, ``cardData.license`` from README front matter);
- ``GET /api/models/{org}/{name}/tree/{rev}[/{path}]``: the files and folders of a commit;
- ``HEAD``/``GET /{org}/{name}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit``, ``ETag``
  (git blob sha1, or the sha256 for LFS files), ``X-Linked-Etag``/``X-Linked-Size`` for LFS files
  and ``Range`` support (``206``, ``416``);
- anything else: ``404`` with a JSON body. Hub errors carry ``X-Error-Code`` (``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``) so clients raise their usual errors.

The mirror serves what it is given, as given: it never sanitizes paths, so tests can craft
hostile repos. What a file's body is sent from is :meth:`MirrorFile.open_served` through
:meth:`Mirror.open_body`; the tests' faults (bytes that differ from the advertised hashes, slow
or cut bodies) subclass those, in ``tests/support/mirror_faults.py``.
It never prints; requests go to an in-memory log (:class:`MirrorRequest`) that holds no header
but ``Range``, so a token sent to it is recorded nowhere.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import io
import json
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import parse_qs, unquote, urlsplit

from deployer.errors import NotFoundError, PortInUseError

#: Files larger than this are LFS-tracked, as on the hub.
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024
#: Weight files are LFS-tracked whatever their size.
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
#: Folders :meth:`MirrorRepo.from_folder` leaves out: git's own data and huggingface_hub's
#: ``local_dir`` bookkeeping are not model files.
SKIPPED_FOLDERS = (".git", ".cache/huggingface")

_CHUNK = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CARD_LICENSE = re.compile(r"license:\s*(.+?)\s*$")
_TRUE = ("1", "true", "True")


# --- content -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDigest:
    """What the hub advertises about a file: its size, sha256 and git blob id."""

    size: int
    sha256: str
    #: sha1 of the git blob: of the content for regular files, of the LFS pointer for LFS files.
    git_oid: str


@dataclass(frozen=True, eq=False)
class MirrorFile:
    """One file of a commit.

    ``data`` is the content: bytes, or a path read lazily and streamed (never loaded whole).
    The metadata (:attr:`digest`) describes ``data``, and so do the bytes ``resolve`` sends
    (:meth:`served_size`, :meth:`open_served`).
    """

    data: bytes | Path
    lfs: bool = False

    @cached_property
    def digest(self) -> FileDigest:
        """Size and hashes of ``data``, computed once (reading a path in chunks)."""
        size = len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size
        sha256 = hashlib.sha256()
        blob = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        with _open(self.data) as stream:
            while chunk := stream.read(_CHUNK):
                sha256.update(chunk)
                if not self.lfs:
                    blob.update(chunk)
        if self.lfs:
            pointer = _lfs_pointer(sha256.hexdigest(), size)
            blob = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer, usedforsecurity=False)
        return FileDigest(size=size, sha256=sha256.hexdigest(), git_oid=blob.hexdigest())

    @property
    def pointer_size(self) -> int:
        """Size of the git-lfs pointer that git would store for this file."""
        return len(_lfs_pointer(self.digest.sha256, self.digest.size))

    @property
    def etag(self) -> str:
        """The hub's ETag value (unquoted): the sha256 for LFS files, the git blob id otherwise."""
        return self.digest.sha256 if self.lfs else self.digest.git_oid

    def served_size(self) -> int:
        """The size of the bytes ``resolve`` sends."""
        return len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size

    def open_served(self) -> IO[bytes]:
        """A binary stream over the bytes ``resolve`` sends; the caller closes it."""
        return _open(self.data)

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes of ``data`` (for README front matter)."""
        with _open(self.data) as stream:
            return stream.read(limit)


def file_for(path: str, content: bytes | Path) -> MirrorFile:
    """A :class:`MirrorFile` for ``content`` at ``path``, LFS-tracked by the hub's usual rule:
    weight suffixes (:data:`LFS_SUFFIXES`) or more than :data:`LFS_THRESHOLD_BYTES`."""
    size = len(content) if isinstance(content, bytes) else content.stat().st_size
    lfs = path.endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD_BYTES
    return MirrorFile(data=content, lfs=lfs)


def _open(content: bytes | Path) -> IO[bytes]:
    return io.BytesIO(content) if isinstance(content, bytes) else content.open("rb")


def _lfs_pointer(sha256: str, size: int) -> bytes:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    return pointer.encode()


# --- repositories ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorCommit:
    """A commit: its files by repo path. The mirror never changes ``files`` once committed."""

    id: str
    parent: str | None
    files: dict[str, MirrorFile]
    created: datetime


class MirrorRepo:
    """A model repository: refs (branch or tag name -> commit id) over commits.

    Commit ids are deterministic: the sha1 of the parent and the sorted (path, sha256) pairs, so
    the same folder gives the same commit on every machine. With ``token`` set, every endpoint of
    this repo requires ``Authorization: Bearer <token>``.
    """

    def __init__(self, repo_id: str, *, token: str | None = None, default_branch: str = "main"):
        org, _, name = repo_id.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"repo id must be ORG/NAME, got {repo_id!r}")
        self.repo_id = repo_id
        self.token = token
        self.default_branch = default_branch
        self.refs: dict[str, str] = {}
        self.commits: dict[str, MirrorCommit] = {}

    def __repr__(self) -> str:
        # No token here: a repr ends up in logs.
        return f"MirrorRepo({self.repo_id!r}, refs={self.refs!r})"

    @classmethod
    def from_folder(
        cls, repo_id: str, folder: Path, revision: str = "main", *, token: str | None = None
    ) -> MirrorRepo:
        """A repo whose branch ``revision`` (also its default branch) holds every file under
        ``folder`` (symlinks followed, :data:`SKIPPED_FOLDERS` left out).

        Files are hashed now and read again, streamed, when served. Raises
        :class:`NotFoundError` when ``folder`` is not a directory.
        """
        if not folder.is_dir():
            raise NotFoundError(
                f"model folder {folder} does not exist",
                hint="pass --repo ORG/NAME=FOLDER with an existing folder",
            )
        files: dict[str, bytes | Path] = {}
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and not any(
                relative.startswith(skipped + "/") for skipped in SKIPPED_FOLDERS
            ):
                files[relative] = path
        repo = cls(repo_id, token=token, default_branch=revision)
        repo.commit(files, branch=revision)
        return repo

    def commit(
        self,
        files: Mapping[str, bytes | Path | MirrorFile],
        branch: str = "main",
        *,
        delete: Iterable[str] = (),
    ) -> str:
        """Add a commit on top of ``branch`` (a new root commit if the branch does not exist) that
        changes ``files``, removes ``delete``, and moves the branch to it. Returns its id.

        Paths are kept exactly as given, ``../`` and leading ``/`` included.
        """
        parent = self.refs.get(branch)
        tree = dict(self.commits[parent].files) if parent is not None else {}
        for path in delete:
            tree.pop(path, None)
        for path, content in files.items():
            tree[path] = content if isinstance(content, MirrorFile) else file_for(path, content)
        commit_id = _commit_id(tree, parent)
        if commit_id not in self.commits:
            self.commits[commit_id] = MirrorCommit(
                id=commit_id, parent=parent, files=tree, created=datetime.now(UTC)
            )
        self.refs[branch] = commit_id
        return commit_id

    def set_ref(self, name: str, commit: str) -> None:
        """Point branch or tag ``name`` at ``commit`` (created or moved). Raises ``ValueError``
        for an unknown commit."""
        if commit not in self.commits:
            raise ValueError(f"{self.repo_id} has no commit {commit}")
        self.refs[name] = commit

    def resolve(self, revision: str) -> MirrorCommit | None:
        """The commit a branch, tag or full commit id names, or ``None``."""
        commit_id = self.refs.get(revision, revision)
        return self.commits.get(commit_id)


def _commit_id(files: Mapping[str, MirrorFile], parent: str | None) -> str:
    digest = hashlib.sha1(f"parent {parent or ''}\n".encode(), usedforsecurity=False)
    for path in sorted(files):
        line = f"{path}\0{files[path].digest.sha256}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# --- JSON documents ----------------------------------------------------------------------------


def model_info_document(repo: MirrorRepo, commit: MirrorCommit, *, blobs: bool) -> dict[str, Any]:
    """The ``/api/models/...`` answer for ``commit``; sizes and LFS hashes only with ``blobs``."""
    siblings: list[dict[str, Any]] = []
    for path, file in sorted(commit.files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling |= {"size": file.digest.size, "blobId": file.digest.git_oid}
            if file.lfs:
                sibling["lfs"] = {
                    "sha256": file.digest.sha256,
                    "size": file.digest.size,
                    "pointerSize": file.pointer_size,
                }
        siblings.append(sibling)
    stamp = commit.created.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    document: dict[str, Any] = {
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.id,
        "lastModified": stamp,
        "createdAt": stamp,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }
    readme = commit.files.get("README.md")
    license_ = _card_license(readme.head(64 * 1024)) if readme is not None else None
    if license_ is not None:
        document["cardData"] = {"license": license_}
        document["tags"] = [f"license:{license_}"]
    return document


def tree_document(commit: MirrorCommit, path: str, *, recursive: bool) -> list[dict[str, Any]]:
    """The ``/tree`` answer: files and folders under ``path`` ("" for the root), all levels when
    ``recursive``, else direct children only. Empty when nothing is under ``path``."""
    prefix = f"{path}/" if path else ""
    under = {p: f for p, f in commit.files.items() if p.startswith(prefix)}
    folders: set[str] = set()
    files: list[str] = []
    for file_path in under:
        parts = file_path[len(prefix) :].split("/")
        if not recursive:
            if len(parts) == 1:
                files.append(file_path)
            else:
                folders.add(prefix + parts[0])
            continue
        files.append(file_path)
        folders.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts)))
    entries: list[dict[str, Any]] = []
    for folder in sorted(folders):
        entries.append({"type": "directory", "oid": _folder_oid(commit, folder), "path": folder})
    for file_path in sorted(files):
        file = under[file_path]
        entry: dict[str, Any] = {
            "type": "file",
            "oid": file.digest.git_oid,
            "size": file.digest.size,
            "path": file_path,
        }
        if file.lfs:
            entry["lfs"] = {
                "oid": file.digest.sha256,
                "size": file.digest.size,
                "pointerSize": file.pointer_size,
            }
        entries.append(entry)
    return entries


def _folder_oid(commit: MirrorCommit, folder: str) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(p for p in commit.files if p.startswith(folder + "/")):
        digest.update(f"{path}\0{commit.files[path].digest.git_oid}\n".encode("utf-8", "replace"))
    return digest.hexdigest()


def _card_license(readme: bytes) -> str | None:
    lines = readme.decode("utf-8", "replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            return None
        match = _CARD_LICENSE.match(line)
        if match:
            return match.group(1).strip("'\"")
    return None


# --- the server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorRequest:
    """One answered request, for tests and benchmarks. Holds no header but ``Range``."""

    method: str
    #: The URL path as sent (still percent-encoded), without the query.
    path: str
    query: str
    range: str | None
    status: int
    #: Body bytes written to the socket (0 for ``HEAD``); less than announced when cut short.
    bytes_sent: int
    #: Whether the request carried an ``Authorization`` header (never its value).
    authorized: bool


class Mirror:
    """Serves :class:`MirrorRepo` objects over HTTP from a background thread.

    ``start()`` binds ``host:port`` (port 0: any free port) and returns the base URL; ``stop()``
    closes the listening socket and every open connection. Both are idempotent; the mirror is
    also a context manager. ``access_log`` keeps the server's access lines in
    :attr:`server_log`, which always receives handler tracebacks. ``on_request`` is called from
    server threads after each request.
    """

    def __init__(
        self,
        repos: Iterable[MirrorRepo] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
        on_request: Callable[[MirrorRequest], None] | None = None,
    ):
        self.repos: dict[str, MirrorRepo] = {repo.repo_id: repo for repo in repos}
        self.host = host
        self.port = port
        self.access_log = access_log
        self.server_log: list[str] = []
        self._on_request = on_request
        self._requests: list[MirrorRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add(self, repo: MirrorRepo) -> MirrorRepo:
        """Serve ``repo`` (replacing one with the same id); works while running."""
        self.repos[repo.repo_id] = repo
        return repo

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the base URL. Raises
        :class:`PortInUseError` when the port is taken."""
        if self._server is not None:
            return self.base_url
        try:
            server = _Server((self.host, self.port), self)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"port {self.port} on {self.host} is already in use",
                hint="pick another one with --port",
            ) from exc
        self.stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"deployer-mirror-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running mirror; ``RuntimeError`` when not started."""
        if self._server is None:
            raise RuntimeError("the mirror is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving: bodies being streamed end early, open connections are closed."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    @property
    def requests(self) -> list[MirrorRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def open_body(self, file: MirrorFile) -> IO[bytes]:
        """The stream a file body (a ``GET`` on ``resolve``) is sent from, positioned by the
        handler with ``seek``; the handler closes it. A body that ends before its announced
        length closes the connection."""
        return file.open_served()

    def record(self, request: MirrorRequest) -> None:
        with self._lock:
            self._requests.append(request)
        if self._on_request is not None:
            self._on_request(request)

    def log(self, line: str) -> None:
        with self._lock:
            self.server_log.append(line)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], mirror: Mirror):
        self.mirror = mirror
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive connections outlive shutdown(): close them so that a stopped mirror
        # answers nothing, as a stopped hub would.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.mirror.log(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    """Speaks the hub's protocol for one connection (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "deployer-mirror"
    sys_version = ""
    timeout = 60

    _status = 0
    _sent = 0

    @property
    def mirror(self) -> Mirror:
        return cast(_Server, self.server).mirror

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).track(self.connection, open_=True)

    def finish(self) -> None:
        cast(_Server, self.server).track(self.connection, open_=False)
        super().finish()

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.mirror.access_log:
            self.mirror.log(f"{self.address_string()} - {format % args}")

    # --- dispatch ------------------------------------------------------------------------------

    def _handle(self, *, head: bool) -> None:
        self._status, self._sent = 0, 0
        url = urlsplit(self.path)
        try:
            self._route(url.path, parse_qs(url.query), head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.mirror.record(
                MirrorRequest(
                    method=self.command,
                    path=url.path,
                    query=url.query,
                    range=self.headers.get("Range"),
                    status=self._status,
                    bytes_sent=self._sent,
                    authorized=self.headers.get("Authorization") is not None,
                )
            )

    def _route(self, path: str, query: dict[str, list[str]], *, head: bool) -> None:
        # Split before unquoting: a revision such as refs/pr/1 arrives as one %2F-encoded segment.
        segments = path.split("/")[1:]
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            repo = self._repo(f"{unquote(segments[2])}/{unquote(segments[3])}", head=head)
            if repo is None:
                return
            rest = segments[4:]
            if rest in ([], [""]):
                self._model_info(repo, repo.default_branch, query, head=head)
            elif rest[0] == "revision" and len(rest) >= 2:
                self._model_info(repo, unquote("/".join(rest[1:])), query, head=head)
            elif rest[0] == "tree" and len(rest) >= 2:
                recursive = query.get("recursive", [""])[0] in _TRUE
                tree_path = unquote("/".join(rest[2:]))
                self._tree(repo, unquote(rest[1]), tree_path, recursive=recursive, head=head)
            else:
                self._send_error(404, None, f"no route for {path}", head=head)
        elif len(segments) >= 5 and segments[2] == "resolve":
            repo = self._repo(f"{unquote(segments[0])}/{unquote(segments[1])}", head=head)
            if repo is not None:
                self._resolve(repo, unquote(segments[3]), unquote("/".join(segments[4:])), head)
        else:
            self._send_error(404, None, f"no route for {path}", head=head)

    def _repo(self, repo_id: str, *, head: bool) -> MirrorRepo | None:
        """The repo, or ``None`` after answering 404 (unknown) or 401 (token missing/wrong)."""
        repo = self.mirror.repos.get(repo_id)
        if repo is None:
            self._send_error(404, "RepoNotFound", f"Repository {repo_id} not found", head=head)
            return None
        if repo.token is None:
            return repo
        sent = self.headers.get("Authorization")
        if sent is None:
            message = f"Access to model {repo_id} is restricted: authenticate with a token."
            self._send_error(401, "GatedRepo", message, head=head)
            return None
        if not hmac.compare_digest(sent.encode(), f"Bearer {repo.token}".encode()):
            # The hub's own wording: huggingface_hub maps it to a plain 401, not RepoNotFound.
            message = "Invalid credentials in Authorization header"
            self._send_error(401, None, message, head=head)
            return None
        return repo

    def _commit(self, repo: MirrorRepo, revision: str, *, head: bool) -> MirrorCommit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._send_error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        return commit

    # --- endpoints -----------------------------------------------------------------------------

    def _model_info(
        self, repo: MirrorRepo, revision: str, query: dict[str, list[str]], *, head: bool
    ) -> None:
        commit = self._commit(repo, revision, head=head)
        if commit is None:
            return
        blobs = any(query.get(key, [""])[0] in _TRUE for key in ("blobs", "files_metadata"))
        self._send_json(200, model_info_document(repo, commit, blobs=blobs), head=head)

    def _tree(
        self, repo: MirrorRepo, revision: str, path: str, *, recursive: bool, head: bool
    ) -> None:
        commit = self._commit(repo, revision, head=head)
        if commit is None:
            return
        entries = tree_document(commit, path, recursive=recursive)
        if path and not entries:
            message = f"{path} does not exist on {revision}"
            self._send_error(404, "EntryNotFound", message, head=head, commit=commit)
            return
        self._send_json(200, entries, head=head)

    def _resolve(self, repo: MirrorRepo, revision: str, path: str, head: bool) -> None:
        commit = self._commit(repo, revision, head=head)
        if commit is None:
            return
        file = commit.files.get(path)
        if file is None:
            message = f"{path} does not exist on {revision}"
            self._send_error(404, "EntryNotFound", message, head=head, commit=commit)
            return
        size = file.served_size()
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{file.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if file.lfs:
            headers["X-Linked-Etag"] = f'"{file.digest.sha256}"'
            headers["X-Linked-Size"] = str(file.digest.size)
        try:
            byte_range = _parse_range(self.headers.get("Range"), size)
        except _RangeNotSatisfiableError:
            headers["Content-Range"] = f"bytes */{size}"
            self._send_error(416, None, "Range Not Satisfiable", head=head, headers=headers)
            return
        start, length, status = 0, size, 200
        if byte_range is not None:
            start, end = byte_range
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send_head(status, length, headers)
        if not head:
            self._stream(file, start, length)

    # --- responses -----------------------------------------------------------------------------

    def _send_head(self, status: int, length: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_json(
        self,
        status: int,
        document: object,
        *,
        head: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps(document).encode()
        self._send_head(status, len(body), {**(headers or {}), "Content-Type": "application/json"})
        if not head:
            self.wfile.write(body)
            self._sent += len(body)

    def _send_error(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        head: bool,
        commit: MirrorCommit | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        extra = {**(headers or {}), "X-Error-Message": message}
        if code is not None:
            extra["X-Error-Code"] = code
        if commit is not None:
            # Lets huggingface_hub cache that the file is absent at this commit.
            extra["X-Repo-Commit"] = commit.id
        self._send_json(status, {"error": message}, head=head, headers=extra)

    def _stream(self, file: MirrorFile, start: int, length: int) -> None:
        mirror = self.mirror
        with mirror.open_body(file) as source:
            source.seek(start)
            while self._sent < length and not mirror.stopping.is_set():
                step = min(length - self._sent, 8 * _CHUNK)
                if isinstance(source, io.BufferedReader):
                    sent = self.connection.sendfile(source, start + self._sent, step)
                else:
                    chunk = source.read(step)
                    self.wfile.write(chunk)
                    sent = len(chunk)
                if sent == 0:
                    break
                self._sent += sent
        if self._sent < length:
            # A short body must end the connection, or the client would wait for the rest.
            self.close_connection = True


class _RangeNotSatisfiableError(Exception):
    pass


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)``, both inclusive, for a single ``bytes=`` range; ``None`` for no header,
    several ranges or a malformed one (the whole file is sent then, as RFC 9110 allows).
    Raises :class:`_RangeNotSatisfiableError` for a range that starts past the end."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _RangeNotSatisfiableError
    return start, end
