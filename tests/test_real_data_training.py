"""Lesson reproductions (slow): real MNIST and CIFAR-10 from ../shared/datasets, trained by `fit`.

Each test trains on CPU with a lesson's recipe, asserts the test accuracy of the
best-validation weights (``metrics.json``) against a floor, and prints and records
(``record_property``) the accuracy and the wall time of the whole ``fit`` call (data decoding
included). Skipped when ../shared/datasets is absent. Times are from a 2-core CPU machine; the
whole file takes about 4 minutes there (ten times longer epochs when other jobs share the cores).
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.data import DataConfig
from cnnlab.models import create_model
from cnnlab.train import TrainConfig, fit

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

pytestmark = pytest.mark.slow

# A CIFAR-10 net of mini_resnet_bn's size class (391k parameters against 270k) that is cheap on a
# CPU: mini_resnet_bn keeps all 32x32 pixels through its block (22M multiply-adds per image),
# this one halves the resolution after every conv (15M), so an epoch takes ~22 s on 2 cores.
CIFAR_SPEC = """\
name: cifar_fast
input: 32x32x3
classes: 10
layers:
  - conv: {filters: 32, kernel: 3, padding: same, batchnorm: true, activation: relu}
  - maxpool: 2
  - conv: {filters: 64, kernel: 3, padding: same, batchnorm: true, activation: relu}
  - maxpool: 2
  - conv: {filters: 128, kernel: 3, padding: same, batchnorm: true, activation: relu}
  - maxpool: 2
  - conv: {filters: 256, kernel: 3, padding: same, batchnorm: true, activation: relu}
  - global_max_pool
  - dense: {units: classes}
"""


def _extract(tmp_path_factory: pytest.TempPathFactory, archive: str, folder: str) -> Path:
    if not (DATASETS / archive).is_file():
        pytest.skip(f"{DATASETS / archive} not found (real data lives in ../shared/datasets)")
    root = tmp_path_factory.mktemp(folder)
    with tarfile.open(DATASETS / archive) as tar:
        tar.extractall(root, filter="data")
    return root / folder


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return _extract(tmp_path_factory, "mnist-png.tar.gz", "mnist")


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> Path:
    return _extract(tmp_path_factory, "cifar10-jpg.tar.gz", "cifar10")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def _train(
    model: nn.Module | str | Path,
    data: DataConfig,
    config: TrainConfig,
    record_property,
    **model_options,
) -> float:
    """Run ``fit`` on the CPU; print, record and return the test accuracy of the best weights."""
    start = time.perf_counter()
    history = fit(model, data, config, model_options=model_options or None)
    seconds = time.perf_counter() - start
    accuracy = history.final_metrics["test"]["accuracy"]
    metrics = json.loads((history.run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy)  # what the run folder says
    assert history.stopped == "completed" and len(history) == config.epochs
    record_property("test_accuracy", accuracy)
    record_property("wall_s", round(seconds, 1))
    print(f"\n{config.run_dir}: test accuracy {accuracy:.4f} in {seconds:.0f} s")
    return accuracy


def _keras_init(model: nn.Module) -> nn.Module:
    """Keras' default initialization (the lessons are Keras notebooks); see
    :func:`cnnlab.models.init.keras_init`."""
    from cnnlab.models.init import keras_init

    return keras_init(model)


def test_lesson002_lenet5_mnist(mnist, tmp_path, record_property):
    """Lesson 002: LeNet-5 (tanh), ``SGD(lr=0.1)``, batch 256, 5 epochs, 50k/10k/10k split.

    Keras' ``SGD(lr=0.1)`` has no momentum, hence ``momentum=0``; pixels / 255 and Keras'
    initialization as in the lesson. The lesson reports 98.19% from one run; this recipe lands
    between 97.5% and 98.2% depending on the seed (mean 97.9% over 7 seeds; this seed: 97.85%),
    so the floor sits under that spread rather than at 98%. ~30 s on 2 idle CPU cores.
    """
    torch.manual_seed(0)
    model = _keras_init(create_model("lenet5", num_classes=10, input_shape=(28, 28, 1)))
    data = DataConfig(
        source=str(mnist), batch_size=256, val_split=1 / 6, normalize="scale", in_memory="on"
    )
    config = TrainConfig(
        epochs=5,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        device="cpu",
        progress="none",
        run_dir=str(tmp_path / "lenet5"),
    )
    assert _train(model, data, config, record_property) >= 0.975


def test_lesson004_fmnist_cnn_on_mnist(mnist, tmp_path, record_property):
    """Lesson 004's Fashion-MNIST CNN on MNIST: Adam (lr 1e-3), batch 128, pixels / 255,
    ``validation_split=0.1``, 3 epochs (the lesson trains 10 on Fashion-MNIST). 98.6% to 98.8%
    over 3 seeds (this one: 98.76%); ~30 s on 2 CPU cores.
    """
    data = DataConfig(
        source=str(mnist), batch_size=128, val_split=0.1, normalize="scale", in_memory="on"
    )
    config = TrainConfig(
        epochs=3,
        optimizer="adam",
        lr=1e-3,
        device="cpu",
        progress="none",
        run_dir=str(tmp_path / "fmnist_cnn"),
    )
    assert _train("fmnist_cnn", data, config, record_property) >= 0.985


def test_cifar10_fast_cnn_with_flip_crop(cifar10, tmp_path, record_property):
    """CIFAR-10 (JPEG copy) to >= 70% in a few CPU minutes: the 4-conv BatchNorm net above,
    flip + pad-4 reflect crop, per-channel standardization, SGD Nesterov momentum 0.9 with a
    one-cycle schedule to lr 0.1, weight decay 5e-4, label smoothing 0.1, batch 256, 6 epochs,
    channels-last. 79.5% test accuracy (78.5% with 5 epochs and another seed) in 120-150 s of
    ``fit`` on 2 CPU cores (decoding the 60,000 JPEGs included: ~5 s).
    """
    spec = tmp_path / "cifar_fast.yaml"
    spec.write_text(CIFAR_SPEC)
    data = DataConfig(
        source=str(cifar10),
        batch_size=256,
        val_split=0.1,
        normalize="standardize",
        augment="flip,crop=4",
        in_memory="on",
    )
    config = TrainConfig(
        epochs=6,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        channels_last=True,
        device="cpu",
        progress="none",
        run_dir=str(tmp_path / "cifar_fast"),
    )
    assert _train(spec, data, config, record_property) >= 0.70
