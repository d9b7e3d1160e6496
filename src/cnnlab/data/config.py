"""Typed data options: the library receives these, the CLI and YAML files only fill them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import ConfigError


def cnnlab_home() -> Path:
    """The cache directory: ``$CNNLAB_HOME`` or ``~/.cache/cnnlab`` (created on demand)."""
    env = os.environ.get("CNNLAB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"


@dataclass
class LoadOptions:
    """How to turn a dataset source into decoded :class:`~cnnlab.data.imageset.ImageSet` splits.

    Attributes:
        root: where downloads, extracted archives and decoded caches live (default
            :func:`cnnlab_home`).
        image_size: (H, W) to resize to; None keeps the dataset's own size (for a folder of
            images of several sizes: the size of the first image).
        channels: 1 or 3 to convert to; None keeps the dataset's own channel count.
        val_split: fraction of the training split held out for validation (stratified, seeded)
            when the dataset has no validation split of its own; 0 for none.
        seed: seed of the validation split.
        strict: raise on the first corrupt image instead of skipping and reporting it.
        download: allow downloading a missing archive.
        progress: show Rich progress bars for downloads and decoding.
        workers: decode processes for image folders (0: in this process; None: one per core).
        cache: read and write the decoded cache.
        tfrecord_keys: feature names of TFRecord sources, as text
            (``"image=image/encoded,label=image/class/label"``) or a dict; None: lesson 003's
            (see :class:`~cnnlab.data.tfrecord.TFRecordKeys`).
    """

    root: Path | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    val_split: float = 0.1
    seed: int = 0
    strict: bool = False
    download: bool = True
    progress: bool = False
    workers: int | None = None
    cache: bool = True
    tfrecord_keys: str | dict[str, str] | None = None

    def __post_init__(self) -> None:
        # seeds reach torch.Generator/numpy as int64: a larger one was an internal OverflowError
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < 2**63
        ):
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")

    @property
    def home(self) -> Path:
        return Path(self.root).expanduser() if self.root else cnnlab_home()
