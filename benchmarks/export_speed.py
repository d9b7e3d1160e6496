"""Inference latency of an exported model: onnxruntime and TorchScript against PyTorch eager.

For each model (random weights; latency does not depend on them) at its zoo input size, the
same uint8 batch goes through (a) PyTorch eager: the run's normalizer, then the model, under
``torch.inference_mode``; (b) the ONNX file from ``cnnlab.export`` in onnxruntime (CPU
provider); (c) the TorchScript file. Each figure is the median of ``--repeats`` timed calls
after ``--warmup`` untimed ones, in milliseconds per batch. Usage::

    .venv/bin/python benchmarks/export_speed.py                          # lenet5, vgg6
    .venv/bin/python benchmarks/export_speed.py --models lenet5 --batch 1 --repeats 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cnnlab.build_record import record_of
from cnnlab.data.normalize import Normalizer
from cnnlab.export import export_run, load_exported
from cnnlab.models import build
from cnnlab.train.history import History
from cnnlab.train.loading import Run


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench(name: str, batch: int, repeats: int, warmup: int, folder: Path) -> dict[str, float]:
    """ms per batch of ``name`` in eager, onnxruntime and TorchScript."""
    model = build(name).eval()
    channels, height, width = record_of(model).input_shape
    normalizer = Normalizer("scale")
    shape = (channels, height, width)
    classes = [str(i) for i in range(10)]
    run = Run(folder, model, {"model": {"name": name}}, classes, shape, normalizer, History())
    pixels = torch.randint(0, 256, (batch, channels, height, width), dtype=torch.uint8)
    out = {}
    with torch.inference_mode():
        out["eager"] = median_ms(lambda: model(normalizer(pixels)), repeats, warmup)
    array = pixels.numpy()
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        path = export_run(run, fmt, folder / f"{name}{suffix}", parity_images=0).path
        exported = load_exported(path)
        out[fmt] = median_ms(lambda e=exported: e.logits(array), repeats, warmup)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet5,vgg6")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'model':<10} {'eager ms':>10} {'onnxruntime ms':>15} {'torchscript ms':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            r = bench(name, args.batch, args.repeats, args.warmup, Path(tmp))
            print(f"{name:<10} {r['eager']:>10.2f} {r['onnx']:>15.2f} {r['torchscript']:>15.2f}")


if __name__ == "__main__":
    main()
