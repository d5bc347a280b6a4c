"""Secrets are masked everywhere, stored owner-only, and API keys resolve or generate once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from deployer import credentials, secrets
from deployer.errors import ManifestError
from deployer.manifest.models import SecretRef


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by a test are forgotten afterwards."""
    monkeypatch.setattr(secrets, "_values", set())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- mask --------------------------------------------------------------------------------------

# (registered values, text) -> masked text
MASK = [
    pytest.param([], "nothing registered", "nothing registered", id="nothing-registered"),
    pytest.param(["hunter22"], "password=hunter22", "password=********", id="one"),
    pytest.param(["hunter22"], "hunter22 and hunter22", "******** and ********", id="every-time"),
    pytest.param(["tok-aaaa", "tok-bbbb"], "tok-aaaa,tok-bbbb", "********,********", id="several"),
    pytest.param(["abcd", "abcdefgh"], "key=abcdefgh", "key=********", id="longest-first"),
    pytest.param(["abcdefgh", "abcd"], "abcd|abcdefgh", "********|********", id="both-lengths"),
    pytest.param(["abc"], "abc is short", "abc is short", id="three-chars-not-registered"),
    pytest.param(["", "a"], "a text", "a text", id="empty-not-registered"),
    pytest.param(["wxyz"], "no secret here", "no secret here", id="absent"),
]


@pytest.mark.parametrize(("values", "text", "masked"), MASK)
def test_mask(values: list[str], text: str, masked: str) -> None:
    for value in values:
        assert secrets.register(value) == value

    assert secrets.mask(text) == masked


def test_generated_api_keys_are_new_and_masked() -> None:
    one, two = secrets.generate_api_key(), secrets.generate_api_key()

    assert one != two
    assert one.startswith("dk-")
    assert len(one) == 3 + 43
    assert secrets.mask(f"key {one} and {two}") == "key ******** and ********"


# --- owner-only files --------------------------------------------------------------------------


def test_write_owner_only_modes(tmp_path: Path) -> None:
    path = tmp_path / "deployments" / "smollm" / "api-key"

    secrets.write_owner_only(path, "dk-secret-value")

    assert path.read_text() == "dk-secret-value"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_write_owner_only_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "api-key"
    secrets.write_owner_only(path, "old-value")

    with path.open() as reader:  # a reader holding the old file
        secrets.write_owner_only(path, "new-value")
        assert reader.read() == "old-value"

    assert path.read_text() == "new-value"
    assert mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["api-key"]


def test_write_owner_only_tightens_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    path.write_text("old")
    path.chmod(0o644)

    secrets.write_owner_only(path, "new")

    assert path.read_text() == "new"
    assert mode(path) == 0o600


def test_read_owner_only_strips_and_registers(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    secrets.write_owner_only(path, "dk-read-back-1234\n")

    assert secrets.read_owner_only(path) == "dk-read-back-1234"
    assert secrets.mask("use dk-read-back-1234") == "use ********"


# --- the engine's API key ----------------------------------------------------------------------


def test_generated_key_is_created_once_and_kept(tmp_path: Path) -> None:
    key_dir = tmp_path / "deployments" / "smollm"

    first = credentials.api_key(None, key_dir=key_dir, base_dir=tmp_path)
    second = credentials.api_key(None, key_dir=key_dir, base_dir=tmp_path)

    assert first.source == second.source == "generated"
    assert first.path == second.path == key_dir / "api-key"
    assert second.value == first.value
    assert second.digest == first.digest
    assert first.value not in first.digest
    assert (key_dir / "api-key").read_text() == first.value
    assert mode(key_dir / "api-key") == 0o600
    assert credentials.stored_api_key(key_dir) == first.value
    assert secrets.mask(first.value) == secrets.MASK


def test_stored_api_key_is_none_before_generation(tmp_path: Path) -> None:
    assert credentials.stored_api_key(tmp_path / "nothing") is None


def test_key_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOLLM_API_KEY", "  sk-from-env-1234\n")

    key = credentials.api_key(
        SecretRef(env="SMOLLM_API_KEY"), key_dir=tmp_path / "keys", base_dir=tmp_path
    )

    assert key.value == "sk-from-env-1234"
    assert key.source == "env:SMOLLM_API_KEY"
    assert key.path is None
    assert not (tmp_path / "keys").exists()
    assert secrets.mask("Bearer sk-from-env-1234") == "Bearer ********"


@pytest.mark.parametrize("value", [None, "", "   \n"], ids=["unset", "empty", "blank"])
def test_key_from_an_unset_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SMOLLM_API_KEY", raising=False)
    else:
        monkeypatch.setenv("SMOLLM_API_KEY", value)

    with pytest.raises(ManifestError) as caught:
        credentials.api_key(SecretRef(env="SMOLLM_API_KEY"), key_dir=tmp_path, base_dir=tmp_path)

    assert caught.value.message == (
        "spec.serving.apiKey: environment variable SMOLLM_API_KEY is not set"
    )
    assert caught.value.hint is not None
    assert "SMOLLM_API_KEY" in caught.value.hint


def test_errors_never_contain_a_secret_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_A", "sk-value-of-a-5678")
    credentials.resolve_secret(
        SecretRef(env="TOKEN_A"), field="spec.model.token", base_dir=tmp_path
    )

    with pytest.raises(ManifestError) as caught:
        credentials.resolve_secret(
            SecretRef(file="missing-token"), field="spec.model.token", base_dir=tmp_path
        )

    text = f"{caught.value.message} {caught.value.hint}"
    assert "spec.model.token" in text
    assert "sk-value-of-a-5678" not in text


def test_key_from_a_file_relative_to_the_manifest(tmp_path: Path) -> None:
    base_dir = tmp_path / "manifests"
    (base_dir / "secrets").mkdir(parents=True)
    (base_dir / "secrets" / "key.txt").write_text("sk-file-key-5678\n")

    key = credentials.api_key(
        SecretRef(file="secrets/key.txt"), key_dir=tmp_path / "keys", base_dir=base_dir
    )

    assert key.value == "sk-file-key-5678"
    assert key.source == "file:secrets/key.txt"
    assert key.path is None
    assert secrets.mask("sk-file-key-5678") == secrets.MASK


def test_key_from_an_absolute_file_ignores_the_manifest_folder(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "key"
    absolute.parent.mkdir()
    absolute.write_text("sk-absolute-0000")

    key = credentials.api_key(
        SecretRef(file=str(absolute)), key_dir=tmp_path, base_dir=tmp_path / "manifests"
    )

    assert key.value == "sk-absolute-0000"


def test_key_file_with_tilde_is_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "key").write_text("sk-home-key-1111")

    key = credentials.api_key(SecretRef(file="~/key"), key_dir=tmp_path, base_dir=tmp_path / "m")

    assert key.value == "sk-home-key-1111"


def test_key_file_missing_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        credentials.api_key(SecretRef(file="nope/key.txt"), key_dir=tmp_path, base_dir=tmp_path)

    assert caught.value.message.startswith("spec.serving.apiKey: cannot read ")
    assert str(tmp_path / "nope" / "key.txt") in caught.value.message
    assert caught.value.hint is not None


@pytest.mark.parametrize("content", ["", "\n", "   \n\n"], ids=["empty", "newline", "blank"])
def test_key_file_empty_is_an_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "key.txt").write_text(content)

    with pytest.raises(ManifestError, match="is empty") as caught:
        credentials.api_key(SecretRef(file="key.txt"), key_dir=tmp_path, base_dir=tmp_path)

    assert caught.value.message.startswith("spec.serving.apiKey: ")


def test_key_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "key.txt").mkdir()

    with pytest.raises(ManifestError, match="cannot read"):
        credentials.api_key(SecretRef(file="key.txt"), key_dir=tmp_path, base_dir=tmp_path)
