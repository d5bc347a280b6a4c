"""Talking to a Hugging Face hub or a mirror, through ``huggingface_hub``.

Two calls: :func:`resolve` (a revision to a commit and the listing of its files, with sizes and
the sha256 of LFS files) and :func:`download` (one file of one commit into the staging cache,
resumable). Errors from the library become deployer errors that name the repo and the endpoint
and never the token.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from deployer import secrets
from deployer.errors import DeployerError, NotFoundError, PermanentError, TemporaryError

DEFAULT_ENDPOINT = "https://huggingface.co"


class HubUnreachableError(TemporaryError):
    """The endpoint did not answer (network, DNS, a mirror that is down)."""

    code = "hub_unreachable"


class RevisionGoneError(PermanentError):
    """The revision (or the locked commit) is not on the hub any more."""

    code = "revision_gone"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    #: sha256 from the hub's LFS metadata; None for regular (git) files.
    sha256: str | None
    #: The git object id: sha1 of a regular file's content (LFS files: of the pointer).
    git_oid: str | None


@dataclass(frozen=True)
class RemoteListing:
    repo: str
    revision: str
    commit: str
    endpoint: str
    license: str | None
    files: list[RemoteFile]

    def file(self, path: str) -> RemoteFile | None:
        return next((f for f in self.files if f.path == path), None)


def effective_endpoint(manifest_endpoint: str | None) -> str:
    """The manifest's endpoint, else ``HF_ENDPOINT``, else the public hub."""
    return (manifest_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def resolve(repo: str, revision: str, *, endpoint: str, token: str | None) -> RemoteListing:
    """Resolve ``revision`` of ``repo`` to a commit and list its files (no file is downloaded)."""
    _quiet()
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token or False)
    with _translated(repo, revision, endpoint):
        info = api.model_info(repo, revision=revision, files_metadata=True)
    if not info.sha:
        raise PermanentError(f"{endpoint} gave no commit for {repo}@{revision}")
    files = [
        RemoteFile(
            path=sibling.rfilename,
            size=sibling.lfs.size if sibling.lfs else sibling.size,
            sha256=sibling.lfs.sha256 if sibling.lfs else None,
            git_oid=sibling.blob_id,
        )
        for sibling in info.siblings or []
    ]
    card = info.card_data
    license_ = card.get("license") if card is not None else None
    return RemoteListing(
        repo=repo,
        revision=revision,
        commit=info.sha,
        endpoint=endpoint,
        license=str(license_) if license_ else None,
        files=sorted(files, key=lambda f: f.path),
    )


def download(
    repo: str,
    path: str,
    commit: str,
    *,
    endpoint: str,
    token: str | None,
    partial: Path,
    size: int | None,
) -> tuple[Path, str | None]:
    """Download ``path`` of ``commit`` to the file ``partial``, resuming what is already there.

    huggingface_hub's own cache starts a killed download again from zero (its temporary names
    are unique per process), so deployer keeps one partial file per (repo, commit, path) and
    asks the library's HTTP download to continue it with a ``Range`` request. Returns the file
    and its sha256, computed while the bytes arrived (None if the library had to rewind). The
    file is not verified here: the caller checks it before an engine can read it.
    """
    _quiet()
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    url = hf_hub_url(repo, path, revision=commit, endpoint=endpoint)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with _translated(repo, commit, endpoint, path=path), partial.open("a+b") as out:
        done = out.tell()
        if size is not None and done > size:  # not ours to continue: start again
            out.truncate(0)
            done = 0
        writer = _HashingWriter(out)
        if size is None or done < size:
            # No expected size for the library to check: deployer checks size and sha256
            # itself, and reports a mismatch as such rather than as a network error.
            http_get(
                url,
                cast("BinaryIO", writer),
                resume_size=done,
                headers=build_hf_headers(token=token or False),
                displayed_filename=path,
            )
    return partial, writer.hexdigest()


class _HashingWriter:
    """A file wrapper that hashes what is written, after hashing what the file already holds.

    If the writer is moved backwards (the library rewinds after a broken connection) the
    running hash is abandoned and :meth:`hexdigest` returns None, so the caller hashes the file.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._digest: hashlib._Hash | None = hashlib.sha256()
        end = file.tell()
        file.seek(0)
        while chunk := file.read(1 << 20):
            self._digest.update(chunk)
        file.seek(end)

    def write(self, data: bytes) -> int:
        if self._digest is not None:
            self._digest.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        self._digest = None
        return self._file.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        self._digest = None
        return self._file.truncate(size)

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str | None:
        return self._digest.hexdigest() if self._digest is not None else None


def safetensors_header(
    repo: str, path: str, commit: str, *, endpoint: str, token: str | None
) -> bytes:
    """The JSON header of a remote ``.safetensors`` file, read with two Range requests (its
    8-byte length, then the header), so a planner learns every tensor's dtype and shape without
    downloading the weights. Not verified: the caller parses it strictly."""
    _quiet()
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session  # type: ignore[attr-defined]

    url = hf_hub_url(repo, path, revision=commit, endpoint=endpoint)
    headers = build_hf_headers(token=token or False)
    with _translated(repo, commit, endpoint, path=path):
        session = get_session()
        first = session.get(url, headers={**headers, "Range": "bytes=0-7"}, follow_redirects=True)
        first.raise_for_status()
        length = int.from_bytes(first.content[:8], "little")
        if length <= 0 or length > 100 * 1024 * 1024:
            raise PermanentError(f"{repo}@{commit} file {path}: implausible header length {length}")
        rest = session.get(
            url, headers={**headers, "Range": f"bytes=8-{7 + length}"}, follow_redirects=True
        )
        rest.raise_for_status()
    return rest.content[:length]


def _quiet() -> None:
    """Settings huggingface_hub reads once, at import: no telemetry or agent-registry lookups
    (an air-gapped site has no huggingface.co to ask), no progress bars or log lines of its own
    (deployer draws progress from events)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from huggingface_hub.utils import logging as hf_logging

    # Its retry warnings would print raw lines under deployer's output; failures come back as
    # exceptions, which deployer reports as one line.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


@contextmanager
def _translated(
    repo: str, revision: str, endpoint: str, *, path: str | None = None
) -> Iterator[None]:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo}@{revision}" + (f" file {path}" if path else "") + f" at {endpoint}"
    try:
        yield
    except GatedRepoError as exc:
        raise PermanentError(
            f"{where}: access denied (gated or private repository)",
            hint="accept the model's licence on the hub and give spec.model.token",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise NotFoundError(
            f"repository {repo} not found at {endpoint}",
            hint="check spec.model.repo; a private repository also needs spec.model.token",
        ) from exc
    except RevisionNotFoundError as exc:
        raise RevisionGoneError(
            f"revision {revision} of {repo} not found at {endpoint}",
            hint="check spec.model.revision (a branch, tag or 40-hex commit)",
        ) from exc
    except RemoteEntryNotFoundError as exc:
        raise NotFoundError(f"{where}: no such file on the hub") from exc
    except OfflineModeIsEnabled as exc:
        raise HubUnreachableError(
            f"{where}: HF_HUB_OFFLINE is set and the files are not cached",
            hint="fetch once with network access (or from a mirror), then work offline",
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise PermanentError(
                f"{where}: the endpoint refused the request (HTTP {status})",
                hint="check spec.model.token and that it may read this repository",
            ) from exc
        raise _unreachable(where, exc) from exc
    except DeployerError:
        raise
    except (OSError, ValueError) as exc:
        raise _unreachable(where, exc) from exc
    except Exception as exc:
        # huggingface_hub's transport raises httpx errors, which are neither OSError nor ours.
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise _unreachable(where, exc) from exc
        raise


def _unreachable(where: str, exc: BaseException) -> HubUnreachableError:
    reason = secrets.mask(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return HubUnreachableError(
        f"{where}: cannot reach the hub ({reason[:200]})",
        hint="check the network or spec.model.endpoint / HF_ENDPOINT (a mirror)",
    )
