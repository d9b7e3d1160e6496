"""Lesson 001's convolution and pooling demos: the numbers behind the pictures, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import DataError
from cnnlab.viz.convolve import (
    convolve,
    make_filter,
    pool,
    sample_images,
    shift_right,
    translation_invariance,
)


def vertical_line(height=21, width=21, column=10) -> torch.Tensor:
    image = torch.zeros(3, height, width)
    image[:, :, column] = 1.0
    return image


def test_vertical_filter_answers_a_vertical_line():
    image = vertical_line()
    vertical = convolve(image[None], make_filter("vertical", 7))[0]
    horizontal = convolve(image[None], make_filter("horizontal", 7))[0]
    # away from the borders, the 7-tall column of ones in 3 channels sits on the line: 21
    assert vertical[10, 10] == 21.0 and vertical[10, 9] == 0.0
    assert vertical.argmax() % 21 == 10  # strongest on the line's column
    assert horizontal[10, 10] == 3.0  # a horizontal line crosses it in one pixel per channel
    assert horizontal.max() == 3.0


def test_sobel_and_filter_files(tmp_path):
    image = torch.zeros(3, 9, 9)
    image[:, :, 5:] = 1.0  # a vertical edge between columns 4 and 5
    edges = convolve(image[None], make_filter("sobel"))[0]
    assert edges[4, 4] == edges[4, 5] == 12.0 and edges[4, 1] == 0.0
    np.save(tmp_path / "k.npy", np.ones((3, 3, 3), dtype=np.float32))  # Keras (k, k, C)
    assert make_filter(tmp_path / "k.npy").shape == (1, 3, 3, 3)
    np.save(tmp_path / "bad.npy", np.ones((3, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"holds shape \(3, 4\)"):
        make_filter(tmp_path / "bad.npy")
    with pytest.raises(DataError, match="must be odd"):
        make_filter("vertical", 6)


def test_pooling_shapes_and_translation_invariance():
    x = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8)
    assert pool(x, 2).shape == (2, 3, 3, 4)
    assert pool(x, 3, 1).shape == (2, 3, 4, 6)
    assert pool(x, 2, kind="avg")[0, 0, 0, 0] == (0 + 1 + 8 + 9) / 4
    # lesson 001's A, B, C: bright pixels at even columns; a 1-pixel shift keeps every
    # max-pooled output, a 2-pixel shift moves them by one output column
    image = torch.zeros(1, 4, 8)
    image[..., ::2] = 1.0
    same = translation_invariance(image, 2, shifts=(0, 1, 2))
    assert same == {0: 1.0, 1: 1.0, 2: 1.0}
    spot = torch.zeros(1, 4, 8)
    spot[:, 0, 2] = 1.0
    assert translation_invariance(spot, 2)[1] == 1.0  # column 2 -> 3: same window
    assert translation_invariance(spot, 2)[2] < 1.0  # column 2 -> 4: the next window
    assert torch.equal(shift_right(spot, 2)[:, 0, 4], torch.ones(1))


def test_sample_images_are_the_lessons():
    images = sample_images()
    assert images["china"].shape == (3, 427, 640) and images["flower"].shape == (3, 427, 640)
    assert float(images["china"].min()) >= 0.0 and float(images["china"].max()) <= 1.0


def test_cli_convolve_and_pooling_write_pngs(tmp_path):
    runner = CliRunner()
    out = tmp_path / "conv.png"
    result = runner.invoke(app, ["visualize", "convolve", "-o", str(out), "--filter", "sobel"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(app, ["visualize", "pooling", "-o", str(tmp_path / "pool.png")])
    assert result.exit_code == 0 and "1px:" in result.output
    bad = runner.invoke(app, ["visualize", "convolve", "--filter", "diagonal"])
    assert bad.exit_code == 2 and "filter 'diagonal' is not one of" in bad.output
    missing = runner.invoke(app, ["visualize", "pooling", str(tmp_path / "nope.png")])
    assert missing.exit_code == 2 and "nope.png' does not exist" in missing.output
