"""Calibration and evaluation texts: shipped with deployer or pinned next to the manifest.

Either way a text is identified by its sha256, which goes into the artifact's cache key; a file
whose content no longer matches its pinned sha256 is refused before anything is quantized, so a
stored artifact always says exactly which samples made it and which text measured it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployer import inputs
from deployer.digests import sha256_file
from deployer.errors import ManifestError, NotFoundError
from deployer.manifest.base import PinnedText

DATA_DIR = Path(__file__).parent / "data"

#: Calibration sets shipped in the package: name -> (file in data/, sha256).
BUILTIN_CALIBRATION: dict[str, tuple[str, str]] = {
    "chat-v1": (
        "chat-v1.jsonl",
        "9361f338b3bf6eb5e571eb461acf644cff1971d5311a2b135003c063a5f4499c",
    ),
}
#: Evaluation texts shipped in the package: name -> (file in data/, sha256).
BUILTIN_EVALUATION: dict[str, tuple[str, str]] = {
    "en-v1": ("eval-en-v1.txt", "f3c52211d614db403279d5d11207feadc52e9c47ffe083aeb5c3157640a7fed2"),
}


@dataclass(frozen=True)
class ResolvedText:
    """A pinned text found and checked: where it is, its sha256, and how the manifest named it."""

    path: Path
    sha256: str
    label: str


def resolve(
    pinned: PinnedText, *, base_dir: Path, field: str, builtins: dict[str, tuple[str, str]]
) -> ResolvedText:
    """The file ``pinned`` names, with its content checked against the sha256.

    ``field`` is the manifest path for messages (``spec.quantize.calibration``). Raises
    :class:`ManifestError` for an unknown built-in name or a sha256 that does not match, and
    :class:`NotFoundError` for a missing file. Hashes the file (small texts: milliseconds).
    """
    if pinned.builtin is not None:
        if pinned.builtin not in builtins:
            raise ManifestError(
                f"{field}.builtin: no built-in text named {pinned.builtin!r}",
                hint=f"built-in: {', '.join(sorted(builtins))}; or give file and sha256",
            )
        name, expected = builtins[pinned.builtin]
        if pinned.sha256 is not None and pinned.sha256 != expected:
            raise ManifestError(
                f"{field}: built-in {pinned.builtin} has sha256 {expected[:12]}..., the manifest "
                f"pins {pinned.sha256[:12]}...",
                hint="this deployer ships another version of it; pin the file you mean instead",
            )
        return ResolvedText(DATA_DIR / name, expected, f"built-in {pinned.builtin}")
    # PinnedText guarantees both for a file; the defaults only satisfy the type checker.
    file, pinned_sha256 = pinned.file or "", pinned.sha256 or ""
    path = inputs.expand_user(file)
    path = path if path.is_absolute() else base_dir / path
    try:
        inputs.check_file(path, inputs.TEXT)
    except FileNotFoundError:
        raise NotFoundError(
            f"{field}.file: {path} does not exist",
            hint="paths are relative to the manifest's folder",
        ) from None
    except ManifestError as exc:
        raise ManifestError(f"{field}.file: {exc.message}", hint=exc.hint) from None
    actual = sha256_file(path)
    if actual != pinned_sha256:
        raise ManifestError(
            f"{field}: {path} has sha256 {actual}, the manifest pins {pinned_sha256}",
            hint="the file changed since it was pinned; review it, then update sha256",
        )
    return ResolvedText(path, actual, f"file {file}")
