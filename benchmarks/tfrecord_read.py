"""Reading the same JPEGs from TFRecord files and from a class folder (issue 17, part 3).

Takes ``--images`` CIFAR-10 training JPEGs from ``../shared/datasets/cifar10-jpg.tar.gz``,
writes their bytes unchanged into ``--files`` TFRecord files in lesson 003's layout (``image``,
``class``, ``label``; CRCs as TensorFlow writes them, with cnnlab's own reader pieces: no
TensorFlow needed), then times, as medians of ``--repeats``:

- read only: every file's bytes from the folder, against every record read, CRC-checked and
  parsed (``read_tfrecords``);
- the whole load to the uint8 tensor with the decoded cache off (``load_splits``), in this
  process and with 2 decode workers;
- the same TFRecord files gzip-compressed (as ``TFRecordOptions(compression_type="GZIP")``
  writes them), read and loaded.

Usage::

    .venv/bin/python benchmarks/tfrecord_read.py [--images 5000] [--files 4] [--repeats 3]
        [--datasets DIR]   # default ../shared/datasets
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import statistics
import struct
import tempfile
import time
from pathlib import Path

import subset

from cnnlab.data import load_splits
from cnnlab.data.folder import scan_folder
from cnnlab.data.tfrecord import read_tfrecords, tfrecord_files
from cnnlab.data.tfrecord_read import example_class, masked_crc


def write_tfrecords(folder: Path, out: Path, files: int) -> list[Path]:
    """The folder's JPEG bytes as ``files`` TFRecord files (records dealt round-robin)."""
    layout = scan_folder(folder)
    paths = [out / f"train-{i:02d}.tfrec" for i in range(files)]
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(p, "wb")) for p in paths]
        for i, (path, label) in enumerate(
            zip(layout.splits["train"].files, layout.splits["train"].labels, strict=True)
        ):
            example = example_class()()
            feature = example.features.feature
            feature["image"].bytes_list.value.append(Path(path).read_bytes())
            feature["class"].int64_list.value.append(label)
            feature["label"].bytes_list.value.append(layout.classes[label].encode())
            data = example.SerializeToString()
            length = struct.pack("<Q", len(data))
            handle = handles[i % files]
            handle.write(length + struct.pack("<I", masked_crc(length)))
            handle.write(data + struct.pack("<I", masked_crc(data)))
    return paths


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_folder_bytes(folder: Path) -> int:
    return sum(len(Path(f).read_bytes()) for f in scan_folder(folder).splits["train"].files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", default=str(subset.DATASETS), help="../shared/datasets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subset.DATASETS = Path(args.datasets)
        folder = subset.extract_train_subset("cifar10-jpg.tar.gz", args.images, tmp / "jpg")
        if folder is None:
            raise SystemExit("cifar10-jpg.tar.gz not found (see ../shared/datasets/README.md)")
        (tmp / "tfrec").mkdir()
        (tmp / "gz").mkdir()
        for path in write_tfrecords(folder, tmp / "tfrec", args.files):
            (tmp / "gz" / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes(), 6))
        glob, gz = str(tmp / "tfrec" / "*.tfrec"), str(tmp / "gz" / "*.tfrec.gz")
        n = len(scan_folder(folder).splits["train"].files)
        rows = [
            ("read bytes: folder (open + read per file)", lambda: read_folder_bytes(folder)),
            ("read bytes: TFRecord (CRC + parse)", lambda: read_tfrecords(tfrecord_files(glob))),
            ("read bytes: TFRecord GZIP (inflate + CRC + parse)", lambda: read_tfrecords(
                tfrecord_files(gz))),
        ]  # fmt: skip
        for workers in (0, 2):
            for name, source in (("folder", folder), ("TFRecord", glob), ("TFRecord GZIP", gz)):
                rows.append(
                    (
                        f"load to uint8 tensor: {name}, {workers} workers",
                        lambda s=source, w=workers: load_splits(
                            s, cache=False, val_split=0.0, workers=w, root=str(tmp / "home")
                        ),
                    )
                )
        print(f"{n} CIFAR-10 JPEGs, {args.files} TFRecord files, medians of {args.repeats}")
        print("| path | seconds | images/s |\n|---|---:|---:|")
        for label, fn in rows:
            fn()  # warm: imports, page cache
            seconds = median_time(fn, args.repeats)
            print(f"| {label} | {seconds:.3f} | {n / seconds:,.0f} |")


if __name__ == "__main__":
    main()
