"""What ``cnnlab visualize filters|featuremaps|saliency`` look at: a trained run, or a registry
model / spec file with random weights, and an image prepared the way that model takes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.decode import read_image
from cnnlab.data.normalize import Normalizer
from cnnlab.errors import DataError, RunError
from cnnlab.models import build, is_spec_path, model_name, record_of
from cnnlab.train.loading import load_run


@dataclass
class Subject:
    """A model to look inside, with what it needs to read an image.

    Attributes:
        model: in eval mode, on the CPU (a run's weights, or random init).
        input_shape: ``(C, H, W)`` the model takes.
        normalizer: how uint8 pixels become the model's input.
        classes: class names in label order (a run's), or ``None`` (then labels are indices).
        name: the run folder's name or the model's name.
        trained: ``True`` for a run's weights, ``False`` for a freshly built model.
    """

    model: nn.Module
    input_shape: tuple[int, int, int]
    normalizer: Normalizer
    classes: list[str] | None
    name: str
    trained: bool

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its number when the subject has no class names)."""
        return self.classes[index] if self.classes else str(index)


def load_subject(source: str | Path, weights: str = "best") -> Subject:
    """A run folder (its best or last weights, classes and normalization; fine-tuning folders
    give their last stage) or a registry name / spec file (``.yaml``, ``.yml``, ``.json``)
    built with random weights on the CPU and a plain ``/255`` normalizer.

    Raises:
        RunError: a path that is neither a run folder nor a spec file.
        UnknownModelError, SpecError: a bad model name or spec.
    """
    text = str(source)
    path = Path(text)
    if path.is_dir():
        run = load_run(path, weights=weights, device="cpu")
        return Subject(run.model, run.input_shape, run.normalizer, run.classes, path.name, True)
    if is_spec_path(path) and not path.is_file():
        raise RunError(f"spec file '{text}' does not exist")
    model = build(text, device="cpu").eval()
    shape = record_of(model).input_shape
    return Subject(model, tuple(shape), Normalizer("scale"), None, model_name(model), False)


def load_input(subject: Subject, image_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An image file as ``subject``'s model takes it, as ``cnnlab predict`` prepares it:
    decoded, converted to the model's channels, resized to its input size (bilinear,
    antialiased) and normalized.

    Returns:
        ``(image, batch)``: the uint8 ``(C, H, W)`` image at the model's input size (to draw)
        and the normalized float ``(1, C, H, W)`` batch (to feed the model).

    Raises:
        DataError: a missing file; CorruptImageError: one that does not decode (naming it).
    """
    path = Path(image_path)
    if not path.is_file():
        raise DataError(f"image '{image_path}' does not exist")
    channels, height, width = subject.input_shape
    image = read_image(path, channels=channels, size=(height, width))  # (C, H, W) uint8
    return image, subject.normalizer(image[None])
