"""Verify a publisher's ``model_signing`` signature over a model folder.

What a publisher signs, and so what deployer checks: ``model_signing`` signs a folder as a list
of (path, sha256) pairs and, at verification, re-hashes the folder and requires the very same
list, no file more and no file less. Deployer verifies the files it serves (what
:func:`deployer.hub.safety.select_files` picks from a repository, or every file of a local
folder), so the publisher must sign exactly those files, with the signature file left out::

    model_signing sign key --private_key key.pem --signature FOLDER/model.sig FOLDER

run over a folder holding only the served files (the CLI leaves the signature file and git's
files out by itself). A served file the signature leaves out (through the signer's
``ignore_paths``) is refused too: every byte an engine reads is signed.

Snapshots in the store are symlinks into blobs, which ``model_signing`` refuses by default, and a
local folder may hold files deployer does not serve; so the check runs over a temporary folder
of hard links to exactly the served files, made beside the checked folder (copies when hard
links cannot be made). Only the offline methods are supported: an elliptic-curve public key, or
a certificate chain. ``model_signing`` is imported when a signature is checked, never before.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import inputs
from deployer.errors import ManifestError, UnsafeModelError
from deployer.manifest.models import SignatureSpec

if TYPE_CHECKING:
    from model_signing.verifying import Config

_SIGN_HINT = (
    "the publisher must sign exactly the files deployer serves (model_signing sign key|"
    "certificate FOLDER); if the files were changed, do not use this revision"
)
_KEY_HINT = (
    "the signature was not made with the key or certificate spec.model.signature names: "
    "check it, and otherwise do not use this revision"
)
_MAX_REASON = 300
_CHANGED = re.compile(r"Hash mismatch for '(.+?)': ")
_EXTRA = re.compile(r"Extra files found in model '.*?': (.+)$")
_MISSING = re.compile(r"Missing files in model '.*?': (.+)$")


def verify_signature(
    folder: Path, spec: SignatureSpec, *, base_dir: Path, files: Sequence[str]
) -> None:
    """Check that ``folder``'s ``files`` are exactly what ``folder/spec.signature_file`` signs.

    ``files`` are the served paths, relative to ``folder`` (the signature file among them is
    left out); key and certificate paths in ``spec`` are relative to ``base_dir`` (the
    manifest's folder). Read-only for ``folder``; a temporary folder beside it is removed before
    returning. Raises :class:`UnsafeModelError` naming the signature file and the reason when
    the signature is missing, unreadable, made with another key, does not match the files, or
    leaves a served file out; :class:`ManifestError` when a key or certificate file cannot be
    read. Returns None when the signature holds.
    """
    name = spec.signature_file
    signature = folder / name
    if not signature.is_file():
        raise UnsafeModelError(
            f"signature file {name} is not in {folder}",
            hint="ask the publisher for a signed revision, or fix spec.model.signature",
        )
    served = sorted({path for path in files if path != name})
    config = _verifier(spec, base_dir)
    with _view(folder, served) as view:
        try:
            config.verify(view, signature)
        except Exception as exc:  # model_signing raises ValueError, protobuf and OpenSSL errors
            mismatch = _mismatch(str(exc))
            if mismatch:
                raise UnsafeModelError(
                    f"signature file {name} does not match the files: {mismatch}",
                    hint=_SIGN_HINT,
                ) from exc
            raise UnsafeModelError(
                f"signature file {name} does not verify: {_reason(exc)}", hint=_KEY_HINT
            ) from exc
    signed = _signed_paths(signature, name)
    unsigned = [path for path in served if path not in signed]
    if unsigned:
        raise UnsafeModelError(
            f"signature file {name} leaves out served files: {_some(unsigned)}", hint=_SIGN_HINT
        )


def _verifier(spec: SignatureSpec, base_dir: Path) -> Config:
    from model_signing.verifying import Config

    if spec.method == "key":
        key = _readable(base_dir, spec.public_key or "", "spec.model.signature.publicKey")
        try:
            return Config().use_elliptic_key_verifier(public_key=key)  # type: ignore[no-untyped-call]
        except Exception as exc:  # cryptography's ValueError/UnsupportedAlgorithm
            raise ManifestError(
                f"{key} is not a PEM elliptic-curve public key: {_reason(exc)}",
                hint="fix spec.model.signature.publicKey",
            ) from exc
    chain = [
        _readable(base_dir, path, "spec.model.signature.certificateChain")
        for path in spec.certificate_chain or []
    ]
    try:
        return Config().use_certificate_verifier(certificate_chain=chain)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ManifestError(
            f"the certificate chain ({', '.join(map(str, chain))}) cannot be read: {_reason(exc)}",
            hint="fix spec.model.signature.certificateChain: PEM certificate files",
        ) from exc


def _readable(base_dir: Path, value: str, field: str) -> Path:
    path = (base_dir / inputs.expand_user(value)).resolve()
    if not path.is_file():
        raise ManifestError(f"{field}: {path} is not a readable file", hint=f"fix {field}")
    return path


@contextmanager
def _view(folder: Path, files: Sequence[str]) -> Iterator[Path]:
    """A temporary folder holding exactly ``files`` of ``folder``, symlinks resolved."""
    try:
        parent = tempfile.mkdtemp(prefix=".verify-", dir=folder.parent)
    except OSError:  # a read-only parent (a local model folder): use the system's temp
        parent = tempfile.mkdtemp(prefix="deployer-verify-")
    try:
        view = Path(parent) / folder.name
        for relative in files:
            source = (folder / relative).resolve()
            target = view / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(source, target)
        view.mkdir(exist_ok=True)
        yield view
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _signed_paths(signature: Path, name: str) -> set[str]:
    """File paths listed in a verified signature's payload (shard entries reduced to files)."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        resources = payload["predicate"]["resources"]
        method = payload["predicate"]["serialization"]["method"]
        names = [str(item["name"]) for item in resources]
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise UnsafeModelError(
            f"signature file {name} has no readable list of files: {_reason(exc)}",
            hint=_SIGN_HINT,
        ) from exc
    if method == "shards":  # "path:start:end"
        return {name.rsplit(":", 2)[0] for name in names}
    return set(names)


def _mismatch(text: str) -> str:
    """model_signing's "Signature mismatch: [...]" (a list's repr, digests as bytes) in short."""
    prefix = "Signature mismatch: "
    if not text.startswith(prefix):
        return ""
    try:
        lines = ast.literal_eval(text[len(prefix) :])
    except (ValueError, SyntaxError):
        return _reason(ValueError(text))
    changed: list[str] = []
    extra: list[str] = []
    missing: list[str] = []
    for line in lines if isinstance(lines, list) else []:
        line = str(line)
        if found := _CHANGED.match(line):
            changed.append(found.group(1))
        elif found := _EXTRA.match(line):
            extra.extend(found.group(1).split(", "))
        elif found := _MISSING.match(line):
            missing.extend(found.group(1).split(", "))
    parts = [
        f"{what}: {_some(items)}"
        for what, items in (
            ("changed", changed),
            ("not signed", extra),
            ("signed but not served", missing),
        )
        if items
    ]
    return "; ".join(parts) or _reason(ValueError(text))


def _some(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
