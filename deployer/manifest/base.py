"""What every manifest model shares: the strict base model, paths and pinned text files.

Kept apart from :mod:`deployer.manifest.models` so that the models of each part of a manifest
(:mod:`deployer.manifest.performance`) can build on it without importing the whole manifest.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

#: Longest path deployer takes, and longest name in it (Linux's PATH_MAX and NAME_MAX).
PATH_MAX = 4096
NAME_MAX = 255


def _path_text(value: str) -> str:
    """A path as a manifest may write it: every later use (open, stat, a folder name) can take
    it. Checked at load, so that ``plan`` never meets what ``validate`` let through."""
    if not value:
        raise ValueError("a path cannot be empty")
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character")
    if len(value.encode()) > PATH_MAX:
        raise ValueError(f"path is longer than {PATH_MAX} bytes")
    for part in value.split("/"):
        if len(part.encode()) > NAME_MAX:
            raise ValueError(
                f"path component {part[:24]}... is longer than {NAME_MAX} bytes, the most a "
                "file name can have"
            )
    return value


#: A path written in a manifest.
PathText = Annotated[str, AfterValidator(_path_text)]
SHA256_HEX = r"^[0-9a-f]{64}$"


class Spec(BaseModel):
    """Base of every manifest model: strict, camelCase keys, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        # Field docstrings are descriptions, read when an error or the schema needs them
        # (deployer.manifest.attribute_docs), not on every start.
        use_attribute_docstrings=False,
        # .inf and .nan are never a size, a price or a fraction.
        allow_inf_nan=False,
    )


class PinnedText(Spec):
    """A text file deployer reads, pinned by its sha256: a file next to the manifest, or a set
    shipped with deployer (by name)."""

    file: PathText | None = None
    """Path of the file; relative paths are relative to the manifest's file."""
    builtin: str | None = None
    """Name of a text shipped with deployer (calibration: 'chat-v1'; evaluation: 'en-v1')."""
    sha256: Annotated[str, StringConstraints(pattern=SHA256_HEX)] | None = None
    """The file's sha256 (64 lower-case hex digits); required with 'file', checked before use.
    A built-in text carries its own; when given it must match."""

    @model_validator(mode="after")
    def _one_source(self) -> PinnedText:
        if (self.file is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'file' or 'builtin'")
        if self.file is not None and self.sha256 is None:
            raise ValueError(
                "a calibration or evaluation 'file' needs its 'sha256' (run: sha256sum FILE)"
            )
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"built-in {self.builtin}"
