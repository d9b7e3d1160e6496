"""Keras-style summary: rows, shapes, counts and MACs against the lessons' printouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.explain import explain, padding_table
from cnnlab.layers import Conv2d, Dense
from cnnlab.models import create_model
from cnnlab.summary import summary


def test_basic_cnn_matches_lesson_000():
    s = summary("basic_cnn")
    # lesson 000's printout: five rows, then our flatten of the (1, 1, 10) map into logits
    expected = [
        ("(None, 15, 15, 16)", 448),
        ("(None, 7, 7, 16)", 0),
        ("(None, 3, 3, 32)", 4640),
        ("(None, 1, 1, 32)", 0),
        ("(None, 1, 1, 10)", 330),
    ]
    assert [(r.keras_shape, r.params) for r in s.rows[:5]] == expected
    assert s.rows[-1].keras_shape == "(None, 10)"
    assert (s.counts.total, s.counts.trainable, s.counts.non_trainable) == (5418, 5418, 0)
    # MACs by hand: 15*15*16*27 + 3*3*32*144 + 32*10
    assert s.macs == 15 * 15 * 16 * 27 + 3 * 3 * 32 * 144 + 32 * 10
    assert s.rows[0].macs == 15 * 15 * 16 * 27
    assert s.param_bytes == 5418 * 4


RESNET34_UNITS = (
    [74240] * 3 + [230912] + [295936] * 3 + [920576] + [1181696] * 5 + [3676160] + [4722688] * 2
)


def test_resnet34_lab_rows_match_lesson_001():
    s = summary("resnet34_lab")
    units = [r for r in s.rows if r.type == "ResidualUnit"]
    assert [r.params for r in units] == RESNET34_UNITS
    shapes = [r.keras_shape for r in units]
    assert shapes[0] == "(None, 56, 56, 64)"
    assert shapes[3] == "(None, 28, 28, 128)"
    assert shapes[7] == "(None, 14, 14, 256)"
    assert shapes[-1] == "(None, 7, 7, 512)"
    first = s.rows[0]
    assert (first.keras_shape, first.params) == ("(None, 112, 112, 64)", 9408)
    assert s.rows[1].params == 256  # BN: 128 trainable + 128 moving statistics
    assert s.rows[-1].params == 5130
    assert (s.counts.total, s.counts.trainable, s.counts.non_trainable) == (
        21_306_826,
        21_289_802,
        17_024,
    )


def test_depth_opens_blocks():
    shallow = summary("resnet34_lab", depth=1)
    deep = summary("resnet34_lab", depth=2)
    assert len(deep.rows) > len(shallow.rows)
    assert any(r.name == "layer1.0.conv1" for r in deep.rows)
    assert sum(r.params for r in deep.rows) == deep.counts.total


def test_summary_of_module_and_overrides():
    model = create_model("vgg16", num_classes=10, input_shape="32x32x3")
    s = summary(model)
    assert s.output_shape == (10,)
    assert s.rows[-1].keras_shape == "(None, 10)"
    s2 = summary("basic_cnn", input_shape="32x32x1", num_classes=4)
    assert s2.input_shape == (1, 32, 32)
    assert s2.output_shape == (4,)


def test_summary_counts_frozen_params_as_non_trainable():
    model = create_model("vgg16_base")
    for p in model.parameters():
        p.requires_grad_(False)
    s = summary(model)
    assert (s.counts.trainable, s.counts.non_trainable) == (0, 14_714_688)  # lesson 004


def test_summary_text_and_print_fn():
    s = summary("basic_cnn")
    lines: list[str] = []
    s.print(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 5,418" in text
    assert "conv1 (ConvBNAct)" in text and "(None, 15, 15, 16)" in text
    assert "Non-trainable params: 0" in text


def test_summary_does_not_touch_real_module_state():
    model = nn.Sequential(Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), Dense(4 * 6 * 6, 2))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model keeps its own mode
    before = model[1].running_mean.clone()
    summary(model, "8x8x1")
    assert model.training and model[0].training
    assert not model[1].training
    assert torch.equal(model[1].running_mean, before)
    assert int(model[1].num_batches_tracked) == 0


def test_summary_bad_input_names_the_shape():
    with pytest.raises(ShapeError, match="2x2x3"):
        summary("basic_cnn", input_shape="2x2x3")
    with pytest.raises(ShapeError, match="input_shape is required"):
        summary(nn.Linear(3, 2))
    with pytest.raises(ShapeError, match="depth=0"):
        summary("basic_cnn", depth=0)


def test_explain_basic_cnn_arithmetic():
    rows = explain("basic_cnn")
    assert [r.height for r in rows] == [
        "(32 - 3 + 2*0)/2 + 1 = 15",
        "(15 - 2 + 2*0)/2 + 1 = 7",
        "(7 - 3 + 2*0)/2 + 1 = 3",
        "(3 - 2 + 2*0)/2 + 1 = 1",
    ]


def test_explain_same_padding_at_stride_two():
    rows = explain("resnet34_lab")
    stem = rows[0]
    assert stem.out_shape == (64, 112, 112)
    assert stem.height.startswith("ceil(224/2) = 112")
    assert "pads 2+3" in stem.height  # Keras pads the extra pixel at the bottom/right


def test_padding_table_lesson_004():
    table = {p: out for p, out, _ in padding_table(28, 5)}
    assert table == {"valid": 24, "same": 28, "full": 32}
    with pytest.raises(ShapeError, match="kernel=0"):
        padding_table(28, 0)


def test_zoo_rows_are_cached_keyed_on_the_source(tmp_path, monkeypatch):
    """`cnnlab models` measures the zoo once per source; later calls read the cached rows."""
    from cnnlab import catalog

    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path))
    fresh = catalog.zoo_rows("lenet*", use_cache=False)
    assert [r.params for r in fresh] == [61_706, 61_706]
    everything = catalog.zoo_rows()
    assert catalog.cache_path().is_file()
    with monkeypatch.context() as patch:
        patch.setattr(catalog, "measure", lambda name: pytest.fail(f"measured {name} again"))
        assert catalog.zoo_rows("lenet*") == fresh
        assert catalog.zoo_rows() == everything
    catalog.cache_path().write_text('{"rows": [{"name": "lenet5"}]}')  # damaged: measured again
    assert catalog.zoo_rows("lenet*") == fresh
    stale = tmp_path / "zoo-0000000000000000.json"
    stale.write_text("{}")
    catalog.cache_path().unlink()
    catalog.zoo_rows("lenet5")
    assert not stale.exists()  # rows of an earlier source are removed when new ones are kept


def test_zoo_cache_key_follows_the_measuring_source(tmp_path, monkeypatch):
    from cnnlab import catalog

    for entry in catalog.MEASURED_BY:
        path = tmp_path / entry
        file = path if entry.endswith(".py") else path / "x.py"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("# v1\n")
    monkeypatch.setattr(catalog, "PACKAGE", tmp_path)
    first = catalog.source_key()
    (tmp_path / "train.py").write_text("# not measured\n")
    assert catalog.source_key() == first
    (tmp_path / "layers" / "x.py").write_text("# v2\n")
    assert catalog.source_key() != first


def test_summary_of_a_run_folder(tmp_path):
    """A run folder is summarized from its saved description (through models.build)."""
    from transfer_helpers import write_run

    run = write_run(tmp_path / "run", create_model("lenet5", num_classes=3), list("abc"))
    s = summary(run)
    assert (s.name, s.input_shape, s.output_shape) == ("lenet5", (1, 28, 28), (3,))
    assert s.counts.total == summary("lenet5", num_classes=3).counts.total
