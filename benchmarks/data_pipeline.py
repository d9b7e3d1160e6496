"""Data pipeline throughput, side by side in one run on the same CIFAR-10 JPEG folder.

(a) first decode of the JPEG folder into the in-memory uint8 tensor (cache off), and the second
    run that loads the decoded cache;
(b) an epoch of augmented, normalized batches from the in-memory device path;
(c) an epoch of the same batches streamed from tar shards by DataLoader workers;
(d) the reference: torchvision ``ImageFolder`` + ``DataLoader`` with the equivalent transforms
    (RandomCrop(32, padding=4, reflect), RandomHorizontalFlip, ToTensor, Normalize);
(e) shards of large photos (``--large`` images upscaled to 384x384 JPEGs) streamed at 192x192
    and 64x64, with a full decode + resize against PIL's draft (DCT-scaled) decode.

Each epoch figure is the median of ``--repeats`` epochs (images/s). Usage::

    .venv/bin/python benchmarks/data_pipeline.py                    # ../shared/datasets CIFAR-10
    .venv/bin/python benchmarks/data_pipeline.py --limit 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

from cnnlab.data import LoadOptions, load_splits
from cnnlab.data.augment import AugmentConfig
from cnnlab.data.memory import DeviceLoader
from cnnlab.data.normalize import Normalizer

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"
MEAN, STD = (0.4913, 0.4821, 0.4465), (0.247, 0.243, 0.261)


def extract(archive: Path, into: Path, limit: int | None) -> Path:
    """Extract the train split (first ``limit`` files per class when given) of the archive."""
    per_class: dict[str, int] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] != "train":
                continue
            if limit is not None:
                if per_class.get(parts[2], 0) >= limit // 10:
                    continue
                per_class[parts[2]] = per_class.get(parts[2], 0) + 1
            tar.extract(member, into, filter="data")
    return into / "cifar10" / "train"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def epoch_rate(loader, repeats: int) -> float:
    """Median images/s over ``repeats`` full epochs (each batch touched so it is materialized)."""
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        for x, y in loader:
            count += int(y.shape[0])
            x.sum()  # force the work (and any lazy device op) to happen
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def torchvision_loader(folder: Path, batch_size: int, workers: int):
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    return torch.utils.data.DataLoader(
        ImageFolder(str(folder), transform=transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def shard_loader(folder: Path, out: Path, batch_size: int, workers: int, augment, normalizer):
    from cnnlab.data.shards import ShardLoader, pack_shards

    pack_seconds, _ = timed(lambda: pack_shards(folder, out, shards=16, val_split=0.0))

    def make():
        return ShardLoader(
            out,
            "train",
            batch_size,
            "cpu",
            shuffle=True,
            augment=augment,
            normalizer=normalizer,
            num_workers=workers,
        )

    verify_seconds, loader = timed(make)  # the first loader verifies every shard
    return pack_seconds, verify_seconds, loader


def upscaled_folder(folder: Path, out: Path, count: int, side: int) -> Path:
    """The first ``count`` images of ``folder`` as ``side`` x ``side`` JPEGs (quality 90): large
    photos, for decode-time downscaling."""
    from PIL import Image

    for path in sorted(folder.rglob("*.jpg"))[:count]:
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.resize((side, side), Image.BICUBIC).save(target, quality=90)
    return out


def draft_rows(folder: Path, tmp: Path, count: int, batch_size: int, workers: int) -> list:
    """(e) streaming large JPEGs at a smaller size, with and without PIL draft mode."""
    from cnnlab.data import shards_read
    from cnnlab.data.shards import ShardLoader, pack_shards

    large = upscaled_folder(folder, tmp / "large", count, 384)
    pack_shards(large, tmp / "large-pack", shards=4, val_split=0.0)
    real, rows = shards_read._draft_decode, []
    for size in ((192, 192), (64, 64)):
        rates = {}
        for mode in ("full decode", "draft decode"):
            if mode.startswith("full"):  # forked workers inherit the switch
                shards_read._draft_decode = lambda *args: None
            loader = ShardLoader(
                tmp / "large-pack",
                "train",
                batch_size,
                shuffle=True,
                image_size=size,
                num_workers=workers,
            )
            rates[mode] = epoch_rate(loader, 2)
            loader.close()
            shards_read._draft_decode = real
            rows.append((f"(e) 384px JPEGs at {size[0]}px, {mode}", rates[mode], ""))
        ratio = rates["draft decode"] / rates["full decode"]
        rows.append((f"ratio draft / full at {size[0]}px", ratio, ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--limit", type=int, default=None, help="train images to use (all: 50k)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: c,d,e")
    parser.add_argument("--large", type=int, default=2000, help="images for (e)")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"{args.archive} not found (see ../shared/datasets/README.md)")
    warnings.simplefilter("ignore", DeprecationWarning)
    torch.manual_seed(0)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = extract(args.archive, tmp / "data", args.limit)
        n = sum(1 for _ in folder.rglob("*.jpg"))
        print(f"CIFAR-10 JPEG train folder: {n:,} images; {cores} cores; torch {torch.__version__}")
        opts = LoadOptions(root=tmp / "home", val_split=0.0, workers=args.workers)
        t_decode, splits = timed(lambda: load_splits(folder, opts))
        t_cached, _ = timed(lambda: load_splits(folder, opts))
        train = splits.train
        rows = [("(a) first decode, JPEG -> uint8 tensor", n / t_decode, f"{t_decode:.2f} s")]
        per_core = n / t_decode / args.workers if args.workers else n / t_decode
        rows.append(("    per core", per_core, ""))
        rows.append(("    second run (decoded cache)", n / t_cached, f"{t_cached:.2f} s"))
        augment = AugmentConfig(flip=True, pad_crop=4)
        normalizer = Normalizer("standardize", MEAN, STD)
        memory = DeviceLoader(
            train, args.batch_size, "cpu", shuffle=True, augment=augment, normalizer=normalizer
        )
        rate_b = epoch_rate(memory, args.repeats)
        rows.append(("(b) in-memory epoch, flip+crop+normalize", rate_b, ""))
        skip = set(args.skip.split(","))
        if "c" not in skip:
            t_pack, t_verify, shards = shard_loader(
                folder, tmp / "shards", args.batch_size, args.workers, augment, normalizer
            )
            rows.append(("    pack 16 shards (original JPEG bytes)", n / t_pack, f"{t_pack:.2f} s"))
            rows.append(("    verify them (first loader only)", n / t_verify, f"{t_verify:.2f} s"))
            rows.append(("(c) shard streaming epoch", epoch_rate(shards, args.repeats), ""))
        if "e" not in skip:
            rows += draft_rows(folder, tmp, args.large, args.batch_size, args.workers)
        if "d" not in skip:
            reference = torchvision_loader(folder, args.batch_size, args.workers)
            rate_d = epoch_rate(reference, args.repeats)
            rows.append(("(d) torchvision ImageFolder + DataLoader", rate_d, ""))
            rows.append(("ratio (b) / (d)", rate_b / rate_d, "target >= 20x"))
    print(f"{'':44s} {'images/s':>12s}")
    for label, value, note in rows:
        unit = "x" if label.startswith("ratio") else ""
        print(f"{label:44s} {value:12,.1f}{unit} {note}")


if __name__ == "__main__":
    main()
