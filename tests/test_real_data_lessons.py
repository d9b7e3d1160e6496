"""Lesson 002 in full (slow): the lesson's recipe on the real MNIST images of ../shared/datasets.

`cnnlab lesson 002 --data-root DIR` with DIR/mnist/{train,test}/<digit>/*.png: LeNet-5,
Inception, mini ResNet and mini ResNet+BN, SGD lr 0.1 without momentum, batch 256, 5 epochs,
50k/10k/10k, Keras initialization. Every count must match and every test accuracy must be within
1 point of the lesson's (98.19 / 97.91 / 98.45 / 96.91). About 25 minutes on 2 idle CPU cores
(the ResNets are 15M multiply-adds per image). Skipped when ../shared/datasets is absent.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from cnnlab.lessons import LessonOptions, run_lesson
from cnnlab.lessons.core import MATCH, WITHIN

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    archive = DATASETS / "mnist-png.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found (real data lives in ../shared/datasets)")
    root = tmp_path_factory.mktemp("lesson-data")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def test_lesson_002_full_recipe_on_mnist(data_root, tmp_path, monkeypatch, record_property):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    options = LessonOptions(data_root=str(data_root), device="cpu", out=str(tmp_path / "l002"))
    result = run_lesson("002", options, print_fn=lambda s: None)
    for row in result.rows:
        record_property(row.figure, f"{row.cnnlab} (lesson {row.lesson}, {row.verdict})")
    counts = [r for r in result.rows if "params" in r.figure]
    assert counts and all(r.verdict == MATCH for r in counts)
    accuracy = [r for r in result.rows if r.figure.endswith("test accuracy")]
    assert len(accuracy) == 4
    assert all(r.verdict == WITHIN for r in accuracy), [(r.figure, r.cnnlab) for r in accuracy]
