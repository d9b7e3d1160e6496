"""The parity check after an export: the exported model against the PyTorch model (the run's
own normalization, then its model, in fp32) on real images from the run's data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.data import load_splits
from cnnlab.export.runtime import ExportedModel
from cnnlab.train.loading import Run

TOLERANCE = 1e-4  # max |logit difference| allowed in fp32


@dataclass
class Parity:
    """How the exported model agrees with the PyTorch model.

    Attributes:
        images: how many images were compared. split: the split they came from.
        max_abs_diff: the largest |logit difference|. top1_agree: images with the same top-1.
        tolerance: the allowed ``max_abs_diff``.
    """

    images: int
    split: str
    max_abs_diff: float
    top1_agree: int
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        """Within the tolerance, and the same top-1 on every image."""
        return self.max_abs_diff <= self.tolerance and self.top1_agree == self.images

    def to_text(self) -> str:
        """One line for the CLI."""
        return (
            f"parity on {self.images} {self.split} images: max |logit difference| "
            f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
            f"same top-1 on {self.top1_agree}/{self.images}"
        )


def parity_pixels(run: Run, count: int) -> tuple[str, torch.Tensor]:
    """(split, the first ``count`` uint8 images of the run's validation split (else its test
    split, else its training split), at the run's input size and channels)."""
    cfg = run.data_config()
    channels, height, width = run.input_shape
    splits = load_splits(
        cfg.source, cfg.load_options(), image_size=(height, width), channels=channels
    )
    for name in ("val", "test", "train"):
        images = getattr(splits, name)
        if images is not None and len(images.images):
            return name, images.images[:count].cpu()
    return "train", splits.train.images[:count].cpu()


@torch.no_grad()
def check_parity(run: Run, exported: ExportedModel, pixels: torch.Tensor, split: str) -> Parity:
    """Compare ``exported`` with ``run``'s model on ``pixels`` (uint8 (N, C, H, W))."""
    model = run.model.float().eval()
    reference = model(run.normalizer(pixels)).numpy()  # (N, K) fp32
    got = exported.logits(pixels.numpy())
    diff = float(np.abs(got - reference).max()) if len(pixels) else 0.0
    agree = int((got.argmax(axis=1) == reference.argmax(axis=1)).sum())
    return Parity(len(pixels), split, diff, agree)
