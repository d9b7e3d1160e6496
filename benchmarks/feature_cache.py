"""Stage 1 of fine-tuning with and without the feature cache: seconds per head epoch.

Lesson 004's workflow: the VGG16 conv base (random torchvision-init weights written to a file,
as offline there are no ImageNet weights; speed does not depend on the values) frozen at
32x32, the flatten-512-dropout-10 head, on CIFAR-10 images from ``../shared/datasets`` (the
bundled digits, upscaled to 32x32 RGB, when that is absent). Prints the median epoch time of
each path, the one-time cost of computing the features, and the ratio.

Usage::

    .venv/bin/python benchmarks/feature_cache.py [--images 5000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from subset import extract_train_subset

from cnnlab.data import DataConfig
from cnnlab.train import TrainConfig
from cnnlab.transfer import FinetuneConfig, finetune


def cifar_folder(tmp: Path, images: int) -> str:
    """The first ``images`` CIFAR-10 train images (images/10 per class) as a folder."""
    root = extract_train_subset("cifar10-jpg.tar.gz", images, tmp)
    return "digits" if root is None else str(root)


def stage1(data: str, weights: Path, cache: str, epochs: int, run: Path) -> tuple[list, float]:
    """(epoch seconds, wall seconds of the whole call) of a stage-1-only fine-tuning."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = finetune(
            "vgg16",
            DataConfig(data, batch_size=32),
            TrainConfig(run_dir=str(run), progress="none", device="cpu"),
            FinetuneConfig(
                weights=str(weights),
                image_size="32x32",
                head="flatten",
                hidden=(512,),
                dropout=0.5,
                freeze_epochs=epochs,
                epochs=0,
                feature_cache=cache,
            ),
        )
    seconds = [row["time_s"] for row in result.stages["1-head"].epochs]
    return seconds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = cifar_folder(tmp, args.images)
        torch.manual_seed(0)
        torch.save(torchvision.models.vgg16().state_dict(), tmp / "vgg16.pth")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data: {data}")
        rows = {}
        for cache in ("off", "on"):
            rows[cache] = stage1(data, tmp / "vgg16.pth", cache, args.epochs, tmp / cache)
    (slow, slow_wall), (fast, fast_wall) = rows["off"], rows["on"]
    cache_cost = fast_wall - sum(fast)  # the rest of the call (data, features, final eval)
    print("| stage 1 (frozen VGG16 base + head) | median s/epoch | epochs | whole call s |")
    print("|---|---:|---|---:|")
    print(f"| backbone every step | {statistics.median(slow):.3f} | {slow} | {slow_wall:.1f} |")
    print(f"| cached features | {statistics.median(fast):.4f} | {fast} | {fast_wall:.1f} |")
    ratio = statistics.median(slow) / statistics.median(fast)
    print(f"| **per-epoch speed-up** | **{ratio:.0f}x** | | |")
    print(f"outside the epochs in the cached call (load, features once, test): {cache_cost:.1f} s")


if __name__ == "__main__":
    main()
