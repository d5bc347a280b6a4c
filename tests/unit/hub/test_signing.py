"""Signature verification with model_signing, for real: keys made here, a folder signed with
model_signing's own API (as its CLI does: the signature file left out), then checked as deployer
checks a snapshot (symlinks into blobs) and a plain folder."""

from __future__ import annotations

from pathlib import Path

import model_signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from deployer.digests import sha256_file
from deployer.errors import ManifestError, UnsafeModelError
from deployer.hub.safety import select_files
from deployer.hub.signing import verify_signature
from deployer.hub.source import local_facts
from deployer.hub.store import ModelStore
from deployer.manifest.models import LocalModel, SignatureSpec
from tests.integration import hubrepos

KEY_SPEC = SignatureSpec(method="key", public_key="keys/publisher.pub")


def served_files() -> dict[str, bytes]:
    """What deployer serves of hubrepos' tiny model (not original/consolidated.pth)."""
    files = hubrepos.base_files()
    del files["original/consolidated.pth"]
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def write_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def sign(folder: Path, private_key: Path, *, ignore: tuple[str, ...] = ()) -> Path:
    """Sign ``folder`` into ``folder/model.sig`` as ``model_signing sign key`` does."""
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig", *ignore])
    signature = folder / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=private_key
    ).set_hashing_config(hashing).sign(folder, signature)
    return signature


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """The manifest's folder: holds keys/publisher.{pem,pub} and keys/other.{pem,pub}."""
    write_key_pair(tmp_path / "keys", "publisher")
    write_key_pair(tmp_path / "keys", "other")
    return tmp_path


@pytest.fixture
def signed(base: Path) -> Path:
    folder = write_folder(base / "model", served_files())
    sign(folder, base / "keys" / "publisher.pem")
    return folder


def snapshot_of(folder: Path, root: Path) -> tuple[Path, list[str]]:
    """``folder`` as the store holds it: read-only blobs, and a snapshot of symlinks to them."""
    store = ModelStore(root / "store")
    files = {}
    for path in sorted(folder.iterdir()):
        sha = sha256_file(path)
        copy = root / f"incoming-{sha}"
        copy.write_bytes(path.read_bytes())
        store.add_blob(copy, sha)
        files[path.name] = sha
    return store.build_snapshot("acme/tiny", "c" * 40, files), sorted(files)


def refusal(folder: Path, base: Path, files: list[str], spec: SignatureSpec = KEY_SPEC) -> str:
    with pytest.raises(UnsafeModelError) as caught:
        verify_signature(folder, spec, base_dir=base, files=files)
    assert "\n" not in caught.value.message
    assert caught.value.hint
    return caught.value.message


def test_a_signed_snapshot_of_symlinks_verifies(signed: Path, base: Path) -> None:
    snapshot, files = snapshot_of(signed, base)
    assert all((snapshot / name).is_symlink() for name in files)

    verify_signature(snapshot, KEY_SPEC, base_dir=base, files=files)

    leftovers = [p.name for p in snapshot.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary folder of hard links is gone


def test_a_signed_plain_folder_verifies(signed: Path, base: Path) -> None:
    verify_signature(signed, KEY_SPEC, base_dir=base, files=sorted(served_files()))


def test_a_tampered_file_is_refused(signed: Path, base: Path) -> None:
    snapshot, files = snapshot_of(
        write_folder(signed, {"config.json": b'{"model_type": "evil"}'}), base
    )
    message = refusal(snapshot, base, files)
    assert message == "signature file model.sig does not match the files: changed: config.json"


def test_another_key_is_refused(signed: Path, base: Path) -> None:
    spec = SignatureSpec(method="key", public_key="keys/other.pub")
    message = refusal(signed, base, sorted(served_files()), spec)
    assert message.startswith("signature file model.sig does not verify: Key mismatch")


def test_a_missing_signature_is_refused(signed: Path, base: Path) -> None:
    (signed / "model.sig").unlink()
    message = refusal(signed, base, sorted(served_files()))
    assert message.startswith("signature file model.sig is not in")


def test_a_served_file_the_publisher_did_not_sign_is_refused(signed: Path, base: Path) -> None:
    write_folder(signed, {"generation_config.json": b"{}"})
    message = refusal(signed, base, [*served_files(), "generation_config.json"])
    assert message.endswith("does not match the files: not signed: generation_config.json")


def test_a_served_file_the_signer_ignored_is_refused(base: Path) -> None:
    folder = write_folder(base / "model", served_files())
    sign(folder, base / "keys" / "publisher.pem", ignore=("tokenizer_config.json",))
    message = refusal(folder, base, sorted(served_files()))
    assert "leaves out served files: tokenizer_config.json" in message


def test_a_signed_file_deployer_does_not_serve_is_refused(base: Path) -> None:
    # The convention: the publisher signs exactly the served files, nothing else.
    folder = write_folder(base / "model", hubrepos.base_files())
    sign(folder, base / "keys" / "publisher.pem")
    message = refusal(folder, base, sorted(served_files()))
    assert message.endswith("signed but not served: original/consolidated.pth")


def test_a_missing_key_file_names_the_field(signed: Path, base: Path) -> None:
    spec = SignatureSpec(method="key", public_key="keys/nowhere.pub")
    with pytest.raises(ManifestError, match=r"spec\.model\.signature\.publicKey"):
        verify_signature(signed, spec, base_dir=base, files=sorted(served_files()))


def test_a_failed_check_publishes_no_snapshot(signed: Path, base: Path) -> None:
    store = ModelStore(base / "store")

    def refuse(folder: Path) -> None:
        assert folder.is_dir()
        assert folder != store.snapshot_path("acme/tiny", "c" * 40)
        raise UnsafeModelError("signature file model.sig does not verify")

    with pytest.raises(UnsafeModelError):
        store.build_snapshot("acme/tiny", "c" * 40, {}, verify=refuse)
    assert list(store.snapshots.glob("*/*")) == []  # neither snapshot nor temporary


def test_the_signature_file_is_selected_and_required() -> None:
    listing = [*served_files(), "model.sig"]
    selection = select_files(
        listing, allow_pickle=False, trust_remote_code=False, extra=["model.sig"]
    )
    assert "model.sig" in selection.files
    with pytest.raises(
        UnsafeModelError, match=r"signature file model\.sig is not in the repository"
    ):
        select_files(
            list(served_files()), allow_pickle=False, trust_remote_code=False, extra=["model.sig"]
        )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"method": "key"}, "needs 'publicKey'"),
        ({"method": "certificate"}, "needs 'certificateChain'"),
        ({"method": "certificate", "certificateChain": []}, "needs 'certificateChain'"),
        ({"method": "key", "publicKey": "k.pub", "certificateChain": ["c.pem"]}, "not 'key'"),
        ({"method": "certificate", "certificateChain": ["c.pem"], "publicKey": "k"}, "not 'cert"),
        ({"method": "key", "publicKey": "k.pub", "signatureFile": "../model.sig"}, "inside"),
        ({"method": "sigstore"}, "'key' or 'certificate'"),
    ],
)
def test_signature_spec_requires_the_fields_of_its_method(
    fields: dict[str, object], error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        SignatureSpec.model_validate(fields)


def test_signature_spec_defaults_to_model_sig() -> None:
    spec = SignatureSpec.model_validate({"method": "key", "publicKey": "k.pub"})
    assert (spec.signature_file, spec.public_key) == ("model.sig", "k.pub")


def test_a_local_folder_is_checked_when_the_manifest_asks(signed: Path, base: Path) -> None:
    model = LocalModel(source="local", path=str(signed), signature=KEY_SPEC)

    facts = local_facts(model, signed, base_dir=base)
    assert "signature model.sig verified" in facts.reason

    write_folder(signed, {"extra.json": b"{}"})  # the engine could read it: it must be signed
    with pytest.raises(UnsafeModelError, match=r"not signed: extra\.json"):
        local_facts(model, signed, base_dir=base)
