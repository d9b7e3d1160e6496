"""TFRecord shards as a data source: ``--data 'path/*.tfrec'`` (a file or a glob), no TensorFlow.

Each record is a ``tf.train.Example`` with an encoded image and a class, as lesson 003 stores the
flowers (its "Flower pictures to TFRecords" notebook): ``image`` (JPEG bytes), ``class`` (int64
index), ``label`` (the class name as bytes); ``size`` and ``one_hot_class`` are ignored. Other
feature names are given as :class:`TFRecordKeys` (``--tfrecord-keys image=image/encoded,
label=image/class/label``). The label may be an int64 index, a one-hot float list (its argmax) or
a class name (bytes); class names come from the ``name`` feature when the labels are indices
(``"0"``, ``"1"``, ... without it), or are the sorted names when the labels are names.

The files are one source, the train split (``val_split`` carves the validation split, as for a
folder without split folders). A record that fails its CRC or does not parse is named (file,
record index, byte offset) and skipped like a corrupt image, and so is an image that does not
decode; ``strict`` raises instead (see :mod:`cnnlab.data.tfrecord_read` for what stops a file).
The images then take the same decode path as a folder's: decoded once, cached, converted.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from cnnlab.data.cache import cached_imageset
from cnnlab.data.config import LoadOptions
from cnnlab.data.decode import EncodedImage, decode_image_bytes, first_image_size
from cnnlab.data.folder import decode_items, guess_channels, report_skipped
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.tfrecord_read import iter_records, parse_example, tfrecord_stamp
from cnnlab.errors import CorruptImageError, DataError

_PLAIN_SUFFIXES = (".tfrec", ".tfrecord", ".tfrecords")
TFRECORD_SUFFIXES = (*_PLAIN_SUFFIXES, *(f"{s}.gz" for s in _PLAIN_SUFFIXES))  # + GZIP files
MAX_CLASSES = 100_000  # a label index beyond it is an error, not 10^9 empty classes
_ROLES = ("image", "label", "name")


@dataclass(frozen=True)
class TFRecordKeys:
    """Which features of each ``tf.train.Example`` hold what (defaults: lesson 003's names).

    Attributes:
        image: the encoded image (bytes).
        label: the class: an int64 index, a one-hot float list, or the class name (bytes).
        name: optional class name (bytes) beside an index label, to name the classes.
    """

    image: str = "image"
    label: str = "class"
    name: str = "label"

    def text(self) -> str:
        """``"image=...,label=...,name=..."``, as ``--tfrecord-keys`` takes it."""
        return ",".join(f"{role}={getattr(self, role)}" for role in _ROLES)


def parse_tfrecord_keys(value: str | Mapping[str, str] | TFRecordKeys | None) -> TFRecordKeys:
    """``"image=image/encoded,label=image/class/label"`` (or a dict) -> :class:`TFRecordKeys`;
    roles not named keep lesson 003's feature names; None gives all of them.

    Raises:
        DataError: an unknown role, a part without ``=`` or an empty feature name.
    """
    if value is None or isinstance(value, TFRecordKeys):
        return value or TFRecordKeys()
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        parts = [p for p in str(value).split(",") if p.strip()]
        pairs = [tuple(p.split("=", 1)) if "=" in p else (p, None) for p in parts]
    keys = {}
    for role, feature in pairs:
        role = role.strip()
        if role not in _ROLES or not isinstance(feature, str) or not feature.strip():
            raise DataError(
                f"tfrecord keys {value!r}: {role}={feature} must be ROLE=FEATURE with ROLE one "
                f"of {', '.join(_ROLES)}, e.g. image=image/encoded,label=image/class/label"
            )
        keys[role] = feature.strip()
    return TFRecordKeys(**keys)


def _text(source: str | os.PathLike) -> str | None:
    return os.path.expanduser(os.fspath(source)) if isinstance(source, str | os.PathLike) else None


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def is_tfrecord_source(source: str | os.PathLike) -> bool:
    """Whether ``source`` names TFRecord files: a glob (``data/*.tfrec``) or a path ending in
    .tfrec, .tfrecord or .tfrecords (+ .gz). A folder never is (its name may hold ``[``)."""
    text = _text(source)
    if not text or os.path.isdir(text):
        return False
    return _has_magic(text) or text.lower().endswith(TFRECORD_SUFFIXES)


def tfrecord_files(source: str | os.PathLike) -> list[str]:
    """The files of a TFRecord source, sorted (a glob's matches; folders among them ignored).

    Raises:
        DataError: the file does not exist, or the glob matches no file.
    """
    text = _text(source) or ""
    if _has_magic(text):
        files = sorted(f for f in glob.glob(text) if os.path.isfile(f))
        if not files:
            raise DataError(f"{text}: no TFRecord file matches this pattern")
        return files
    if not os.path.isfile(text):
        what = "not a regular file" if os.path.exists(text) else "no such TFRecord file"
        raise DataError(f"{text}: {what}")
    return [text]


@dataclass
class TFRecordSamples:
    """The images and labels read from TFRecord files (nothing decoded yet).

    Attributes:
        images: encoded images, named ``file#record``.
        labels: class index of each image.
        classes: class names in label order.
        problems: "file#record (byte N): reason" for each record that was skipped.
        total: records seen, good and bad.
    """

    images: list[EncodedImage] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    total: int = 0


def _missing(path: str, index: int, role: str, feature: str, names: list[str]) -> DataError:
    return DataError(
        f"{path}#{index}: no feature {feature!r} for the {role} (the record has: "
        f"{', '.join(names) or 'none'}); name it with --tfrecord-keys {role}=FEATURE"
    )


def _label_value(path: str, index: int, feature: str, value: tuple[str, list]) -> int | str:
    """The raw label of one record: an index (int64, or a one-hot's argmax) or a class name."""
    kind, values = value
    if kind == "bytes" and len(values) == 1:
        return values[0].decode("utf-8", "replace")
    if kind == "int64" and len(values) == 1 and 0 <= values[0] < MAX_CLASSES:
        return int(values[0])
    if kind == "float" and 0 < len(values) <= MAX_CLASSES:
        return max(range(len(values)), key=values.__getitem__)
    shown = values[:5] if kind != "bytes" else [v[:20] for v in values[:5]]
    raise DataError(
        f"{path}#{index}: feature {feature!r} is {kind} {shown}; a label is one int64 index in "
        f"[0, {MAX_CLASSES}), a one-hot float list or one class name (bytes)"
    )


def _read_record(samples, raw, names, keys, path, record) -> None:
    """Parse one good record into ``samples``/``raw``/``names``; problems go to samples."""
    where = f"{path}#{record.index}"
    try:
        found, present = parse_example(record.data, (keys.image, keys.label, keys.name))
    except ValueError as err:
        samples.problems.append(f"{where} (byte {record.offset:,}): {err}")
        return
    for role in ("image", "label"):
        if getattr(keys, role) not in found:
            raise _missing(path, record.index, role, getattr(keys, role), present)
    kind, values = found[keys.image]
    if kind != "bytes" or len(values) != 1:
        raise DataError(
            f"{where}: feature {keys.image!r} is {kind} of {len(values)} values, not one "
            f"encoded image (bytes); name the image feature with --tfrecord-keys image=FEATURE"
        )
    label = _label_value(path, record.index, keys.label, found[keys.label])
    name = found.get(keys.name) if keys.name != keys.label else None
    if isinstance(label, int) and name and name[0] == "bytes" and len(name[1]) == 1:
        names.setdefault(label, name[1][0].decode("utf-8", "replace"))
    samples.images.append(EncodedImage(where, values[0]))
    raw.append(label)


def _resolve_classes(samples: TFRecordSamples, raw: list, names: dict[int, str]) -> None:
    """Turn the raw labels (indices or names) into class indices and class names."""
    if all(isinstance(r, str) for r in raw):
        samples.classes = sorted(set(raw))
        lookup = {c: i for i, c in enumerate(samples.classes)}
        samples.labels = [lookup[r] for r in raw]
    elif all(isinstance(r, int) for r in raw):
        samples.classes = [names.get(i, str(i)) for i in range(max(raw) + 1)]
        samples.labels = list(raw)
        twice = sorted({c for c in samples.classes if samples.classes.count(c) > 1})
        if twice:
            raise DataError(
                f"{samples.images[0].source}: class names {twice[:5]} belong to more than one "
                "class index; name the classes' feature with --tfrecord-keys name=FEATURE"
            )
    else:
        raise DataError(
            f"{samples.images[0].source}: some records label by index and others by name; "
            "use one kind of label feature"
        )


def read_tfrecords(
    files: list[str], keys: TFRecordKeys | None = None, strict: bool = False
) -> TFRecordSamples:
    """Read the encoded images and labels of ``files`` (see the module docstring).

    Raises:
        CorruptImageError: with ``strict``, the first bad record.
        DataError: a missing or malformed image/label feature (the wrong ``keys``), labels of
            mixed kinds, fewer than two classes, or no readable record at all.
    """
    keys = keys or TFRecordKeys()
    samples, raw, names = TFRecordSamples(), [], {}
    for path in files:
        for record in iter_records(path):
            samples.total += 1
            if record.data is None:
                rest = "; the rest of the file is not read" if record.fatal else ""
                problem = f"{path}#{record.index} (byte {record.offset:,}): {record.problem}{rest}"
                if strict:
                    raise CorruptImageError(f"{problem} (strict mode)")
                samples.problems.append(problem)
                continue
            _read_record(samples, raw, names, keys, path, record)
            if strict and samples.problems:
                raise CorruptImageError(f"{samples.problems[0]} (strict mode)")
    if not raw:
        shown = "; ".join(samples.problems[:3]) or "no records"
        raise DataError(f"{files[0]}: none of the {samples.total} records is readable: {shown}")
    _resolve_classes(samples, raw, names)
    if len(samples.classes) < 2:
        raise DataError(
            f"{files[0]}: one class ({samples.classes[0]!r}, feature {keys.label!r}); "
            "classification needs at least 2 classes"
        )
    return samples


def first_image_size_of(files: list[str], keys: TFRecordKeys, tries: int = 16) -> tuple | None:
    """(H, W) of the first image among the first ``tries`` records of ``files[0]`` that
    decodes, or None (an estimate for choosing memory or streaming; nothing is raised)."""
    for record in islice(iter_records(files[0]), tries):
        try:
            found, _ = parse_example(record.data or b"", (keys.image,))
            return tuple(decode_image_bytes(found[keys.image][1][0]).shape[1:])
        except (ValueError, KeyError, IndexError, TypeError, DataError):
            continue
    return None


def _decode(files: list[str], keys: TFRecordKeys, opts: LoadOptions, name: str) -> ImageSet:
    samples = read_tfrecords(files, keys, opts.strict)
    channels = opts.channels or guess_channels(samples.images)
    size = opts.image_size or first_image_size(samples.images, channels)
    sized = dataclasses.replace(opts, image_size=size)
    images = decode_items(
        samples.images,
        samples.labels,
        samples.classes,
        channels,
        sized,
        name,
        opts.image_size is None,
    )
    skipped = samples.problems + images.skipped
    return dataclasses.replace(images, name=f"{name}/train", skipped=skipped)


def source_name(files: list[str]) -> str:
    """A short name for the files: one file's stem, else their folder's name."""
    if len(files) == 1:
        return Path(files[0]).stem
    return Path(files[0]).resolve().parent.name or "tfrecords"


def load_tfrecord_splits(source: str | os.PathLike, opts: LoadOptions) -> DatasetSplits:
    """The TFRecord files of ``source`` decoded as the train split (for ``load_splits``).

    Decoded images are cached like an image folder's, keyed by the files' paths, sizes and
    modification times, the feature keys, the size and the channels.
    """
    files = tfrecord_files(source)
    keys = parse_tfrecord_keys(opts.tfrecord_keys)
    name = source_name(files)
    key = {
        "files": [tfrecord_stamp(f) for f in files],
        "keys": dataclasses.asdict(keys),
        "size": opts.image_size,
        "channels": opts.channels,
    }
    train = cached_imageset(
        opts.home, "tfrecord", key, lambda: _decode(files, keys, opts, name), enabled=opts.cache
    )
    report_skipped(train, len(train) + len(train.skipped), opts.strict, unit="records")
    return DatasetSplits(train)
