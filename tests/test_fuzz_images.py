"""Hostile image files in class folders (issue 13): every case loads (the bad file skipped and
named) or ends in a one-line cnnlab error, through the folder loader and `cnnlab data stats`,
never another exception, a traceback or a hang.

Each case is a small two-class folder plus one file made by `ImageMutator`: a valid image in an
odd format or mode (I;16, LA, P with transparency, CMYK, 1-bit, animated GIF, WebP), then
truncated, bit-flipped, zero-byte, given the wrong extension, given huge header dimensions, or
replaced by a decompression bomb; a few cases change the folder instead (a FIFO, a link loop, a
class folder linked to ``/``). Cases are a pure function of (seed, index): a failure prints the
seed and the case, which `ImageMutator(seed).case(i)` rebuilds alone.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import app
from cnnlab.data import load_splits
from fuzz_helpers import (
    OK,
    Case,
    assert_no_failures,
    run_call,
    run_cli,
    summarize,
)
from image_files import animated_gif, class_pixels, png16_bytes, png_bomb

SEED = 13
EXTENSIONS = [".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"]
KINDS = ["rgb", "L", "LA", "RGBA", "P", "P-transparent", "1", "I;16", "cmyk", "jpeg-gray"]
KINDS += ["jpeg-progressive", "gif", "anim", "bmp", "webp", "webp-lossless"]


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _valid_image(rng: random.Random) -> tuple[str, bytes]:
    """A valid image file in one of many formats and modes, with its usual extension."""
    size = (rng.randint(1, 24), rng.randint(1, 24))
    pixels = class_pixels(rng.randrange(9), rng.randrange(99), size)
    rgb = Image.fromarray(pixels)
    kind = rng.choice(KINDS)
    if kind == "I;16":
        return kind, png16_bytes(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    if kind == "P-transparent":
        return kind, _encode(rgb.convert("P"), "PNG", transparency=0)
    if kind in ("L", "LA", "RGBA", "1", "P"):
        return kind, _encode(rgb.convert(kind), "PNG")
    if kind == "cmyk":
        return kind, _encode(rgb.convert("CMYK"), "JPEG")
    if kind == "jpeg-gray":
        return kind, _encode(rgb.convert("L"), "JPEG")
    if kind == "jpeg-progressive":
        return kind, _encode(rgb, "JPEG", progressive=True, quality=rng.randint(5, 95))
    if kind == "gif":
        return kind, _encode(rgb, "GIF")
    if kind == "anim":
        frames = [class_pixels(rng.randrange(9), k, size) for k in range(rng.randint(2, 4))]
        return kind, animated_gif(frames)
    if kind == "bmp":
        return kind, _encode(rgb, "BMP")
    if kind.startswith("webp"):
        return kind, _encode(rgb, "WEBP", lossless=kind == "webp-lossless")
    return kind, _encode(rgb, "PNG")


def _huge_header(rng: random.Random, data: bytes) -> bytes:
    """``data`` with the dimensions in its header replaced by large ones (under or over the
    pixel limit), the pixel data left as it was."""
    big = rng.choice([16384, 40000, 65535, 2**31 - 1])
    if data.startswith(b"\x89PNG") and len(data) > 24:
        return data[:16] + struct.pack(">II", big, rng.choice([1, big])) + data[24:]
    if data.startswith(b"GIF") and len(data) > 10:
        return data[:6] + struct.pack("<HH", min(big, 65535), 65535) + data[10:]
    if data.startswith(b"BM") and len(data) > 26:
        return data[:18] + struct.pack("<ii", big, rng.choice([1, big])) + data[26:]
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        sof = data.find(b"\xff\xc2")
    if sof >= 0:
        return data[: sof + 5] + struct.pack(">HH", min(big, 65535), 65535) + data[sof + 9 :]
    return data


def _mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["none", "truncate", "flip", "flip", "zero", "junk", "header", "random"])
    if kind == "truncate":
        return kind, data[: rng.randrange(len(data))]
    if kind == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        return kind, bytes(raw)
    if kind == "zero":
        return kind, b""
    if kind == "junk":
        at = rng.randrange(len(data))
        return kind, data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == "header":
        return kind, _huge_header(rng, data)
    if kind == "random":
        return kind, rng.randbytes(rng.randint(1, 300))
    return kind, data


class ImageMutator:
    """Seeded hostile files; ``case(i)`` is a pure function of (seed, i).

    A case's payload is ``(name, bytes)`` for one file in class folder ``a``, or
    ``(structure, None)`` for a change of the folder (see :func:`_apply_structure`).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def case(self, i: int) -> Case:
        rng = random.Random(f"{self.seed}:{i}")
        if rng.random() < 0.06:
            what = rng.choice(["fifo", "link-loop", "dir-loop", "link-root", "broken", "bomb"])
            return Case(i, what, (what, None))
        kind, data = _valid_image(rng)
        mutation, data = _mutate(rng, data)
        ext = rng.choice(EXTENSIONS) if rng.random() < 0.25 else _usual_ext(data)
        what = f"{kind}+{mutation}" + ("+ext" if ext != _usual_ext(data) else "")
        return Case(i, what, (f"fuzz{ext}", data))

    def cases(self, n: int) -> list[Case]:
        return [self.case(i) for i in range(n)]


def _usual_ext(data: bytes) -> str:
    for magic, ext in (
        (b"\x89PNG", ".png"),
        (b"GIF8", ".gif"),
        (b"BM", ".bmp"),
        (b"RIFF", ".webp"),
    ):
        if data.startswith(magic):
            return ext
    return ".jpg"


def _apply_structure(root: Path, what: str) -> None:
    if what == "fifo":
        os.mkfifo(root / "a" / "pipe.png")
    elif what == "link-loop":
        os.symlink("loop.jpg", root / "a" / "loop.jpg")
    elif what == "dir-loop":
        os.symlink("..", root / "a" / "up")
    elif what == "link-root":
        os.symlink("/", root / "c")
    elif what == "broken":
        os.symlink("missing.png", root / "b" / "gone.png")
    else:
        (root / "a" / "bomb.png").write_bytes(png_bomb())


def _folder(tmp_path: Path, case: Case, gray: bool) -> Path:
    """Two classes of three good 8x8 images, plus the case's file or change."""
    root = tmp_path / f"case{case.id}"
    for label, name in enumerate("ab"):
        (root / name).mkdir(parents=True)
        for k in range(3):
            image = Image.fromarray(class_pixels(label, k))
            (root / name / f"{k}.png").write_bytes(
                _encode(image.convert("L") if gray else image, "PNG")
            )
    name, data = case.payload
    if data is None:
        _apply_structure(root, name)
    else:
        (root / "a" / name).write_bytes(data)
    return root


def _load_and_check(root: Path, image_size: str | None, skips: list[int]) -> None:
    """Load ``root``; every image is either in the set or named among the skipped files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = load_splits(root, val_split=0, cache=False, workers=0, image_size=image_size)
    train = splits.train
    assert train.classes == ["a", "b"], train.classes
    assert all(entry.startswith(str(root)) for entry in train.skipped), train.skipped
    assert len(train) >= 5, f"good images were lost: {len(train)} loaded, {train.skipped}"
    skips.append(len(train.skipped))


def _fuzz(tmp_path: Path, n: int, cli_every: int, seed: int = SEED) -> tuple[list, list[int]]:
    from cnnlab.data.decode import _torchvision_decoder

    _torchvision_decoder()  # import torchvision (seconds) before the first case's time limit
    results, skips = [], []
    for case in ImageMutator(seed).cases(n):
        rng = random.Random(f"{seed}:{case.id}:options")
        root = _folder(tmp_path, case, gray=rng.random() < 0.4)
        size = rng.choice([None, None, None, "6x6", "1x9"])
        results.append((case, run_call(_load_and_check, root, size, skips, limit_s=10)))
        if case.id % cli_every == 0:
            args = ["data", "stats", root, "--val-split", "0"]
            results.append((case, run_cli(app, args + (["--image-size", size] if size else []))))
    return results, skips


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def test_mutator_is_a_pure_function_of_the_seed():
    first, again = ImageMutator(5).cases(40), ImageMutator(5).cases(40)
    assert [c.payload for c in first] == [c.payload for c in again]
    assert [c.payload for c in first] != [c.payload for c in ImageMutator(6).cases(40)]


def test_fuzzed_image_files_load_or_fail_cleanly(tmp_path):
    results, skips = _fuzz(tmp_path, 240, cli_every=4)
    assert_no_failures(results, SEED)
    assert summarize(results).get(OK, 0) > 200
    assert sum(1 for n in skips if n) > 50  # the fuzz bites: many cases skip and name a file


@pytest.mark.slow
def test_fuzzed_image_files_thousand_cases(tmp_path):
    results, skips = _fuzz(tmp_path, 1000, cli_every=2, seed=SEED + 1)
    assert_no_failures(results, SEED + 1)
    assert summarize(results).get(OK, 0) > 800 and sum(1 for n in skips if n) > 200


def test_png_that_crashed_torchvision_is_a_clean_error():
    """Case 1 of seed 13 (a PNG with junk in its pixel data) killed the process with SIGSEGV
    in torchvision's decode_png ("libpng error: bad adaptive filter value")."""
    from cnnlab.data.decode import decode_image_bytes
    from cnnlab.errors import CorruptImageError

    case = ImageMutator(SEED).case(1)
    assert case.what == "rgb+junk"
    for channels in (1, 3):
        with pytest.raises(CorruptImageError, match=r"x\.png: cannot decode png"):
            decode_image_bytes(case.payload[1], channels, source="x.png")


def _two_classes(root: Path) -> Path:
    for label, name in enumerate("ab"):
        (root / name).mkdir(parents=True)
        for k in range(3):
            image = Image.fromarray(class_pixels(label, k))
            (root / name / f"{k}.png").write_bytes(_encode(image, "PNG"))
    return root


def test_cli_stats_skips_a_decompression_bomb_and_names_the_limit(tmp_path):
    """The issue's case: a 0.9 MB-class PNG claiming 30000x30000 crashed `cnnlab data stats`."""
    from typer.testing import CliRunner

    root = _two_classes(tmp_path / "d")
    (root / "a" / "bomb.png").write_bytes(png_bomb())
    result = CliRunner().invoke(app, ["data", "stats", str(root), "--val-split", "0"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # Rich wraps long warnings
    assert "bomb.png: 30000x30000 image over the limit of 178,956,970 pixels" in text
    assert "a decompression bomb" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", ""], "data source '' is empty"),
        (["data", "stats", " "], "data source ' ' is empty"),
        (["data", "stats", "digits", "--image-size", "100000x100000"], "over the limit"),
        (["train", "--image-size", "100000x100000"], "100000x100000 has 10,000,000,000 pixels"),
    ],
)
def test_cli_refuses_surprising_sources_and_sizes_in_one_line(tmp_path, monkeypatch, args, message):
    _two_classes(tmp_path / "cwd")  # a loadable working directory: '' used to train on it
    monkeypatch.chdir(tmp_path / "cwd")
    outcome = run_cli(app, [*args, "--epochs", "1"] if args[0] == "train" else args)
    assert outcome.kind == "user error" and message in outcome.detail, outcome
