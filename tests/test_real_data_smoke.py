"""Real-data smoke runs (slow): lesson models on real MNIST/CIFAR-10 images from ../shared.

Skipped when ../shared/datasets is absent. Each model must fit a small real batch (the
images decode to its default input, its logits are finite, and a few optimizer steps drive the
training accuracy up): proof that the zoo is trainable on the lessons' data, ahead of the
training engine.
"""

from __future__ import annotations

import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image

from cnnlab.models import create_model, model_info

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
]


def _load(archive: str, split: str, per_class: int, mode: ImageReadMode):
    path = DATASETS / archive
    if not path.exists():
        pytest.skip(f"{path} not found (real data lives in ../shared/datasets)")
    images, labels, taken = [], [], defaultdict(int)
    with tarfile.open(path, "r|gz") as tar:
        classes: dict[str, int] = {}
        for member in tar:
            parts = Path(member.name).parts  # <root>/<split>/<class>/<n>.<ext>
            if not member.isfile() or len(parts) != 4 or parts[1] != split:
                continue
            label = classes.setdefault(parts[2], len(classes))
            if taken[label] >= per_class:
                continue
            data = torch.frombuffer(bytearray(tar.extractfile(member).read()), dtype=torch.uint8)
            images.append(decode_image(data, mode))
            labels.append(label)
            taken[label] += 1
    assert len(classes) == 10, classes
    return torch.stack(images).float() / 255.0, torch.tensor(labels)


def _fits(name: str, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> float:
    torch.manual_seed(0)
    model = create_model(name)
    assert tuple(x.shape[1:]) == model_info(name).input_shape
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_mnist_lesson_models_learn_real_digits():
    x, y = _load("mnist-png.tar.gz", "train", 20, ImageReadMode.GRAY)
    assert x.shape == (200, 1, 28, 28)
    for name in ("lenet5", "fmnist_cnn", "mini_resnet_bn"):
        assert _fits(name, x, y, steps=60, lr=2e-3) >= 0.9, name


def test_cifar_lesson_models_take_real_jpegs():
    x, y = _load("cifar10-jpg.tar.gz", "train", 10, ImageReadMode.RGB)
    assert x.shape == (100, 3, 32, 32)
    assert _fits("vgg6", x, y, steps=40, lr=3e-4) >= 0.8
