"""The downloaded datasets: MNIST, Fashion-MNIST, CIFAR-10 and the flower photos.

Each is fetched from its canonical public source into ``<home>/downloads/<dataset>/`` (home:
``LoadOptions.root``, else ``$CNNLAB_HOME``, else ``~/.cache/cnnlab``), verified by checksum,
parsed from its original format and cached decoded, so a second load takes well under a second.

Where the files come from:

* :data:`REMOTE_FILES` lists, per dataset, each file with its mirrors, SHA-256 (from the
  TensorFlow Datasets checksum lists), MD5 (torchvision's lists) and size. Tests replace entries
  (``monkeypatch.setitem(REMOTE_FILES["mnist"], ...)``) to point at local files.
* ``CNNLAB_DATA_MIRROR``: a base URL (``https://``, ``http://``, ``file://``) or a local folder
  that replaces every mirror list, for offline or air-gapped machines. It must hold the
  original files under one folder per dataset, e.g. ``$CNNLAB_DATA_MIRROR/mnist/
  train-images-idx3-ubyte.gz`` or ``$CNNLAB_DATA_MIRROR/cifar10/cifar-10-python.tar.gz``
  (MNIST and Fashion-MNIST share file names). The checksums are still verified.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import formats
from cnnlab.data.cache import cached_imageset, file_fingerprint
from cnnlab.data.config import LoadOptions
from cnnlab.data.download import RemoteFile, fetch, safe_extract
from cnnlab.data.folder import load_folder_splits
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.registry import DatasetInfo, register_dataset
from cnnlab.errors import DataError

MIRROR_ENV = "CNNLAB_DATA_MIRROR"

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's first mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' source
    "http://yann.lecun.com/exdb/mnist/",  # the original site (often refuses scripts now)
)
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras' (lesson 001)
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)

# (filename, sha256, md5, size)
_MNIST = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                     "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                     "d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    "9fb629c4189551a2d022fa330f9573f3", 1648877),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    "ec29112dd5afa0611ce80d1b7f02629c", 4542),
}  # fmt: skip
_FASHION = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                     "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                     "25c81989df183df01b3e8a0aad5dffbe", 29515),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "bef4ecab320f06d8554ea6380940ec79", 4422102),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    "bb300cfdad3c16e7a12a480ee83cd310", 5148),
}  # fmt: skip


def _mirrored(table: dict, mirrors: tuple[str, ...]) -> dict[str, RemoteFile]:
    return {
        role: RemoteFile(name, tuple(m + name for m in mirrors), sha256, md5, size)
        for role, (name, sha256, md5, size) in table.items()
    }


REMOTE_FILES: dict[str, dict[str, RemoteFile]] = {
    "mnist": _mirrored(_MNIST, MNIST_MIRRORS),
    "fashion_mnist": _mirrored(_FASHION, FASHION_MIRRORS),
    "cifar10": {
        "archive": RemoteFile(
            "cifar-10-python.tar.gz",
            (CIFAR10_URL,),
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            md5="c58f30108f718f92721af3b95e74349a",
            size=170498071,
        )
    },
    "flowers": {
        # SHA-256 and size from TensorFlow Datasets' url_checksums/tf_flowers.txt.
        "archive": RemoteFile(
            "flower_photos.tgz",
            (FLOWERS_URL, "http://download.tensorflow.org/example_images/flower_photos.tgz"),
            sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
            size=228813984,
        )
    },
}

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")  # fmt: skip
# For the registry's metadata; the loader takes the names from the archive's batches.meta.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # fmt: skip
FLOWERS_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
FLOWERS_SIZE = (192, 192)  # lesson 003 trains on 192x192x3


def remote_files(dataset: str) -> dict[str, RemoteFile]:
    """The files of ``dataset`` (role -> RemoteFile), with ``$CNNLAB_DATA_MIRROR`` applied.

    Args:
        dataset: a key of :data:`REMOTE_FILES` (``mnist``, ``fashion_mnist``, ``cifar10``,
            ``flowers``).
    """
    files = REMOTE_FILES[dataset]
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return dict(files)
    if "://" not in base:  # a local folder
        base = Path(base).expanduser().resolve().as_uri()
    base = base.rstrip("/")
    return {role: replace(f, urls=(f"{base}/{dataset}/{f.filename}",)) for role, f in files.items()}


def _fetch_all(dataset: str, opts: LoadOptions) -> dict[str, Path]:
    directory = opts.home / "downloads" / dataset
    return {
        role: fetch(file, directory, download=opts.download, progress=opts.progress)
        for role, file in remote_files(dataset).items()
    }


def _idx_imageset(images_path: Path, labels_path: Path, classes: tuple, name: str) -> ImageSet:
    """An ImageSet from an IDX image file (N, H, W) and an IDX label file (N,)."""
    images = formats.read_idx(images_path)
    labels = formats.read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_path}: expected {len(images)} integer labels (one per image in "
            f"{images_path.name}), got {labels.dtype} of shape {labels.shape}"
        )
    if labels.size and not 0 <= labels.min() <= labels.max() < len(classes):
        raise DataError(
            f"{labels_path}: labels must lie in [0, {len(classes)}), got "
            f"[{labels.min()}, {labels.max()}]"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(images[:, None]))  # (N, H, W) -> (N, 1, H, W)
    return ImageSet(pixels, torch.from_numpy(labels.astype(np.int64)), list(classes), name)


def _cached_splits(opts: LoadOptions, dataset: str, sources, build) -> DatasetSplits:
    """Train and test, each from the decoded cache (keyed by ``sources(split)``) or ``build``."""
    splits = {}
    for split in ("train", "test"):
        key = {"dataset": dataset, "split": split, "source": file_fingerprint(sources(split))}
        splits[split] = cached_imageset(
            opts.home, f"{dataset}-{split}", key, lambda s=split: build(s), enabled=opts.cache
        )
    return DatasetSplits(train=splits["train"], test=splits["test"])


def _idx_loader(dataset: str, classes: tuple[str, ...]) -> Callable[[LoadOptions], DatasetSplits]:
    """A loader for an MNIST-like dataset: four IDX files, train and test."""

    def load(opts: LoadOptions) -> DatasetSplits:
        paths = _fetch_all(dataset, opts)

        def files(split: str) -> list[Path]:
            return [paths[f"{split}_images"], paths[f"{split}_labels"]]

        def build(split: str) -> ImageSet:
            return _idx_imageset(*files(split), classes, f"{dataset}/{split}")

        return _cached_splits(opts, dataset, files, build)

    load.__doc__ = f"Load {dataset} (train and test, 1x28x28) from its IDX files."
    return load


load_mnist = _idx_loader("mnist", MNIST_CLASSES)
load_fashion_mnist = _idx_loader("fashion_mnist", FASHION_CLASSES)


def load_cifar10(opts: LoadOptions) -> DatasetSplits:
    """Load CIFAR-10 (train 50,000 and test 10,000, 3x32x32) from the python pickle tarball.

    The archive is parsed at most once per call, and only when a split is not in the cache.
    """
    archive = _fetch_all("cifar10", opts)["archive"]
    parsed = functools.cache(lambda: formats.read_cifar10_archive(archive))

    def build(split: str) -> ImageSet:
        images, labels = parsed().splits[split]
        return ImageSet(
            torch.from_numpy(images), torch.from_numpy(labels), parsed().classes, f"cifar10/{split}"
        )

    return _cached_splits(opts, "cifar10", lambda split: [archive], build)


def load_flowers(opts: LoadOptions) -> DatasetSplits:
    """Load the 5-class flower photos (lesson 003), resized to 192x192 unless told otherwise.

    The archive is verified, extracted safely into ``<home>/datasets/flowers`` once, then read
    as a class-per-folder tree (``flower_photos/<class>/*.jpg``) by the image-folder loader.
    """
    archive = _fetch_all("flowers", opts)["archive"]
    dest = safe_extract(archive, opts.home / "datasets" / "flowers")
    root = dest / "flower_photos"
    if not root.is_dir():
        raise DataError(
            f"{archive}: expected a top-level folder flower_photos/ in the archive, found "
            f"{sorted(p.name for p in dest.iterdir() if not p.name.startswith('.'))}"
        )
    opts = replace(opts, image_size=opts.image_size or FLOWERS_SIZE)
    return load_folder_splits(root, opts, name="flowers")


for _info in (
    DatasetInfo("mnist", "MNIST handwritten digits (lesson 002): 60,000 train + 10,000 test, "
                "28x28 gray", (1, 28, 28), MNIST_CLASSES, MNIST_MIRRORS[0], load_mnist),
    DatasetInfo("fashion_mnist", "Fashion-MNIST clothing (lesson 001): 60,000 train + 10,000 "
                "test, 28x28 gray", (1, 28, 28), FASHION_CLASSES, FASHION_MIRRORS[0],
                load_fashion_mnist),
    DatasetInfo("cifar10", "CIFAR-10 objects (lesson 000): 50,000 train + 10,000 test, 32x32 "
                "RGB", (3, 32, 32), CIFAR10_CLASSES, CIFAR10_URL, load_cifar10),
    # The shape is the loader's default size; the photos themselves vary.
    DatasetInfo("flowers", "Flower photos, 5 classes (lesson 003): 3,670 JPEGs, resized to "
                "192x192 RGB", (3, *FLOWERS_SIZE), FLOWERS_CLASSES, FLOWERS_URL, load_flowers,
                splits=("train",)),
):  # fmt: skip
    register_dataset(_info)
