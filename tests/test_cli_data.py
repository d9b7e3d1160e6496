"""`cnnlab data list|show|stats` end to end through Typer's test runner."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from image_files import make_class_folder

runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_data_list_shows_registered():
    result = run("data", "list")
    assert result.exit_code == 0, result.output
    assert "digits" in result.output and "28x28x1" in result.output


def test_data_show_writes_a_png_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = run("data", "show", "digits", "--out", out, "-n", "12", "--cols", "6")
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_data_show_folder_random_split(tmp_path):
    make_class_folder(tmp_path / "pets", per_class=10)
    out = tmp_path / "pets.png"
    result = run("data", "show", tmp_path / "pets", "-o", out, "--split", "val", "--random", "3")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and "pets/val" in result.output


def test_data_stats_digits_counts_and_mean():
    result = run("data", "stats", "digits", "--val-split", "0")
    assert result.exit_code == 0, result.output
    assert "1,438" in result.output and "359" in result.output  # train / test of 1,797
    assert "28x28x1" in result.output and "0.30" in result.output


def test_data_stats_folder_reports_file_sizes_and_skips(tmp_path):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=3, size=(8, 6))
    (tmp_path / "d" / "a" / "bad.png").write_bytes(b"junk")
    result = run("data", "stats", tmp_path / "d", "--val-split", "0")
    assert result.exit_code == 0, result.output
    assert "8x6 (6)" in result.output
    assert "warning:" in result.output and "bad.png" in result.output
    strict = run("data", "stats", tmp_path / "d", "--strict")
    assert strict.exit_code == 2 and "bad.png" in strict.output


def test_data_errors_are_one_line(tmp_path):
    result = run("data", "show", tmp_path / "missing")
    assert result.exit_code == 2
    assert "unknown dataset" in result.output and "digits" in result.output
    bad = run("data", "stats", "digits", "--image-size", "abc")
    assert bad.exit_code == 2 and "'abc'" in bad.output


def test_data_pack_then_stats_and_show(tmp_path):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=6)
    out = tmp_path / "pack"
    result = run("data", "pack", tmp_path / "d", out, "--shards", "2", "--val-split", "0.5")
    assert result.exit_code == 0, result.output
    assert "train: 6 images in 2 shards" in result.output
    assert "val: 6 images in 2 shards" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "train-00000.tar",
        "train-00001.tar",
        "val-00000.tar",
        "val-00001.tar",
    ]
    stats = run("data", "stats", out)
    assert stats.exit_code == 0, stats.output
    assert "8x8x3" in stats.output
    again = run("data", "pack", "digits", out)
    assert again.exit_code == 2 and str(out) in again.output  # another pack is there
