"""Training speed: cnnlab's engine against a minimal PyTorch loop and tf.keras, same data.

(a) ``engine``: TrainStep + train_one_epoch over a DeviceLoader, built as ``cnnlab train`` builds
    them (make_step with TrainConfig(optimizer="adam"), metric sums, per-step checks on CPU);
(b) ``plain``: zero_grad/forward/cross-entropy/backward/Adam step on slices of a randperm of the
    same uint8 tensor divided by 255, same model class and init seed;
(c) ``keras``: the lesson's Keras model with ``fit`` (``--keras-python``, run in that interpreter
    by ``benchmarks/keras_speed.py``; TensorFlow is never a cnnlab dependency).
(a) runs with ``cnnlab train``'s defaults: precision "auto" (bf16 autocast on CUDA and on CPUs
with AMX/AVX-512 bf16), channels_last (CUDA, bf16, fp32 on x86 CPUs), keep_host_memory (CPU,
glibc; process-wide, so every variant here gets it; ``--no-keep-host-memory`` for the old
allocator), pool_first (max pools before the ReLU in front of them; ``--no-pool-first``) and
fused Adam; "engine fp32" is (a) in fp32, "engine fp32 nchw" the same without
channels_last, "plain same" is (b) with (a)'s precision, memory format and fused Adam.
Models: fmnist_cnn (MNIST, batch 128), vgg6 (CIFAR-10, batch 32), squeezenet_flowers at
64x64 (5 classes, batch 64, lr 3e-3, flip + saturation as lesson 003). ``--compile`` adds
"engine compile" ((a) with torch.compile); ``--batch`` overrides the batch sizes (GPU runs).
Variants take turns, order rotated each repeat, so drift hits all alike.

Usage::

    .venv/bin/python benchmarks/train_speed.py --keras-python /tmp/tfvenv/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from subset import DATASETS, extract_train_subset
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model
from cnnlab.data import load_splits
from cnnlab.data.augment import LUMA, AugmentConfig
from cnnlab.data.imageset import ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.train.config import TrainConfig
from cnnlab.train.device import autocast
from cnnlab.train.display import Display
from cnnlab.train.distributed import DistEnv
from cnnlab.train.engine import EpochControl, train_one_epoch
from cnnlab.train.fit import resolve_hardware
from cnnlab.train.metrics import MetricSums
from cnnlab.train.session import make_step
from cnnlab.train.stop import StopFlag

# model: (archive, (C, H, W), batch, default image limit, default steps, default warm-up)
SETUPS = {
    "fmnist_cnn": ("mnist-png.tar.gz", (1, 28, 28), 128, 20000, 80, 10),
    "vgg6": ("cifar10-jpg.tar.gz", (3, 32, 32), 32, 10000, 12, 3),
    "squeezenet_flowers": ("cifar10-jpg.tar.gz", (3, 64, 64), 64, 5000, 20, 4),
}
# lesson 003's flowers recipe at 64x64: 5 classes (CIFAR-10's first five, upscaled: speed does
# not depend on the pixels), Adam lr 3e-3, random flip + saturation in [0, 2]
FLOWERS = {"num_classes": 5, "input_shape": "64x64x3"}
RECIPES = {"squeezenet_flowers": {"lr": 3e-3, "augment": AugmentConfig(True, saturation=(0, 2))}}


def build_model(name: str) -> torch.nn.Module:
    """The zoo model ``name`` at the benchmark's input shape and class count, seed 0."""
    torch.manual_seed(0)
    return create_model(name, **(FLOWERS if name == "squeezenet_flowers" else {}))


def load_data(name: str, limit: int | None, tmp: Path) -> tuple[ImageSet, str]:
    """The first ``limit`` train images (limit/10 per class) of the model's dataset, decoded."""
    archive, shape, _, default, _, _ = SETUPS[name]
    limit = limit or default
    root = extract_train_subset(archive, limit, tmp / name)  # own folder: vgg6 shares CIFAR
    if root is None:
        images = torch.randint(0, 256, (limit, *shape), dtype=torch.uint8)
        classes = 5 if name == "squeezenet_flowers" else 10
        labels = torch.randint(0, classes, (limit,))
        return ImageSet(images, labels, [str(i) for i in range(classes)], "random"), (
            f"RANDOM uint8 {shape} x {limit} ({DATASETS / archive} not found)"
        )
    data = load_splits(root, val_split=0.0, cache=False).train
    if name == "squeezenet_flowers":  # five classes, 32x32 -> 64x64
        keep = data.labels < 5
        big = F.interpolate(data.images[keep].float(), size=shape[1:], mode="bilinear")
        images = big.round().clamp(0, 255).to(torch.uint8)
        data = ImageSet(images, data.labels[keep], data.classes[:5], data.name)
        return data, f"{len(data)} train images of classes 0-4 of {archive}, upscaled to 64x64"
    return data, f"{len(data)} train images of {archive}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Engine:
    """(a): what ``cnnlab train`` runs for one epoch, cut to ``steps`` by its step budget.

    ``options`` are TrainConfig fields; "auto" precision and channels_last are resolved as
    ``fit`` resolves them (bf16 + channels_last on CUDA and on CPUs with AMX/AVX-512 bf16).
    """

    def __init__(
        self, name: str, data: ImageSet, device: torch.device, batch: int, **options
    ) -> None:
        recipe = RECIPES.get(name, {})
        options = {"lr": recipe.get("lr"), **options}
        cfg = resolve_hardware(TrainConfig(optimizer="adam", device=str(device), **options), device)
        self.settings = f"{cfg.precision}{', channels_last' if cfg.channels_last else ''}"
        self.settings += ", keep_host_memory" if cfg.keep_host_memory else ""
        self.settings += ", pool_first" if cfg.pool_first else ""
        self.settings += ", compile" if cfg.compile else ""
        self.precision, self.channels_last = cfg.precision, cfg.channels_last
        augment, cl = recipe.get("augment"), cfg.channels_last
        self.loader = DeviceLoader(
            data, batch, device, shuffle=True, seed=0, augment=augment, channels_last=cl
        )
        model = build_model(name)
        self.step = make_step(model, cfg.validate(), DistEnv(0, 1, 0, device), len(self.loader))
        self.check_every = 1 if device.type == "cpu" else cfg.nan_check_every  # as fit() does
        self.display = Display("lines", 1, print_fn=lambda text: None)  # as piped `cnnlab train`

    def run(self, steps: int) -> tuple[int, float]:
        device, update = self.step.device, self.display.update
        ctrl = EpochControl(self.check_every, StopFlag(), step_budget=steps, on_update=update)
        sync(device)
        start = time.perf_counter()
        sums, total = MetricSums(device, 10), len(self.loader)
        result = train_one_epoch(self.step, self.loader, sums, total_steps=total, control=ctrl)
        sync(device)
        return result.images, time.perf_counter() - start


class Plain:
    """(b): the minimal hand-written loop on the same uint8 tensor.

    Default: fp32, NCHW, ``torch.optim.Adam`` as a user writes it; ``like`` copies an Engine's
    precision, memory format, compile and fused Adam (the same arithmetic, without cnnlab).
    """

    def __init__(
        self,
        name: str,
        data: ImageSet,
        device: torch.device,
        batch: int,
        like: Engine | None = None,
    ) -> None:
        self.batch, self.device = batch, device
        self.precision = like.precision if like else "fp32"
        self.channels_last = like.channels_last if like else False
        self.images, self.labels = data.images.to(device), data.labels.to(device)
        self.augment = "augment" in RECIPES.get(name, {})
        model = build_model(name).to(device)
        model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        fused = {"fused": True} if like else {}
        lr = RECIPES.get(name, {}).get("lr", 1e-3)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, **fused)
        compiled = like is not None and "compile" in like.settings
        self.model = torch.compile(model) if compiled else model
        self.model.train()
        self.generator = torch.Generator().manual_seed(0)

    def run(self, steps: int) -> tuple[int, float]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        sync(self.device)
        start = time.perf_counter()
        perm = torch.randperm(len(self.labels), generator=self.generator).to(self.device)
        for i in range(steps):
            idx = perm[i * self.batch : (i + 1) * self.batch]
            x = self.images[idx].float() / 255
            x = flip_saturate(x, self.generator) if self.augment else x
            x = x.contiguous(memory_format=fmt)
            with autocast(self.device, self.precision):
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), self.labels[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        sync(self.device)
        return steps * self.batch, time.perf_counter() - start


def flip_saturate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random left-right flip and saturation factor in [0, 2] per image, as a user writes it."""
    n = len(x)
    flip = torch.rand(n, 1, 1, 1, generator=generator).to(x.device) < 0.5
    x = torch.where(flip, x.flip(3), x)
    factor = (torch.rand(n, 1, 1, 1, generator=generator) * 2).to(x.device)
    gray = x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1] + x[:, 2:3] * LUMA[2]
    return ((x - gray) * factor + gray).clamp(0, 1)


class Keras:
    """(c): ``benchmarks/keras_speed.py`` in another interpreter, driven over a pipe."""

    def __init__(
        self, python: str, name: str, data: ImageSet, tmp: Path, threads: int, batch: int
    ) -> None:
        npz = tmp / f"{name}.npz"
        np.savez(npz, x=data.images.permute(0, 2, 3, 1).numpy(), y=data.labels.numpy())
        script = Path(__file__).with_name("keras_speed.py")
        cmd = [python, str(script), "--data", str(npz), "--model", name, "--threads", str(threads)]
        lr = RECIPES.get(name, {}).get("lr", 1e-3)
        cmd += ["--batch", str(batch), "--lr", str(lr)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"keras_speed.py did not start (exit {self.proc.wait()})")
        self.params, self.versions = int(ready[1]), " ".join(ready[2:])

    def run(self, steps: int) -> tuple[int, float]:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        images, seconds = self.proc.stdout.readline().split()
        return int(images), float(seconds)

    def close(self) -> None:
        self.proc.communicate()  # closes its stdin: it ends


def forward_flops(name: str) -> int:
    """Forward FLOPs per image: 2 x MACs of conv/matmul ops (FlopCounterMode, batch of 2)."""
    model, (_, shape, *_) = build_model(name), SETUPS[name]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(2, *shape))
    return counter.get_total_flops() // 2


def matmul_gflops(device: torch.device, n: int = 2048) -> float:
    """Median GFLOP/s of an ``n`` x ``n`` fp32 matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for _ in range(7):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times[2:]) / 1e9


def cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """(busy CPU ticks of the whole machine, CPU ticks of ``pids``), from /proc (Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        own = sum(sum(map(int, Path(f"/proc/{p}/stat").read_text().split()[13:15])) for p in pids)
    except OSError:
        return 0, 0
    return sum(fields) - fields[3] - fields[4], own  # all but idle and iowait


def measure(variants: dict, steps: int, warmup: int, repeats: int) -> dict[str, list[float]]:
    """images/s of each variant per repeat; variants take turns, order rotated per repeat.

    Also prints how much CPU other processes took meanwhile (a shared machine skews figures).
    """
    for variant in variants.values():
        variant.run(warmup)
    names, rates = list(variants), {name: [] for name in variants}
    pids = [os.getpid()] + [v.proc.pid for v in variants.values() if isinstance(v, Keras)]
    busy, own, start = *cpu_ticks(pids), time.perf_counter()
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            images, seconds = variants[name].run(steps)
            rates[name].append(images / seconds)
    busy2, own2 = cpu_ticks(pids)
    other = (busy2 - busy - (own2 - own)) / os.sysconf("SC_CLK_TCK")
    print(f"other processes used {other / (time.perf_counter() - start):.2f} cores meanwhile")
    return rates


def report(name: str, rates: dict[str, list[float]], flops: int, peak: float) -> None:
    """The side-by-side table (Markdown) of one model."""
    print(f"\n{name}: forward {flops / 1e6:.1f} MFLOP/image; training counted as 3x forward")
    print("| variant | median img/s | per repeat | GFLOP/s | % of matmul |")
    print("|---|---:|---|---:|---:|")
    for variant, values in rates.items():
        med = statistics.median(values)
        each = ", ".join(f"{v:,.0f}" for v in values)
        gflops = 3 * flops * med / 1e9
        print(f"| {variant} | {med:,.0f} | {each} | {gflops:.1f} | {100 * gflops / peak:.0f}% |")
    pairs = (("engine", "plain same"), ("engine", "plain"), ("engine", "keras"))
    pairs += (("engine fp32", "plain"), ("engine fp32", "keras"), ("engine fp32 nchw", "keras"))
    pairs += (("engine fp32", "engine fp32 nchw"), ("engine compile", "engine"))
    for base, other in pairs:
        if base in rates and other in rates:
            ratios = [a / b for a, b in zip(rates[base], rates[other], strict=True)]
            each = ", ".join(f"{r:.3f}" for r in ratios)
            print(f"| **{base} / {other}** | **{statistics.median(ratios):.3f}x** | {each} | | |")


def bench_model(name: str, args: argparse.Namespace, device: torch.device, tmp: Path) -> dict:
    """Load the data, build the variants, measure them; returns their images/s per repeat."""
    _, _, batch, _, steps, warmup = SETUPS[name]
    batch = args.batch.get(name, batch)
    data, source = load_data(name, args.limit, tmp)
    timed = max(args.steps or steps, args.warmup or warmup)
    if timed * batch > len(data):  # the plain loop and Keras would time empty or repeated data
        raise SystemExit(
            f"{name}: {timed} steps of {batch} need {timed * batch:,} images, {len(data):,} "
            f"loaded: raise --limit or lower --steps"
        )
    print(f"\n{name}: batch {batch}, Adam, data: {source}")
    keep = {"keep_host_memory": False} if args.no_keep_host_memory else {}
    keep.update({"pool_first": False} if args.no_pool_first else {})
    engine = Engine(name, data, device, batch, **keep)
    variants = {"engine": engine, "plain same": Plain(name, data, device, batch, like=engine)}
    if args.compile:
        variants["engine compile"] = Engine(name, data, device, batch, compile=True, **keep)
    if engine.precision != "fp32":
        variants["engine fp32"] = Engine(name, data, device, batch, precision="fp32", **keep)
    fp32 = variants.get("engine fp32", engine)
    if fp32.channels_last and not args.no_nchw:
        nchw = Engine(name, data, device, batch, precision="fp32", channels_last=False, **keep)
        variants["engine fp32 nchw"] = nchw
    variants["plain"] = Plain(name, data, device, batch)
    print(f"engine: {engine.settings}; plain same: the same settings and fused Adam; "
          "plain: fp32, NCHW, default Adam")  # fmt: skip
    if args.keras_python:
        keras = Keras(args.keras_python, name, data, tmp, args.threads, batch)
        variants["keras"] = keras
        ours = sum(p.numel() for p in variants["plain"].model.parameters())
        same = "equal" if keras.params == ours else "DIFFERENT"
        print(f"keras ({keras.versions}): {keras.params:,} parameters, ours {ours:,}: {same}")
    try:
        rates = measure(variants, args.steps or steps, args.warmup or warmup, args.repeats)
    finally:
        if "keras" in variants:
            variants["keras"].close()
    return rates


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--models", default=",".join(SETUPS), help=f"comma list of: {', '.join(SETUPS)}")
    add("--steps", type=int, default=None, help="timed steps per repeat (default 80 / 12 / 20)")
    add("--warmup", type=int, default=None, help="untimed steps first (default 10 / 3 / 4)")
    add("--repeats", type=int, default=5)
    add("--limit", type=int, default=None, help="images to load (default 20000 / 10000 / 5000)")
    add("--device", default="cpu")
    add("--threads", type=int, default=len(os.sched_getaffinity(0)))
    add("--compile", action="store_true", help="add the engine with torch.compile")
    add("--batch", default="", help="batch sizes, e.g. fmnist_cnn=512,vgg6=256 (GPU runs)")
    add("--keras-python", default=None, help="a Python with TensorFlow: adds (c)")
    add("--no-nchw", action="store_true", help="leave out the fp32 NCHW engine variant")
    add("--no-keep-host-memory", action="store_true",
        help="engines as `cnnlab train --no-keep-host-memory` (the setting is process-wide: "
        "with it on, every variant of the process reuses freed memory)")  # fmt: skip
    add("--no-pool-first", action="store_true",
        help="engines as TrainConfig(pool_first=False): each ReLU before its max pool")  # fmt: skip
    args = parser.parse_args()
    args.models = args.models.split(",")
    pairs = [item.split("=") for item in args.batch.split(",") if item]
    if any(len(pair) != 2 or pair[0] not in SETUPS for pair in pairs):
        parser.error(f"--batch {args.batch!r}: expected MODEL=N,... with models {sorted(SETUPS)}")
    args.batch = {model: int(value) for model, value in pairs}
    unknown = sorted(set(args.models) - set(SETUPS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(SETUPS)}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_gflops(device)
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, 2048^3 fp32 matmul: "
          f"{peak:.1f} GFLOP/s, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: bench_model(name, args, device, Path(tmp)) for name in args.models}
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (other processes skew figures)")
    for name, rates in results.items():
        report(name, rates, forward_flops(name), peak)


if __name__ == "__main__":
    main()
