"""Image folders: layouts, decoding of every format and mode, corrupt files, cache, splits."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from cnnlab.data import LoadOptions, load_dataset, load_splits
from cnnlab.data.cache import cache_file
from cnnlab.data.decode import decode_files, decode_image_bytes, read_image, sniff_format
from cnnlab.data.folder import DataWarning, scan_folder
from cnnlab.errors import CorruptImageError, DataError, UnknownDatasetError
from image_files import (
    animated_gif,
    class_pixels,
    image_bytes,
    make_class_folder,
    png16_bytes,
    png_bomb,
    write_image,
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)


# --- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF", "WEBP"])
def test_lossless_formats_decode_pixel_exact(fmt):
    pixels = class_pixels(0, 0)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    if fmt == "GIF":  # palette format: use an image with few colours so it survives exactly
        pixels = np.repeat(np.repeat(class_pixels(0, 0, (2, 2)), 4, 0), 4, 1)
    data = image_bytes(pixels, fmt, **kw)
    assert torch.equal(decode_image_bytes(data, channels=3), _chw(pixels))


def test_jpeg_decodes_close_to_source():
    pixels = np.full((16, 16, 3), (200, 40, 90), dtype=np.uint8)
    decoded = decode_image_bytes(image_bytes(pixels, "JPEG", quality=95), channels=3)
    assert decoded.shape == (3, 16, 16)
    assert (decoded.int() - _chw(pixels).int()).abs().max() <= 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_modes_convert_to_rgb_and_gray(mode):
    pixels = class_pixels(1, 2)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    data = image_bytes(pixels, fmt, mode=mode)
    rgb = decode_image_bytes(data, channels=3)
    gray = decode_image_bytes(data, channels=1)
    assert rgb.shape == (3, 8, 8) and gray.shape == (1, 8, 8)
    assert rgb.dtype == gray.dtype == torch.uint8
    if mode == "L":  # a gray source gives three equal channels
        assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])


def test_resize_on_decode():
    data = image_bytes(class_pixels(0, 0, (10, 20)))
    assert decode_image_bytes(data, 3, size=(5, 7)).shape == (3, 5, 7)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello world, not an image", "not a JPEG"),
        (image_bytes(class_pixels(0, 0), "JPEG")[:60], "cannot decode jpeg"),
        (image_bytes(class_pixels(0, 0), "PNG")[:-20], "cannot decode png"),
    ],
)
def test_corrupt_bytes_name_the_source(data, reason):
    with pytest.raises(CorruptImageError, match=reason) as err:
        decode_image_bytes(data, 3, source="x/bad.jpg")
    assert "x/bad.jpg" in str(err.value)


def test_sniff_format():
    assert sniff_format(image_bytes(class_pixels(0, 0), "JPEG")) == "jpeg"
    assert sniff_format(image_bytes(class_pixels(0, 0), "WEBP")) == "webp"
    assert sniff_format(b"abc") is None


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_files_keeps_order_and_skips_bad(tmp_path, workers):
    paths, expected = [], []
    for i in range(12):
        pixels = class_pixels(0, i)
        paths.append(str(write_image(tmp_path / f"{i}.png", pixels)))
        expected.append(_chw(pixels))
    (tmp_path / "5.png").write_bytes(b"garbage")
    result = decode_files(paths, channels=3, workers=workers)
    assert result.indices.tolist() == [i for i in range(12) if i != 5]
    assert torch.equal(result.images, torch.stack([e for i, e in enumerate(expected) if i != 5]))
    assert len(result.failures) == 1 and "5.png" in result.failures[0]
    with pytest.raises(CorruptImageError, match=r"5\.png.*strict"):
        decode_files(paths, channels=3, workers=workers, strict=True)


# --- layouts --------------------------------------------------------------------------------


def test_flat_layout_classes_sorted_and_val_split(tmp_path):
    written = make_class_folder(tmp_path / "pets", ("fox", "cat", "dog"), per_class=10)
    (tmp_path / "pets" / "LICENSE.txt").write_text("not an image")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    splits = load_splits(tmp_path / "pets", val_split=0.2, seed=1)
    assert splits.train.classes == ["cat", "dog", "fox"]
    assert len(splits.train) == 24 and len(splits.val) == 6 and splits.test is None
    assert splits.val.class_counts() == {"cat": 2, "dog": 2, "fox": 2}
    assert splits.train.shape == (3, 8, 8)
    # Every image lands once, with the label of its folder.
    both = torch.cat([splits.train.images, splits.val.images])
    labels = torch.cat([splits.train.labels, splits.val.labels])
    for label, name in enumerate(splits.train.classes):
        got = sorted(both[labels == label].flatten(1).tolist())
        want = sorted(_chw(p).flatten().tolist() for p in written[name])
        assert got == want


def test_val_split_is_seeded(tmp_path):
    make_class_folder(tmp_path / "d", per_class=10)
    a = load_splits(tmp_path / "d", val_split=0.3, seed=3).val.images
    b = load_splits(tmp_path / "d", val_split=0.3, seed=3, cache=False).val.images
    c = load_splits(tmp_path / "d", val_split=0.3, seed=4).val.images
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_split_folders_are_used(tmp_path):
    make_class_folder(tmp_path / "ds" / "train", ("a", "b"), per_class=5)
    make_class_folder(tmp_path / "ds" / "val", ("a", "b"), per_class=2)
    make_class_folder(tmp_path / "ds" / "test", ("b",), per_class=3)
    splits = load_splits(tmp_path / "ds")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 4, 3)
    assert splits.test.labels.tolist() == [1, 1, 1]  # class indices follow train's classes
    layout = scan_folder(tmp_path / "ds")
    assert set(layout.splits) == {"train", "val", "test"}


def test_train_and_test_only_carves_val(tmp_path):
    make_class_folder(tmp_path / "ds" / "train", ("a", "b"), per_class=10)
    make_class_folder(tmp_path / "ds" / "test", ("a", "b"), per_class=2)
    splits = load_splits(tmp_path / "ds", val_split=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)
    assert load_dataset(tmp_path / "ds", split="test").name.endswith("/test")


def test_unknown_class_in_test_folder(tmp_path):
    make_class_folder(tmp_path / "ds" / "train", ("a",), per_class=2)
    make_class_folder(tmp_path / "ds" / "test", ("zebra",), per_class=1)
    with pytest.raises(DataError, match=r"zebra.*not in the train folder"):
        load_splits(tmp_path / "ds")


def test_loose_images_without_class_folders(tmp_path):
    write_image(tmp_path / "loose" / "1.png", class_pixels(0, 0))
    with pytest.raises(DataError, match="no class folders"):
        load_splits(tmp_path / "loose")


def test_missing_source_lists_datasets(tmp_path):
    with pytest.raises(UnknownDatasetError, match="digits"):
        load_splits(str(tmp_path / "nowhere"))


def test_missing_split_names_the_present_ones(tmp_path):
    make_class_folder(tmp_path / "d")
    with pytest.raises(DataError, match=r"no 'test' split.*train, val"):
        load_dataset(tmp_path / "d", split="test")


# --- corrupt files, channels, sizes ------------------------------------------------------------


def _folder_with_bad_files(root):
    make_class_folder(root, ("a", "b"), per_class=3)
    (root / "a" / "random.jpg").write_bytes(os.urandom(200))
    good = image_bytes(class_pixels(0, 9), "JPEG")
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "b" / "empty.png").write_bytes(b"")


def test_corrupt_files_skipped_counted_reported_once(tmp_path):
    _folder_with_bad_files(tmp_path / "d")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_dataset(tmp_path / "d", val_split=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1
    assert "skipped 3 of 9 files" in messages[0]
    for name in ("random.jpg", "truncated.jpg", "empty.png"):
        assert name in messages[0]
    assert len(train) == 6 and len(train.skipped) == 3


def test_strict_raises_even_from_cache(tmp_path):
    _folder_with_bad_files(tmp_path / "d")
    with pytest.raises(CorruptImageError, match="strict"):
        load_splits(tmp_path / "d", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_splits(tmp_path / "d")  # fills the cache
    with pytest.raises(CorruptImageError, match="strict"):
        load_splits(tmp_path / "d", strict=True)


def test_grayscale_folder_gives_one_channel_and_conversion(tmp_path):
    for i in range(3):
        write_image(tmp_path / "g" / "x" / f"{i}.png", class_pixels(0, i), mode="L")
        write_image(tmp_path / "g" / "y" / f"{i}.png", class_pixels(1, i), mode="L")
    assert load_dataset(tmp_path / "g", val_split=0).shape == (1, 8, 8)
    assert load_dataset(tmp_path / "g", val_split=0, channels=3).shape == (3, 8, 8)


def test_mixed_modes_and_sizes_become_one_format(tmp_path):
    root = tmp_path / "m"
    write_image(root / "a" / "0.png", class_pixels(0, 0, (8, 8)))
    write_image(root / "a" / "1.png", class_pixels(0, 1, (8, 8)), mode="RGBA")
    write_image(root / "b" / "0.jpg", class_pixels(1, 0, (12, 6)), "JPEG", mode="CMYK")
    write_image(root / "b" / "1.png", class_pixels(1, 1, (8, 8)), mode="L")
    with pytest.warns(DataWarning, match="resized 1 images.*8x8"):
        train = load_dataset(root, val_split=0)
    assert train.shape == (3, 8, 8) and len(train) == 4
    assert load_dataset(root, val_split=0, image_size="4x5").shape == (3, 4, 5)


def test_bad_options_echo_the_value(tmp_path):
    make_class_folder(tmp_path / "d")
    with pytest.raises(DataError, match="0x4"):
        load_splits(tmp_path / "d", image_size="0x4")
    with pytest.raises(DataError, match="'big'"):
        load_splits(tmp_path / "d", image_size="big")
    with pytest.raises(DataError, match="channels must be 1 or 3, got 2"):
        load_splits(tmp_path / "d", channels=2)
    with pytest.raises(DataError, match=r"1\.5"):
        load_splits(tmp_path / "d", val_split=1.5)


# --- decoded cache ---------------------------------------------------------------------------


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = tmp_path / "d"
    make_class_folder(root, ("a", "b"), per_class=3)
    first = load_dataset(root, val_split=0)
    cached = list((tmp_path / "home" / "decoded").glob("folder-*.safetensors"))
    assert len(cached) == 1

    import cnnlab.data.folder as folder

    def no_decode(*args, **kw):
        raise AssertionError("decoded again although the folder did not change")

    monkeypatch.setattr(folder, "decode_files", no_decode)
    again = load_dataset(root, val_split=0)
    assert torch.equal(first.images, again.images) and first.classes == again.classes
    monkeypatch.undo()
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))

    # Rewrite one image: new size/mtime -> new key -> decoded again with the new pixels.
    new_pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    write_image(root / "a" / "000.png", new_pixels)
    os.utime(root / "a" / "000.png", ns=(1, 1))
    changed = load_dataset(root, val_split=0)
    assert torch.equal(changed.images[0], _chw(new_pixels))
    assert len(list((tmp_path / "home" / "decoded").glob("folder-*.safetensors"))) == 2


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root, ("a", "b"), per_class=2)
    first = load_dataset(root, val_split=0)
    (entry,) = (tmp_path / "home" / "decoded").glob("folder-*.safetensors")
    entry.write_bytes(b"not safetensors")
    assert torch.equal(load_dataset(root, val_split=0).images, first.images)


def test_cache_key_depends_on_size_and_version(tmp_path, monkeypatch):
    key = {"root": "r", "size": (8, 8)}
    a = cache_file(tmp_path, "folder", key)
    assert a != cache_file(tmp_path, "folder", {**key, "size": (9, 9)})
    import cnnlab.data.cache as cache

    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert a != cache_file(tmp_path, "folder", key)


def test_options_object_and_overrides(tmp_path):
    make_class_folder(tmp_path / "d", per_class=5)
    opts = LoadOptions(val_split=0.4, seed=2, root=tmp_path / "elsewhere")
    splits = load_splits(tmp_path / "d", opts, image_size=(4, 4))
    assert splits.train.shape == (3, 4, 4) and len(splits.val) == 6
    assert list((tmp_path / "elsewhere" / "decoded").glob("*.safetensors"))


# --- hostile images and folders (issue 13) -----------------------------------------------------


def _warnings_of(fn):
    """fn()'s result and the text of every DataWarning it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, " | ".join(str(w.message) for w in caught if w.category is DataWarning)


def test_decompression_bomb_is_skipped_and_named_with_the_limit(tmp_path, monkeypatch):
    from PIL import ImageFile

    make_class_folder(tmp_path / "d", ("a", "b"), per_class=3)
    (tmp_path / "d" / "a" / "bomb.png").write_bytes(png_bomb())
    loaded = []  # the bomb must be refused from its header, before its pixels are decoded
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda im: loaded.append(im.size) or real_load(im)
    )
    train, text = _warnings_of(lambda: load_dataset(tmp_path / "d", val_split=0, workers=0))
    assert len(train) == 6 and (8, 8) in loaded and (30000, 30000) not in loaded
    assert "bomb.png: 30000x30000 image over the limit of 178,956,970 pixels" in text
    with pytest.raises(CorruptImageError, match="30000x30000 image over the limit"):
        decode_image_bytes(png_bomb(), 3, source="bomb.png")


@pytest.mark.parametrize(
    "data",
    [png_bomb(20000, 9000), image_bytes(class_pixels(0, 0), "JPEG")],
    ids=["png", "jpeg"],
)
def test_pixel_limit_is_checked_from_every_header(data, monkeypatch):
    from cnnlab.data import decode

    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 63)  # an 8x8 JPEG is now over the limit
    with pytest.raises(CorruptImageError, match="over the limit of 63 pixels"):
        decode_image_bytes(data, 3, source="big")


def test_bmp_and_gif_bombs_are_refused_through_pil(monkeypatch):
    from cnnlab.data import decode

    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 63)
    for fmt in ("BMP", "GIF"):
        with pytest.raises(CorruptImageError, match="8x8 image over the limit of 63"):
            decode_image_bytes(image_bytes(class_pixels(0, 0), fmt), 3, source="x")


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 65535, 32896]] * 4, dtype=np.uint16)  # 32896 = 128 * 257
    gray = decode_image_bytes(png16_bytes(values), channels=1)
    assert gray.dtype == torch.uint8 and gray[0, 0].tolist() == [0, 1, 255, 128]
    assert decode_image_bytes(png16_bytes(values), channels=3).shape == (3, 4, 4)
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2, size=(4, 4))
    (tmp_path / "d" / "a" / "deep.png").write_bytes(png16_bytes(values))
    train = load_dataset(tmp_path / "d", val_split=0)
    assert len(train) == 5 and not train.skipped


def test_animated_gif_among_grayscale_gives_its_first_frame(tmp_path):
    frames = [class_pixels(3, i) for i in range(3)]
    data = animated_gif(frames)
    first = decode_image_bytes(data, channels=3)
    assert first.shape == (3, 8, 8)
    assert torch.equal(decode_image_bytes(data, channels=1), decode_image_bytes(data, 1))
    assert decode_image_bytes(data, channels=1).shape == (1, 8, 8)
    for name in ("a", "b"):
        for i in range(3):
            write_image(tmp_path / "g" / name / f"{i}.png", class_pixels(0, i), mode="L")
    (tmp_path / "g" / "a" / "anim.gif").write_bytes(data)
    train = load_dataset(tmp_path / "g", val_split=0, channels=1)
    assert train.shape == (1, 8, 8) and len(train) == 7 and not train.skipped


def _symlink_cases(root, case, outside):
    make_class_folder(root, ("a", "b"), per_class=2)
    if case == "file loop":
        os.symlink("loop.png", root / "a" / "loop.png")
        return root / "a" / "loop.png", "Too many levels of symbolic links"
    if case == "broken file":
        os.symlink("gone.png", root / "a" / "x.png")
        return root / "a" / "x.png", "No such file"
    if case == "dir loop":
        os.symlink(".", root / "a" / "again")
        return root / "a" / "again", "a link cycle"
    if case == "class to root":
        os.symlink("/", root / "everything")
        return root / "everything", "links to /, which holds it"
    if case == "class to dataset":
        os.symlink(root, root / "c")
        return root / "c", "which holds it"
    make_class_folder(outside, ("x",), per_class=2)
    os.symlink(outside / "x", root / "a" / "elsewhere")
    return root / "a" / "elsewhere", f"outside {root.resolve()}"


@pytest.mark.parametrize(
    "case",
    ["file loop", "broken file", "dir loop", "class to root", "class to dataset", "nested out"],
)
def test_links_are_followed_only_where_safe_and_skips_named(tmp_path, case):
    root = tmp_path / "d"
    link, reason = _symlink_cases(root, case, tmp_path / "outside")
    layout, text = _warnings_of(lambda: scan_folder(root))
    assert layout.classes == ["a", "b"]
    assert len(layout.splits["train"].files) == 4
    assert f"{link}: " in text and reason in text


def test_class_folder_linked_from_elsewhere_is_still_read(tmp_path):
    make_class_folder(tmp_path / "pool", ("cats", "dogs"), per_class=2)
    (tmp_path / "d").mkdir()
    for name in ("cats", "dogs"):
        os.symlink(tmp_path / "pool" / name, tmp_path / "d" / name)
    layout, text = _warnings_of(lambda: scan_folder(tmp_path / "d"))
    assert layout.classes == ["cats", "dogs"] and len(layout.splits["train"].files) == 4
    assert text == ""


def test_fifo_named_like_an_image_is_skipped_not_read(tmp_path):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2)
    os.mkfifo(tmp_path / "d" / "a" / "pipe.png")
    train, text = _warnings_of(lambda: load_dataset(tmp_path / "d", val_split=0))
    assert len(train) == 4 and "pipe.png: not a regular file" in text
    with pytest.raises(CorruptImageError, match="not a regular file"):
        read_image(tmp_path / "d" / "a" / "pipe.png")


@pytest.mark.parametrize("source", ["", "  "])
def test_empty_source_is_refused_not_the_working_directory(tmp_path, monkeypatch, source):
    make_class_folder(tmp_path / "cwd", ("a", "b"), per_class=2)
    monkeypatch.chdir(tmp_path / "cwd")  # a loadable folder: the old code trained on it
    with pytest.raises(DataError, match=f"data source '{source}' is empty.*digits"):
        load_splits(source)
    with pytest.raises(DataError, match="is empty"):
        scan_folder(source)


def test_one_class_dataset_is_refused(tmp_path):
    make_class_folder(tmp_path / "d", ("only",), per_class=4)
    with pytest.raises(DataError, match=r"one class folder \(only\).*at least 2 classes"):
        load_splits(tmp_path / "d")


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_class_folder_without_images_is_named(tmp_path, content):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2)
    (tmp_path / "d" / "empty").mkdir()
    if content:
        (tmp_path / "d" / "empty" / content).write_text("x")
    with pytest.raises(DataError, match=r"d/empty: class folder without images.*remove the"):
        load_splits(tmp_path / "d")


def test_hidden_folders_are_still_ignored(tmp_path):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2)
    (tmp_path / "d" / ".ipynb_checkpoints").mkdir()
    assert scan_folder(tmp_path / "d").classes == ["a", "b"]


@pytest.mark.parametrize("size", ["100000x100000", "13377x13378", 200000])
def test_huge_image_size_is_refused_before_allocating(tmp_path, size):
    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2)
    with pytest.raises(DataError, match=r"image size \d+x\d+ has [\d,]+ pixels, over the limit"):
        load_splits(tmp_path / "d", image_size=size)


def test_decoded_size_is_checked_against_free_memory(tmp_path, monkeypatch):
    from cnnlab.data import imageset

    make_class_folder(tmp_path / "d", ("a", "b"), per_class=2)
    monkeypatch.setattr(imageset, "host_memory_available", lambda: 1000)
    with pytest.raises(DataError, match=r"4 images of 30x30x3 need .* GB of free memory"):
        load_splits(tmp_path / "d", image_size="30x30", cache=False)
    with pytest.raises(DataError, match=r"digits: 1,797 images of 30x30x1"):
        load_splits("digits", image_size="30x30")
