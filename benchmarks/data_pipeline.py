"""Data pipeline throughput, side by side in one run on the same CIFAR-10 JPEG folder.

(a) first decode of the JPEG folder into the in-memory uint8 tensor (cache off), and the second
    run that loads the decoded cache;
(b) an epoch of augmented, normalized batches from the in-memory device path (``--device``:
    on a GPU the whole set and the augmentation stay resident there);
(c) an epoch of the same batches streamed from tar shards by DataLoader workers;
(d) the reference: torchvision ``ImageFolder`` + ``DataLoader`` with the equivalent transforms
    (RandomCrop(32, padding=4, reflect), RandomHorizontalFlip, ToTensor, Normalize);
(e) shards of large photos (``--large`` images upscaled to 384x384 JPEGs) streamed at 192x192
    and 64x64, with a full decode + resize against PIL's draft (DCT-scaled) decode;
(f) lesson 003's run: squeezenet_flowers trained at 192x192 (Adam 3e-3, flip + saturation,
    batch 32, ``cnnlab train``'s step and default precision) on ``--flowers`` flower-sized
    photos (CIFAR-10 JPEGs upscaled to 320x240), in memory against streamed from shards of
    the original JPEGs and from shards packed at 192x192 (images/s of training, epochs
    interleaved, median of ``--repeats``).

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
from subset import DATASETS

from cnnlab.data import LoadOptions, load_splits
from cnnlab.data.augment import AugmentConfig
from cnnlab.data.memory import DeviceLoader
from cnnlab.data.normalize import Normalizer

ARCHIVE = DATASETS / "cifar10-jpg.tar.gz"
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
        if torch.cuda.is_available():
            torch.cuda.synchronize()
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


def upscaled_folder(folder: Path, out: Path, count: int, side: int | tuple[int, int]) -> Path:
    """The first ``count`` images of ``folder`` as ``side`` x ``side`` (or (W, H)) JPEGs
    (quality 90): large photos, for decode-time downscaling and flower-sized streaming."""
    from PIL import Image

    for path in sorted(folder.rglob("*.jpg"))[:count]:
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            size = (side, side) if isinstance(side, int) else side
            image.resize(size, Image.BICUBIC).save(target, quality=90)
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


def train_rate(loader, repeats: int) -> list[float]:
    """Training images/s of whole epochs over ``loader``: squeezenet_flowers at the loader's
    image size, built and stepped as ``cnnlab train`` does (precision "auto", fused Adam)."""
    from cnnlab import create_model
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.device import resolve_hardware
    from cnnlab.train.distributed import DistEnv
    from cnnlab.train.session import make_step

    cpu = torch.device("cpu")
    cfg = resolve_hardware(TrainConfig(optimizer="adam", lr=3e-3, device="cpu"), cpu)
    torch.manual_seed(0)
    model = create_model("squeezenet_flowers", num_classes=10, input_shape="192x192x3")
    step = make_step(model, cfg.validate(), DistEnv(0, 1, 0, cpu), len(loader))
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        for x, y in loader:
            step(x, y)
            count += int(y.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def flowers_rows(folder: Path, tmp: Path, count: int, workers: int, repeats: int) -> list:
    """(f) lesson 003's training at 192x192: in memory against streamed from shards."""
    from cnnlab.data.shards import ShardLoader, pack_shards
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.device import resolve_hardware

    photos = upscaled_folder(folder, tmp / "photos", count, (320, 240))
    pack_shards(photos, tmp / "photos-pack", shards=4, val_split=0.0)
    t_pack, _ = timed(
        lambda: pack_shards(photos, tmp / "photos-192", 4, val_split=0.0, image_size=(192, 192))
    )
    cl = resolve_hardware(TrainConfig(device="cpu"), torch.device("cpu")).channels_last
    augment, size = AugmentConfig(flip=True, saturation=(0.0, 2.0)), (192, 192)
    opts = LoadOptions(root=tmp / "home-photos", val_split=0.0, workers=workers, image_size=size)
    train = load_splits(photos, opts).train
    loaders = {
        "in memory": DeviceLoader(
            train, 32, "cpu", shuffle=True, augment=augment, channels_last=cl
        ),
    }
    for name, pack, resize in (
        ("original JPEGs", "photos-pack", size),
        ("packed at 192", "photos-192", None),
    ):
        loaders[f"shards, {name}"] = ShardLoader(
            tmp / pack,
            "train",
            32,
            shuffle=True,
            augment=augment,
            channels_last=cl,
            num_workers=workers,
            image_size=resize,
        )
    decode = epoch_rate(loaders["shards, original JPEGs"], 1)
    train_rate(loaders["in memory"], 1)  # warm-up: oneDNN primitives, allocator
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for r in range(repeats):  # interleaved, order rotated
        names = list(loaders)[r % len(loaders) :] + list(loaders)[: r % len(loaders)]
        for name in names:
            rates[name] += train_rate(loaders[name], 1)
    rows = [("    320x240 photos, stream + decode only (no training)", decode, "")]
    rows.append(("    pack them at 192x192", count / t_pack, f"{t_pack:.2f} s"))
    for name, values in rates.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        rows.append((f"(f) train 192px from {name}", statistics.median(values), each))
        if name != "in memory":
            ratios = [a / b for a, b in zip(values, rates["in memory"], strict=True)]
            rows.append((f"ratio {name} / in memory", statistics.median(ratios), "target >= 0.8x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--limit", type=int, default=None, help="train images to use (all: 50k)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu", help="where (b) keeps the data: cpu, cuda")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: c,d,e,f")
    parser.add_argument("--large", type=int, default=2000, help="images for (e)")
    parser.add_argument("--flowers", type=int, default=480, help="images for (f)")
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
            train,
            args.batch_size,
            args.device,
            shuffle=True,
            augment=augment,
            normalizer=normalizer,
        )
        rate_b = epoch_rate(memory, args.repeats)
        rows.append((f"(b) in-memory epoch on {args.device}, flip+crop+norm", rate_b, ""))
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
        if "f" not in skip:
            rows += flowers_rows(folder, tmp, args.flowers, args.workers, args.repeats)
        if "d" not in skip:
            reference = torchvision_loader(folder, args.batch_size, args.workers)
            rate_d = epoch_rate(reference, args.repeats)
            rows.append(("(d) torchvision ImageFolder + DataLoader", rate_d, ""))
            rows.append(("ratio (b) / (d)", rate_b / rate_d, "target >= 20x"))
    print(f"{'':44s} {'images/s':>12s}")
    for label, value, note in rows:
        unit = "x" if label.startswith("ratio") else ""
        text = f"{value:12,.2f}" if unit else f"{value:12,.1f}"
        print(f"{label:44s} {text}{unit} {note}")


if __name__ == "__main__":
    main()
