"""Folder datasets made of scikit-learn's digits, split by class: 0-4 and 5-9; run folders
written without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from sklearn.datasets import load_digits

from cnnlab.build_record import record_of
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


def write_run(folder: Path, model: torch.nn.Module, classes: list[str]) -> Path:
    """A run folder as `cnnlab train` leaves it (config.yaml, model.safetensors) for ``model``
    as it is, without training."""
    folder.mkdir(parents=True)
    desc = record_of(model).description()
    config = {
        "model": desc,
        "data": {
            "source": "digits",
            "classes": classes,
            "input_shape": desc["input_shape"],
            "normalizer": {"mode": "scale"},
        },
        "train": {},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, folder / "model.safetensors")
    return folder
