"""cnnlab report: self-contained HTML for run, fine-tuning and comparison folders."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import DataError, RunError
from cnnlab.report import render_report, report_kind, write_report


@pytest.fixture(scope="module")
def run_dir(trained_run):
    """The session's lenet5 run (read-only: tests that write into it take a copy)."""
    return trained_run.path


@pytest.fixture(scope="module")
def compare_dir(compared_dir):
    return compared_dir


def embedded_images(page: str) -> list[Image.Image]:
    """Every <img> of the page decoded (each must be an inline PNG)."""
    sources = re.findall(r'<img src="([^"]+)"', page)
    images = []
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        images.append(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
    return images


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)="(?!data:)', page), "the page refers to another file"
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_report_kind(run_dir, compare_dir, tmp_path):
    assert report_kind(run_dir) == "run" and report_kind(compare_dir) == "compare"
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "finetune.yaml").write_text("stages: []\n")
    assert report_kind(tmp_path / "ft") == "finetune"
    with pytest.raises(RunError, match=r"nothing' is not a run, fine-tuning or comparison"):
        report_kind(tmp_path / "nothing")


def test_run_report_has_every_part(run_dir):
    import json

    page = render_report(run_dir, samples=16)
    assert_self_contained(page)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.2%}" in page
    assert "Learning curves" in page and "Confusion matrix" in page and "Sample predictions" in page
    assert page.count("<tr>") >= 10 + 1  # per-class table (10 digits) + more
    assert "optimizer: adam" in page  # config.yaml
    assert "Total params: 61,706" in page  # summary.txt
    images = embedded_images(page)
    assert len(images) == 3  # curves, confusion, samples
    assert all(img.size[0] > 300 and img.size[1] > 200 for img in images)


def test_run_report_without_its_data_still_renders(run_dir, monkeypatch):
    def gone(*a, **k):
        raise DataError("folder '/data/flowers' does not exist")

    monkeypatch.setattr("cnnlab.train.evaluation.load_split_images", gone)
    page = render_report(run_dir, samples=8)
    assert "no test or validation split to show" in page or "does not exist" in page
    assert len(embedded_images(page)) == 2


def test_finetune_folder_reports_its_last_stage_and_both_stages(run_dir, tmp_path):
    import shutil

    parent = tmp_path / "ft"
    with pytest.raises(RunError, match="is not a run"):
        render_report(parent)
    parent.mkdir()
    (parent / "finetune.yaml").write_text("backbone: vgg16\nunfreeze: all\n")
    with pytest.raises(RunError, match="no finished stage yet"):
        render_report(parent)
    shutil.copytree(run_dir, parent / "2-finetune")
    shutil.copy(run_dir / "curves.png", parent / "curves.png")
    page = render_report(parent, samples=0)
    assert "cnnlab fine-tuning: ft" in page and "backbone: vgg16" in page
    assert len(embedded_images(page)) == 3  # both-stage curves, stage curves, confusion


def test_compare_report(compare_dir):
    page = render_report(compare_dir)
    assert_self_contained(page)
    assert "lenet5" in page and "basic_cnn" in page and "±" in page
    assert page.count("basic_cnn-seed") == 2  # every run listed
    assert len(embedded_images(page)) == 3  # curves + two scatters


def test_cli_report_writes_the_file_atomically(run_dir, compare_dir, tmp_path):
    out = tmp_path / "r" / "run.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out), "--samples", "0"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "Sample predictions" not in out.read_text()
    assert not list(out.parent.glob("*.tmp*"))
    result = CliRunner().invoke(app, ["report", str(compare_dir)])
    assert result.exit_code == 0 and (compare_dir / "report.html").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "is not a run" in bad.output


def test_write_report_default_path(trained_run_copy):
    run_dir = trained_run_copy
    path = write_report(run_dir, samples=0)
    assert path == run_dir / "report.html"


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["run", "compare"])
def test_report_opens_in_a_real_browser(kind, run_dir, compare_dir, tmp_path):
    """Headless chromium opens the file from disk: no console errors, no requests, every image
    decoded with a real size, and a screenshot written (kept under the test's tmp folder)."""
    from browser import open_in_browser, require_browser

    require_browser()
    html = write_report(run_dir if kind == "run" else compare_dir, tmp_path / f"{kind}.html")
    page = open_in_browser(html, tmp_path / f"{kind}.png")
    assert page.problems == [] and page.requests == []
    assert page.title.startswith("cnnlab")
    assert len(page.images) == 3 and all(w > 300 and h > 200 for _, w, h in page.images)
    with Image.open(page.screenshot) as shot:
        assert shot.format == "PNG" and shot.size[0] >= 800 and shot.size[1] > 1000


def test_per_class_table_is_sklearns_classification_report():
    """The per-class table of eval's report.txt is scikit-learn's own, column for column."""
    import numpy as np
    import torch
    from sklearn.metrics import classification_report as sk_report

    from cnnlab.train.evaluation import classification_report, confusion_matrix

    gen = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 4, (300,), generator=gen)
    predictions = torch.where(torch.rand(300, generator=gen) < 0.6, targets, 1)
    names = ["cat", "dog", "a_long_class_name", "eel"]
    report = classification_report(confusion_matrix(targets, predictions, 4), names)
    expected = sk_report(
        targets.numpy(), predictions.numpy(), labels=np.arange(4), target_names=names,
        digits=4, zero_division=0,
    )  # fmt: skip
    assert report.to_text() == expected.rstrip("\n")
    assert report.weighted_f1 == pytest.approx(
        sk_report(targets, predictions, output_dict=True, zero_division=0)["weighted avg"][
            "f1-score"
        ]
    )
