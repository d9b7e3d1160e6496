"""Folder datasets made of scikit-learn's digits, split by class: 0-4 and 5-9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from image_files import write_image


def write_digit_folder(root: Path, classes: range, test_every: int = 5) -> Path:
    """``root/{train,test}/<digit>/<i>.png`` for the digits of ``classes`` (8x8 grey, 0-255);
    every ``test_every``-th image of a class goes to test."""
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
    for label in classes:
        for i, index in enumerate(np.flatnonzero(digits.target == label)):
            split = "test" if i % test_every == 0 else "train"
            write_image(root / split / str(label) / f"{index}.png", pixels[index])
    return root
