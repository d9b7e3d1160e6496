"""User-facing error types.

Every error a user can cause (bad shape, unknown model, bad spec field) is a `CnnlabError`;
the CLI prints its message on one line and exits non-zero instead of showing a traceback.
Messages always echo the bad value and, where there is a closed set, the valid choices.
"""

from __future__ import annotations


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of ``err``'s message (its type name when empty), cut to ``limit`` chars:
    how a wrapped library error is quoted inside a one-line cnnlab message."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line[:limit] if limit else line


class CnnlabError(Exception):
    """Base class of errors caused by user input (printed without traceback by the CLI)."""


class ShapeError(CnnlabError, ValueError):
    """An input shape that cannot be parsed or does not fit a model."""


class UnknownModelError(CnnlabError, ValueError):
    """A model name that is not in the registry."""


class SpecError(CnnlabError, ValueError):
    """A declarative architecture spec that cannot be built.

    The message names the layer (index and name), the field and the bad value.
    """


def choices_text(choices) -> str:
    """Format a collection of valid choices for an error message."""
    return ", ".join(sorted(str(c) for c in choices))


class DataError(CnnlabError, ValueError):
    """A dataset, file or data option that cannot be used; the message names the file or value."""


class UnknownDatasetError(DataError):
    """A dataset name that is neither registered nor an existing folder."""


class ChecksumError(DataError):
    """A downloaded file whose size or checksum differs from the expected one."""


class UnsafeArchiveError(DataError):
    """An archive member that would land outside the extraction directory (or is a link)."""


class CorruptImageError(DataError):
    """An image file that cannot be decoded (truncated, corrupt or not an image)."""


class ConfigError(CnnlabError, ValueError):
    """A training option that cannot be used; the message names the field and the bad value."""


class TrainingError(CnnlabError, RuntimeError):
    """A run that cannot go on (non-finite loss, unusable checkpoint); says what was kept."""


class RunError(CnnlabError, ValueError):
    """A run folder that is missing, incomplete or from an incompatible version."""


class WeightsError(CnnlabError, ValueError):
    """Pretrained weights that cannot be found, read or loaded (names the file and the keys)."""


class MissingDependencyError(CnnlabError, ImportError):
    """An optional package a feature needs is not installed (the message says how to get it)."""


class ExportError(CnnlabError, RuntimeError):
    """A model that cannot be exported or whose export disagrees with it (names the layer)."""
