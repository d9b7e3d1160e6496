"""Batched augmentation: parsing, exact agreement with a per-image reference implementation,
and the properties of each transform (flip mirrors, crops are windows, translate fills zeros,
saturation and brightness stay in range), determinism under a seed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.augment import (
    AUGMENT_PRESETS,
    LUMA,
    AugmentConfig,
    Geometry,
    augment_batch,
    gather_batch,
    parse_augment,
    sample_geometry,
)
from cnnlab.errors import DataError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 3, h: int = 7, w: int = 9, seed: int = 1) -> torch.Tensor:
    """Random uint8 images; non-square so a mixed-up height/width shows."""
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen(seed))


def windows(padded: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """Every h x w window of one padded (C, H', W') image."""
    hp, wp = padded.shape[1:]
    return [padded[:, i : i + h, j : j + w] for i in range(hp - h + 1) for j in range(wp - w + 1)]


def window_index(image: torch.Tensor, padded: torch.Tensor) -> int:
    """Index of the first window of ``padded`` equal to ``image`` (asserting there is one)."""
    h, w = image.shape[1:]
    hits = [k for k, win in enumerate(windows(padded, h, w)) if torch.equal(win, image)]
    assert len(hits) >= 1, "output is not a window of the padded image"
    return hits[0]


# --- parsing -------------------------------------------------------------------------------


def test_parse_full_string():
    cfg = parse_augment("flip, crop=4,translate=2,saturation=0:2,brightness=0.2")
    assert cfg == AugmentConfig(
        flip=True, pad_crop=4, translate=2, saturation=(0.0, 2.0), brightness=0.2
    )
    assert parse_augment(cfg.to_text()) == cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", AugmentConfig()),
        ("", AugmentConfig()),
        ("flowers", AugmentConfig(flip=True, saturation=(0.0, 2.0))),
        ("cifar", AugmentConfig(flip=True, pad_crop=4)),
        ("cifar,brightness=0.1", AugmentConfig(flip=True, pad_crop=4, brightness=0.1)),
        ("cifar,flip=false", AugmentConfig(pad_crop=4)),
        ("crop=2,padding=zeros", AugmentConfig(pad_crop=2, pad_mode="zeros")),
        ("FLIP", AugmentConfig(flip=True)),
    ],
)
def test_parse_presets_and_combinations(text, expected):
    assert parse_augment(text) == expected
    assert parse_augment(expected.to_text()) == expected


def test_presets_round_trip_and_identity():
    assert AUGMENT_PRESETS["none"].is_identity
    assert AUGMENT_PRESETS["none"].to_text() == "none"
    assert not AUGMENT_PRESETS["cifar"].is_identity


@pytest.mark.parametrize(
    ("text", "expected_in_message"),
    [
        ("flip,rotate=10", ["'rotate=10'", "crop", "saturation", "presets"]),
        ("crop=x", ["'crop=x'", "'x'", "integer"]),
        ("crop", ["'crop'", "needs a value"]),
        ("crop=-1", ["crop", "-1"]),
        ("crop=2.5", ["'2.5'", "integer"]),
        ("saturation=2", ["LOWER:UPPER"]),
        ("saturation=2:1", ["lower <= upper", "2.0:1.0"]),
        ("brightness=1.5", ["brightness", "1.5"]),
        ("padding=wrap", ["'wrap'", "reflect", "zeros"]),
        ("flip=maybe", ["'maybe'", "true/false"]),
    ],
)
def test_parse_errors_name_the_token(text, expected_in_message):
    with pytest.raises(DataError) as info:
        parse_augment(text)
    for part in expected_in_message:
        assert part in str(info.value)


def test_config_validates_types():
    with pytest.raises(DataError, match="integer"):
        AugmentConfig(pad_crop=2.0)
    with pytest.raises(DataError, match="translate"):
        AugmentConfig(translate=-3)


# --- geometry ------------------------------------------------------------------------------


def test_identity_config_returns_input_and_identity_maps_copy():
    x = images()
    assert augment_batch(x, AugmentConfig(), gen()) is x
    idx = torch.tensor([3, 0, 3, 5])
    identity = Geometry(torch.arange(7).expand(4, 7), torch.arange(9).expand(4, 9), False)
    assert torch.equal(gather_batch(x, idx, identity), x[idx])
    assert torch.equal(gather_batch(x, idx, None), x[idx])


def test_flip_mirrors_exactly_the_flipped_images():
    x = images(n=64)
    out = augment_batch(x, AugmentConfig(flip=True), gen())
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(
        f != k for f, k in zip(flipped, kept, strict=True)
    )  # each image exactly one of the two
    assert 10 < sum(flipped) < 54  # p = 0.5


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_crops_are_windows_of_the_padded_image(mode):
    x = images(n=24)
    out = augment_batch(x, AugmentConfig(pad_crop=2, pad_mode=mode), gen(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect" if mode == "reflect" else "constant")
    offsets = {window_index(o.float(), p) for o, p in zip(out, padded, strict=True)}
    assert len(offsets) > 5  # offsets really vary


def test_translate_fills_zeros_and_shifts():
    x = torch.full((128, 1, 6, 6), 200, dtype=torch.uint8)
    out = augment_batch(x, AugmentConfig(translate=2), gen())
    assert set(out.unique().tolist()) <= {0, 200}
    padded = F.pad(x.float(), (2, 2, 2, 2))  # translate = crop of a zero-padded image
    for o, p in zip(out, padded, strict=True):
        window_index(o.float(), p)
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() > 0 and (zeros == 0).any()
    assert zeros.max() <= 36 - 4 * 4  # shifts of at most 2 keep a 4x4 block


def test_translate_larger_than_image_gives_blank_images_sometimes():
    x = torch.full((40, 1, 3, 3), 9, dtype=torch.uint8)
    out = augment_batch(x, AugmentConfig(translate=5), gen())
    assert (out.flatten(1).sum(1) == 0).any()


def test_reflect_crop_larger_than_image_is_refused():
    with pytest.raises(DataError, match="padding=zeros"):
        augment_batch(images(h=4, w=4), AugmentConfig(pad_crop=4), gen())


def reference_geometry(x, cfg: AugmentConfig, generator):
    """Per-image reference: draw parameters in the documented order, then pad/crop/shift/flip."""
    n, _, h, w = x.shape
    p, t = cfg.pad_crop, cfg.translate
    dy = torch.randint(-p, p + 1, (n, 1), generator=generator).flatten()
    dx = torch.randint(-p, p + 1, (n, 1), generator=generator).flatten()
    ty = torch.randint(-t, t + 1, (n, 1), generator=generator).flatten()
    tx = torch.randint(-t, t + 1, (n, 1), generator=generator).flatten()
    flip = (torch.rand((n, 1), generator=generator) < 0.5).flatten()
    out = []
    for k in range(n):
        img = F.pad(x[k : k + 1].float(), (p, p, p, p), mode="reflect")[0]
        img = img[:, dy[k] + p : dy[k] + p + h, dx[k] + p : dx[k] + p + w]
        img = F.pad(img, (t, t, t, t))  # zeros
        img = img[:, t - ty[k] : t - ty[k] + h, t - tx[k] : t - tx[k] + w]
        out.append(img.flip(-1) if flip[k] else img)
    return torch.stack(out)


@pytest.mark.parametrize("channels", [1, 3])
def test_combined_geometry_equals_per_image_reference(channels):
    x = images(n=20, c=channels)
    cfg = AugmentConfig(flip=True, pad_crop=3, translate=2)
    out = augment_batch(x, cfg, gen(7))
    assert torch.equal(out.float(), reference_geometry(x, cfg, gen(7)))


def test_gather_from_dataset_equals_augmenting_the_picked_batch():
    data = images(n=30)
    idx = torch.tensor([29, 4, 4, 17, 0])
    cfg = AugmentConfig(flip=True, pad_crop=2, translate=1)
    geometry = sample_geometry(cfg, len(idx), 7, 9, gen(5))
    fused = gather_batch(data, idx, geometry)
    assert torch.equal(fused, augment_batch(data[idx], cfg, gen(5)))
    fused_cl = gather_batch(data, idx, geometry, channels_last=True)
    assert fused_cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fused_cl, fused)


def test_same_seed_same_batch_other_seed_other_batch():
    x = images(n=32)
    cfg = parse_augment("flip,crop=2,translate=1,saturation=0:2,brightness=0.2")
    a = augment_batch(x, cfg, gen(11))
    assert torch.equal(a, augment_batch(x, cfg, gen(11)))
    assert not torch.equal(a, augment_batch(x, cfg, gen(12)))


# --- colour --------------------------------------------------------------------------------


def test_saturation_one_is_identity_and_zero_is_gray():
    x = images().float() / 255
    same = augment_batch(x, AugmentConfig(saturation=(1.0, 1.0)), gen())
    torch.testing.assert_close(same, x)
    gray = augment_batch(x, AugmentConfig(saturation=(0.0, 0.0)), gen())
    luma = sum(weight * x[:, c : c + 1] for c, weight in enumerate(LUMA))
    torch.testing.assert_close(gray, luma.expand_as(x))
    torch.testing.assert_close(x, images().float() / 255)  # the input is left untouched


def test_saturation_range_stays_in_unit_interval_and_varies():
    x = images(n=32).float() / 255
    out = augment_batch(x, AugmentConfig(saturation=(0.0, 2.0)), gen())
    assert out.min() >= 0 and out.max() <= 1
    spread = (out - out.mean(1, keepdim=True)).abs().flatten(1).mean(1)
    base = (x - x.mean(1, keepdim=True)).abs().flatten(1).mean(1)
    ratio = spread / base
    assert ratio.min() < 0.5 and ratio.max() > 1.2  # some desaturated, some saturated


def test_saturation_is_a_no_op_on_one_channel():
    x = images(c=1).float() / 255
    torch.testing.assert_close(augment_batch(x, AugmentConfig(saturation=(0.0, 2.0)), gen()), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_is_one_bounded_delta_per_image_then_clipped(channels):
    x = images(n=40, c=channels).float() / 255
    out = augment_batch(x, AugmentConfig(brightness=0.3), gen())
    assert out.min() >= 0 and out.max() <= 1
    inside = (out > 0) & (out < 1)
    deltas = []
    for o, i, m in zip(out, x, inside, strict=True):
        d = (o - i)[m]
        assert torch.allclose(d, d[0].expand_as(d), atol=1e-6)  # one delta per image
        deltas.append(float(d[0]))
    assert max(abs(d) for d in deltas) <= 0.3 + 1e-6
    assert min(deltas) < -0.05 and max(deltas) > 0.05
    assert (out == 0).any() and (out == 1).any()  # clipping happened


def test_colour_on_uint8_returns_float_unit_scale():
    x = images()
    out = augment_batch(x, AugmentConfig(brightness=0.0, saturation=(1.0, 1.0)), gen())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.float() / 255)


def test_bad_batch_shape_is_refused():
    with pytest.raises(DataError, match="N, C, H, W"):
        augment_batch(torch.zeros(3, 4, 4), AugmentConfig(flip=True), gen())
