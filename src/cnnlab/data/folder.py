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
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.cache import cached_imageset
from cnnlab.data.config import LoadOptions
from cnnlab.data.decode import (
    IMAGE_EXTENSIONS,
    EncodedImage,
    decode_files,
    first_image_size,
    image_header,
)
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.registry import check_source
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


@dataclass
class _Walk:
    """What one recursive walk found: image files, their stamps, other files, what it skipped.

    A stamp is "path, size, modification time" of an image file, for the cache key; a skipped
    entry is "path: reason" (a broken link, a link cycle, a link out of the dataset, a FIFO).
    """

    images: list[str] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _follow(entry: os.DirEntry, within: tuple[str, ...], seen: set[str], walk: _Walk) -> str | None:
    """The real path of the directory ``entry`` (a folder or a link to one) to walk, or None.

    A link is never followed to a folder that holds it (a cycle: a class folder linked to ``/``
    would walk the whole file system) nor, when ``within`` names folders, out of them; and no
    real folder is walked twice. What is not followed is named in ``walk.skipped``.
    """
    parent = os.path.realpath(os.path.dirname(entry.path))
    if entry.is_symlink():
        real = os.path.realpath(entry.path)
        if _inside(parent, real):
            walk.skipped.append(f"{entry.path}: links to {real}, which holds it (a link cycle)")
            return None
        if within and not any(_inside(real, folder) for folder in within):
            walk.skipped.append(f"{entry.path}: links to {real}, outside {within[0]}")
            return None
    else:
        real = os.path.join(parent, entry.name)
    if real in seen:
        walk.skipped.append(f"{entry.path}: leads to {real}, already walked")
        return None
    seen.add(real)
    return real


def _add_file(entry: os.DirEntry, walk: _Walk) -> None:
    if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
        walk.others.append(entry.path)
        return
    try:
        info = entry.stat()  # follows a link: the file's own size and time
    except OSError as err:  # a broken link or a link loop
        walk.skipped.append(f"{entry.path}: {err.strerror or err}")
        return
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the decoder, /dev/zero never ends
        walk.skipped.append(f"{entry.path}: not a regular file")
        return
    walk.images.append(entry.path)
    walk.stamps.append(f"{entry.path}\0{info.st_size}\0{info.st_mtime_ns}")


def _is_dir(entry: os.DirEntry, walk: _Walk) -> bool | None:
    """Whether ``entry`` is a folder or a link to one; None (and named) for a link loop."""
    try:
        return entry.is_dir()  # follows a link
    except OSError as err:
        walk.skipped.append(f"{entry.path}: {err.strerror or err}")
        return None


def _walk_files(directory: str, root_real: str) -> _Walk:
    """Every file under ``directory``, recursively, in name order, hidden entries skipped.

    Plain strings and ``os.scandir``: pathlib costs seconds on a 60,000-file tree.
    """
    walk, top = _Walk(), os.path.realpath(directory)
    pending, seen, within = [directory], {top}, (root_real, top)
    while pending:
        path = pending.pop()
        try:
            with os.scandir(path) as entries:
                entries = sorted((e for e in entries if not e.name.startswith(".")), key=_by_name)
        except OSError as err:  # no permission, or gone since it was listed
            walk.skipped.append(f"{path}: {err.strerror or err}")
            continue
        subdirs = []
        for entry in entries:
            is_dir = _is_dir(entry, walk)
            if is_dir and _follow(entry, within, seen, walk):
                subdirs.append(entry.path)
            elif is_dir is False:
                _add_file(entry, walk)
        pending.extend(reversed(subdirs))  # depth-first, in name order
    return walk


def _by_name(entry: os.DirEntry) -> str:
    return entry.name


def _class_dirs(directory: Path, walk: _Walk | None = None) -> list[Path]:
    """The visible sub-folders of ``directory``, sorted; links to folders count unless cyclic
    (a class folder linked to a pool of images elsewhere is a common layout)."""
    walk = walk or _Walk()
    with os.scandir(directory) as entries:
        found = [e for e in entries if not e.name.startswith(".") and _is_dir(e, walk)]
    seen: set[str] = set()
    return sorted(Path(e.path) for e in found if _follow(e, (), seen, walk))


def _split_dirs(root: Path, root_real: str) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            path = root / name
            if path.is_dir() and not _inside(root_real, os.path.realpath(path)):
                found[split] = path
                break
    # A split layout needs a train folder whose children are class folders.
    if "train" not in found or not _class_dirs(found["train"]):
        return {}
    return found


def _no_images_error(root: Path, where: Path, root_real: str) -> DataError:
    loose = _walk_files(str(root), root_real).images if root.is_dir() else []
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


def _empty_class_error(class_dir: Path, walk: _Walk) -> DataError:
    exts = ", ".join(sorted(IMAGE_EXTENSIONS))
    held = walk.others + [s.split(": ", 1)[0] for s in walk.skipped]
    what = f"only {len(held)} other files, e.g. {held[0]}" if held else "nothing"
    return DataError(
        f"{class_dir}: class folder without images ({what}); add images ({exts}) "
        f"or remove the folder"
    )


def _scan_split(directory: Path, root_real: str, skipped: list[str]) -> dict[str, _Walk]:
    """class name -> its walk, for each class folder of one split folder."""
    per_class, listing = {}, _Walk()
    for class_dir in _class_dirs(directory, listing):
        walk = _walk_files(str(class_dir), root_real)
        skipped.extend(walk.skipped)
        if not walk.images:
            raise _empty_class_error(class_dir, walk)
        per_class[class_dir.name] = walk
    skipped.extend(listing.skipped)
    return per_class


def _make_split(directory: Path, per_class: dict[str, _Walk], classes: list[str]) -> FolderSplit:
    names = sorted(per_class)
    files = [f for name in names for f in per_class[name].images]
    labels = [classes.index(name) for name in names for _ in per_class[name].images]
    stamps = "\n".join(s for name in names for s in per_class[name].stamps)
    return FolderSplit(directory, files, labels, hashlib.sha256(stamps.encode()).hexdigest())


def scan_folder(root: str | os.PathLike) -> FolderLayout:
    """Find the classes, splits and image files under ``root`` (nothing is decoded).

    Links to folders are followed except to a folder that holds them (a cycle, e.g. ``/``),
    below a class folder only inside ``root`` or that class folder, and each real folder once;
    what is skipped (such links, broken links, FIFOs) is named in a DataWarning.

    Raises:
        DataError: ``root`` is empty, missing or holds no class folders with images; a class
            folder holds no images; train has only one class; or a val/test folder has a class
            that train lacks.
    """
    check_source(root)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of images (does not exist or is a file)")
    root_real = os.path.realpath(root)
    split_dirs = _split_dirs(root, root_real) or {"train": root}
    per_split, skipped = {}, []
    for split, directory in split_dirs.items():
        per_split[split] = _scan_split(directory, root_real, skipped)
    classes = sorted(per_split["train"])
    if not classes:
        raise _no_images_error(root, split_dirs["train"], root_real)
    for split, per_class in per_split.items():
        unknown = sorted(set(per_class) - set(classes))
        if unknown:
            raise DataError(
                f"{split_dirs[split]}: classes {unknown} are not in the train folder "
                f"{split_dirs['train']} (train classes: {', '.join(classes)})"
            )
    if len(classes) < 2:
        raise DataError(
            f"{split_dirs['train']}: one class folder ({classes[0]}); classification needs at "
            f"least 2 classes, each in its own folder {split_dirs['train']}/<class>/"
        )
    if skipped:
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        message = f"{root}: skipped {len(skipped)} entries: {'; '.join(skipped[:3])}{more}"
        warnings.warn(message, DataWarning, stacklevel=2)
    splits = {s: _make_split(split_dirs[s], per_split[s], classes) for s in per_split}
    ignored = [f for per_class in per_split.values() for w in per_class.values() for f in w.others]
    return FolderLayout(root, classes, splits, ignored)


def guess_channels(items: list[str] | list[EncodedImage], sample: int = 16) -> int:
    """1 if the first ``sample`` readable images (files or :class:`EncodedImage` s) are all
    grayscale, else 3 (headers only)."""
    headers = [image_header(p) for p in items[:: max(1, len(items) // sample)][:sample]]
    modes = [h[0] for h in headers if h is not None]
    return 1 if modes and all(m in _GRAY_MODES or m.startswith("I;16") for m in modes) else 3


def warn_skipped(
    name: str, failures: list[str], total: int, unit: str = "files", stacklevel: int = 2
) -> None:
    """One DataWarning for the files (or records, ``unit``) of ``name`` that could not be
    decoded, if any: the first three and a count."""
    if not failures:
        return
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    count = f"{len(failures)} of {total} {unit}"
    message = f"{name}: skipped {count} that are not readable images: "
    warnings.warn(message + "; ".join(failures[:3]) + more, DataWarning, stacklevel + 1)


def decode_items(
    items: list[str] | list[EncodedImage],
    labels: list[int],
    classes: list[str],
    channels: int,
    opts: LoadOptions,
    name: str,
    warn_resized: bool,
) -> ImageSet:
    """Decode files (or :class:`EncodedImage` s) to ``opts.image_size`` into an ImageSet named
    ``name``; with ``warn_resized``, a DataWarning says how many had another size."""
    result = decode_files(
        items,
        channels,
        opts.image_size,
        workers=opts.workers,
        strict=opts.strict,
        progress=opts.progress,
        description=f"decoding {name}",
    )
    picked = torch.tensor(labels, dtype=torch.int64)[result.indices]
    images = ImageSet(result.images, picked, list(classes), name, result.failures)
    if result.resized and warn_resized:
        height, width = images.shape[1:]
        warnings.warn(
            f"{name}: resized {result.resized} images of other sizes to {height}x{width} "
            f"(the first image's size); pass an image size to choose it",
            DataWarning,
            stacklevel=3,
        )
    return images


def report_skipped(images: ImageSet, total: int, strict: bool, unit: str = "files") -> None:
    """Raise (``strict``) or warn about the skipped samples of a loaded, maybe cached, set: a
    cached load must be as strict and as loud as a fresh one."""
    if images.skipped and strict:
        raise CorruptImageError(images.skipped[0] + " (strict mode)")
    warn_skipped(images.name, images.skipped, total, unit, stacklevel=3)


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
    warn_resized = opts.image_size is None  # the train split's first image decides the size
    size = opts.image_size or first_image_size(train_files, channels)
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
            lambda f=files, s=split: decode_items(
                f.files, f.labels, layout.classes, channels, opts, f"{name}/{s}", warn_resized
            ),
            enabled=opts.cache,
        )
        report_skipped(out[split], len(files.files), opts.strict)
    return DatasetSplits(out["train"], out.get("val"), out.get("test"))
