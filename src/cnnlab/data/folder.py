"""Folders of images: ``root/<class>/*.jpg``, or ``root/{train,val,test}/<class>/*.jpg``.

Class names are the folder names, sorted (as Keras' ``image_dataset_from_directory`` does); files
are found recursively inside each class folder. Files without an image extension (a LICENSE.txt,
.DS_Store) are ignored; files with one that do not decode are skipped and reported once, or raise
with ``strict``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.cache import cached_imageset
from cnnlab.data.config import LoadOptions
from cnnlab.data.decode import IMAGE_EXTENSIONS, decode_files, first_image_size
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.errors import CorruptImageError, DataError

# Folder names that mark a split layout, first match wins.
SPLIT_DIRS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "P;L"})


class DataWarning(UserWarning):
    """Something in the data was skipped or changed (corrupt files, resized images)."""


@dataclass
class FolderSplit:
    """The image files of one split and their class indices."""

    directory: Path
    files: list[str]
    labels: list[int]
    fingerprint: str = ""  # digest of every file's path, size and modification time


@dataclass
class FolderLayout:
    """What :func:`scan_folder` found under a root folder."""

    root: Path
    classes: list[str]
    splits: dict[str, FolderSplit]
    ignored: list[str] = field(default_factory=list)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and _visible(p))


def _walk_files(directory: Path) -> tuple[list[str], list[str], list[str]]:
    """(image files, other files, stamps) under ``directory``, recursively, sorted, hidden skipped.

    A stamp is "path, size, modification time" of an image file, for the cache key.

    Plain strings and ``os.scandir``: pathlib costs seconds on a 60,000-file tree.
    """
    images, others, stamps, pending = [], [], [], [str(directory)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            entries = sorted((e for e in entries if not e.name.startswith(".")), key=_by_name)
        subdirs = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(entry.path)
                stat = entry.stat()
                stamps.append(f"{entry.path}\0{stat.st_size}\0{stat.st_mtime_ns}")
            else:
                others.append(entry.path)
        pending.extend(reversed(subdirs))  # depth-first, in name order
    return images, others, stamps


def _by_name(entry: os.DirEntry) -> str:
    return entry.name


def _split_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    # A split layout needs a train folder whose children are class folders.
    if "train" not in found or not _class_dirs(found["train"]):
        return {}
    return found


def _no_images_error(root: Path, where: Path) -> DataError:
    loose = _walk_files(root)[0] if root.is_dir() else []
    hint = (
        f" (found {len(loose)} images but no class folders: put them in root/<class>/)"
        if loose and not _class_dirs(root)
        else ""
    )
    exts = ", ".join(sorted(IMAGE_EXTENSIONS))
    return DataError(
        f"{where}: no images found; expected {root}/<class>/*.jpg or "
        f"{root}/train/<class>/*.jpg (extensions: {exts}){hint}"
    )


def scan_folder(root: str | os.PathLike) -> FolderLayout:
    """Find the classes, splits and image files under ``root`` (nothing is decoded).

    Raises:
        DataError: ``root`` is missing, holds no class folders with images, or a val/test folder
            has a class that train lacks.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of images (does not exist or is a file)")
    split_dirs = _split_dirs(root) or {"train": root}
    per_split, ignored = {}, []
    for split, directory in split_dirs.items():
        per_class = {}
        for class_dir in _class_dirs(directory):
            images, others, stamps = _walk_files(class_dir)
            ignored.extend(others)
            if images:
                per_class[class_dir.name] = (images, stamps)
        per_split[split] = per_class
    classes = sorted(per_split["train"])
    if not classes:
        raise _no_images_error(root, split_dirs["train"])
    splits = {}
    for split, per_class in per_split.items():
        unknown = sorted(set(per_class) - set(classes))
        if unknown:
            raise DataError(
                f"{split_dirs[split]}: classes {unknown} are not in the train folder "
                f"{split_dirs['train']} (train classes: {', '.join(classes)})"
            )
        names = sorted(per_class)
        files = [f for name in names for f in per_class[name][0]]
        labels = [classes.index(name) for name in names for _ in per_class[name][0]]
        stamps = "\n".join(s for name in names for s in per_class[name][1])
        fingerprint = hashlib.sha256(stamps.encode()).hexdigest()
        splits[split] = FolderSplit(split_dirs[split], files, labels, fingerprint)
    return FolderLayout(root, classes, splits, ignored)


def guess_channels(files: list[str], sample: int = 16) -> int:
    """1 if the first ``sample`` readable images are all grayscale, else 3 (headers only)."""
    from PIL import Image, UnidentifiedImageError

    seen = 0
    for path in files[:: max(1, len(files) // sample)][:sample]:
        try:
            with Image.open(path) as image:
                if image.mode not in _GRAY_MODES:
                    return 3
                seen += 1
        except (OSError, UnidentifiedImageError):
            continue
    return 1 if seen else 3


def skipped_message(name: str, failures: list[str], total: int, shown: int = 3) -> str:
    """One message for the files of ``name`` that could not be decoded: the first few + a count."""
    first = "; ".join(failures[:shown])
    more = f"; and {len(failures) - shown} more" if len(failures) > shown else ""
    count = f"{len(failures)} of {total} files"
    return f"{name}: skipped {count} that are not readable images: {first}{more}"


def _decode_split(
    split: FolderSplit,
    classes: list[str],
    opts: LoadOptions,
    channels: int,
    name: str,
    size_requested: bool,
) -> ImageSet:
    size = opts.image_size
    result = decode_files(
        split.files,
        channels,
        size,
        workers=opts.workers,
        strict=opts.strict,
        progress=opts.progress,
        description=f"decoding {name}",
    )
    labels = torch.tensor(split.labels, dtype=torch.int64)[result.indices]
    images = ImageSet(result.images, labels, list(classes), name, result.failures)
    if result.resized and not size_requested:
        height, width = images.shape[1:]
        warnings.warn(
            f"{name}: resized {result.resized} images of other sizes to {height}x{width} "
            f"(the first image's size); pass an image size to choose it",
            DataWarning,
            stacklevel=3,
        )
    return images


def load_folder_splits(
    root: str | os.PathLike, opts: LoadOptions, name: str | None = None
) -> DatasetSplits:
    """Decode the image folder ``root`` into splits (train; val and test when the folders exist).

    Every split is decoded to the same size and channel count: ``opts.image_size`` or the first
    train image's size; ``opts.channels`` or 1 when the images are grayscale, else 3. Decoded
    splits are cached under ``opts.home / "decoded"``, keyed by the files' paths, sizes and
    modification times, so a changed folder is decoded again.
    """
    layout = scan_folder(root)
    name = name or layout.root.name
    train_files = layout.splits["train"].files
    channels = opts.channels or guess_channels(train_files)
    size = opts.image_size
    size_requested = size is not None
    if size is None:  # the train split's first image decides, for every split
        size = first_image_size(train_files, channels)
    opts = dataclasses.replace(opts, image_size=size)
    out = {}
    for split, files in layout.splits.items():
        key = {
            "root": str(layout.root.resolve()),
            "split": split,
            "files": files.fingerprint,
            "classes": layout.classes,
            "size": size,
            "channels": channels,
        }
        out[split] = cached_imageset(
            opts.home,
            "folder",
            key,
            lambda f=files, s=split: _decode_split(
                f, layout.classes, opts, channels, f"{name}/{s}", size_requested
            ),
            enabled=opts.cache,
        )
        if out[split].skipped and opts.strict:  # a cached load must be as strict as a fresh one
            raise CorruptImageError(out[split].skipped[0] + " (strict mode)")
        if out[split].skipped:
            message = skipped_message(out[split].name, out[split].skipped, len(files.files))
            warnings.warn(message, DataWarning, stacklevel=2)
    return DatasetSplits(out["train"], out.get("val"), out.get("test"))
