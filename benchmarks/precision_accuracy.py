"""Accuracy is not traded for speed: seeded runs in the default settings against plain fp32.

"default" is ``fit`` as ``cnnlab train`` runs it (precision auto = bf16 autocast on CPUs with
AMX/AVX-512 bf16, channels_last, pool_first, fused Adam); "plain fp32" turns the speed settings
off (fp32, NCHW, pool_first=False). Models and data (real data from ../shared/datasets):
lenet5 and fmnist_cnn on MNIST (full train/test), squeezenet_flowers on CIFAR-10's first five
classes at 32x32 (the five flower classes' stand-in, as train_speed.py's). Prints test accuracy
per seed, the means, and default - plain in points (issue 15's bar: within 0.5).

Usage::

    CNNLAB_BENCH_DATASETS=../shared/datasets .venv/bin/python benchmarks/precision_accuracy.py \\
        [--seeds 0,1,2] [--models lenet5,fmnist_cnn,squeezenet_flowers]
"""

from __future__ import annotations

import argparse
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from subset import DATASETS

from cnnlab.data import DataConfig
from cnnlab.train import TrainConfig, fit

# model: (archive, classes kept (None: all), epochs, batch, lr)
SETUPS = {
    "lenet5": ("mnist-png.tar.gz", None, 2, 128, 1e-3),
    "fmnist_cnn": ("mnist-png.tar.gz", None, 2, 128, 1e-3),
    "squeezenet_flowers": ("cifar10-jpg.tar.gz", 5, 3, 64, 3e-3),
}
VARIANTS = {
    "default": {},
    "plain fp32": {"precision": "fp32", "channels_last": False, "pool_first": False},
}


def extract(archive: str, classes: int | None, into: Path) -> Path:
    """``<name>/{train,test}/<class>/...`` of ``archive`` (the first ``classes`` classes)."""
    keep: set[str] | None = None
    with tarfile.open(DATASETS / archive) as tar:
        members = [m for m in tar if m.isfile() and len(m.name.split("/")) == 4]
        if classes is not None:
            keep = set(sorted({m.name.split("/")[2] for m in members})[:classes])
        chosen = [m for m in members if keep is None or m.name.split("/")[2] in keep]
        tar.extractall(into, members=chosen, filter="data")
    return into / archive.split("-")[0]


def run(name: str, root: Path, variant: str, seed: int, out: Path) -> tuple[float, float]:
    """Test accuracy (%) and training seconds of one seeded run."""
    _, _, epochs, batch, lr = SETUPS[name]
    data = DataConfig(source=str(root), batch_size=batch, seed=seed, val_split=0.1)
    cfg = TrainConfig(
        epochs=epochs, optimizer="adam", lr=lr, seed=seed, progress="none", device="cpu",
        run_dir=str(out / f"{name}-{variant.replace(' ', '_')}-{seed}"), **VARIANTS[variant],
    )  # fmt: skip
    start = time.perf_counter()
    history = fit(name, data, cfg)
    return 100 * history.final_metrics["test"]["accuracy"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=",".join(SETUPS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        roots: dict[str, Path] = {}
        print("| model | variant | test accuracy per seed (%) | mean | train s (median) |")
        print("|---|---|---|---:|---:|")
        means: dict[tuple[str, str], float] = {}
        for name in args.models.split(","):
            archive, classes = SETUPS[name][:2]
            if archive not in roots:
                roots[archive] = extract(archive, classes, Path(tmp) / archive)
            for variant in VARIANTS:
                results = [run(name, roots[archive], variant, s, Path(tmp)) for s in seeds]
                accs = [a for a, _ in results]
                means[name, variant] = statistics.mean(accs)
                each = ", ".join(f"{a:.2f}" for a in accs)
                secs = statistics.median(t for _, t in results)
                print(f"| {name} | {variant} | {each} | {means[name, variant]:.2f} | {secs:.0f} |")
        for name in args.models.split(","):
            diff = means[name, "default"] - means[name, "plain fp32"]
            print(f"{name}: default - plain fp32 = {diff:+.2f} points (mean of {len(seeds)} seeds)")


if __name__ == "__main__":
    main()
