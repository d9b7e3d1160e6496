"""timm models as ``timm:NAME``: built without weights, summarized, trained on digits, saved,
reloaded from a local weights file (timm's ``pretrained_cfg_overlay``) and fine-tuned on a
frozen backbone whose BatchNorm statistics stay bit-identical; timm absent. Offline: no test
downloads weights."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from cnnlab.data import DataConfig
from cnnlab.errors import MissingDependencyError, UnknownModelError, WeightsError
from cnnlab.models import build, create_model, record_of
from cnnlab.models.timm_models import pretrained_config
from cnnlab.summary import summary
from cnnlab.train import TrainConfig, fit, load_run
from cnnlab.train.checkpoint import load_weights
from cnnlab.transfer import FinetuneConfig, backbone_blocks, finetune
from transfer_helpers import write_digit_folder

NAME = "timm:test_resnet"  # timm's 0.37 M-parameter ResNet for tests
QUIET = {"progress": "none", "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("digits")
    return write_digit_folder(root / "a", range(3)), write_digit_folder(root / "b", range(3, 6))


@pytest.fixture(scope="module")
def timm_run(halves, tmp_path_factory) -> Path:
    """timm:test_resnet trained for one epoch (14 steps) on digits 0-2 at 16x16 grey."""
    run = tmp_path_factory.mktemp("pre") / "test_resnet"
    data = DataConfig(str(halves[0]), image_size=(16, 16), batch_size=32)
    fit(NAME, data, TrainConfig(epochs=1, run_dir=str(run), **QUIET))
    return run


def test_summary_rows_params_and_macs_like_ours():
    model = build(NAME, input_shape="32x32x3", num_classes=5, device="meta")
    s = summary(model)
    names = [row[0].split(" ")[0] for row in s.cells()]
    assert {"conv1.0", "bn1", "layer1.0", "layer4.0", "fc"} <= set(names)
    real = create_model(NAME, input_shape="32x32x3", num_classes=5)
    weights = sum(p.numel() for p in real.parameters())
    stats = sum(b.numel() for n, b in real.named_buffers() if "running_" in n)
    lines = "\n".join(s.totals_lines())
    assert f"Total params: {weights + stats:,}" in lines
    assert f"Non-trainable params: {stats:,}" in lines
    assert "MACs: " in lines and "MACs: 0 " not in lines
    assert record_of(model).input_shape == (3, 32, 32)
    default = build(NAME, device="meta")  # timm's pretrained config: 160x160x3, 1000 classes
    assert (
        record_of(default).input_shape == (3, 160, 160) and record_of(default).num_classes == 1000
    )


def test_trained_run_rebuilds_and_reloads_from_a_local_file(timm_run, tmp_path):
    run = load_run(timm_run)
    assert record_of(run.model).name == NAME
    rebuilt = build(timm_run)  # from config.yaml alone
    assert type(rebuilt).__name__ == "ResNet" and record_of(rebuilt).input_shape == (1, 16, 16)
    file = tmp_path / "test_resnet-digits.safetensors"
    shutil.copy(timm_run / "model.safetensors", file)
    loaded = create_model(NAME, input_shape="16x16x1", num_classes=3, pretrained=file)
    x = torch.rand(4, 1, 16, 16)
    run.model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), run.model(x))  # the head of 3 classes came too
    report = record_of(loaded).pretrained
    assert report.source == str(file) and not report.new_head
    assert report.mean == tuple(pretrained_config(NAME)["mean"])  # what timm's config says


def test_finetune_frozen_backbone_keeps_bn_bit_identical_then_last_block_trains(
    timm_run, halves, tmp_path
):
    file = tmp_path / "backbone.safetensors"
    shutil.copy(timm_run / "model.safetensors", file)
    out = tmp_path / "ft"
    finetune(
        NAME,
        DataConfig(str(halves[1]), batch_size=16),
        TrainConfig(run_dir=str(out), **QUIET),
        FinetuneConfig(
            weights=str(file),
            image_size=(16, 16),
            head="flatten",
            freeze_epochs=1,
            epochs=1,
            unfreeze="last:1",
            feature_cache="off",
        ),
    )
    before = load_weights(file)
    frozen = load_weights(out / "1-head" / "last.safetensors")
    tuned = load_weights(out / "2-finetune" / "last.safetensors")
    stats = [k for k in before if "running_" in k]
    assert stats
    for key in stats:  # stage 1: every BN statistic bit-identical
        assert torch.equal(before[key], frozen[f"backbone.{key}"]), key
    blocks = [name for name, _ in backbone_blocks(load_run(out).model.backbone)]
    assert blocks == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4"]  # timm's groups
    for key, value in before.items():  # stage 2, last:1: layer4 moves, the rest stays
        if key.startswith("fc.") or key.startswith("conv1.0."):  # head; 1->3 channels adapted
            continue
        moved = not torch.equal(value, tuned[f"backbone.{key}"])
        assert moved == key.startswith("layer4."), key


def test_weights_that_do_not_fit_are_named(tmp_path):
    other = create_model("timm:mobilenetv3_small_050", input_shape="32x32x3", num_classes=5)
    file = tmp_path / "resnet.safetensors"
    from safetensors.torch import save_file

    save_file(create_model(NAME, num_classes=5).state_dict(), file)
    renewed = create_model(NAME, num_classes=7, pretrained=file)  # another head: timm's rule
    assert record_of(renewed).pretrained.new_head == ["fc.weight", "fc.bias"]
    file = tmp_path / "mobilenet.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, file)
    with pytest.raises(WeightsError, match=r"mobilenet.safetensors do not fit.*missing keys"):
        create_model(NAME, input_shape="32x32x3", num_classes=5, pretrained=file)
    with pytest.raises(UnknownModelError, match="unknown timm model 'timm:test_resnetx'"):
        build("timm:test_resnetx")


def test_cli_models_timm_and_summary():
    from typer.testing import CliRunner

    from cnnlab.cli import app

    listed = CliRunner().invoke(app, ["models", "--timm", "resnet10"])
    assert listed.exit_code == 0, listed.output
    assert "timm:resnet10t" in listed.output and "176x176x3" in listed.output
    assert "timm:resnet18" not in listed.output
    shown = CliRunner().invoke(app, ["summary", NAME, "--input-shape", "64x64x3", "-c", "7"])
    assert shown.exit_code == 0, shown.output
    assert "layer3.0 (Bottleneck)" in shown.output and "(None, 7)" in shown.output


def test_compare_entries_take_timm_names_with_options():
    from cnnlab.compare import parse_entries

    plain, tuned = parse_entries([NAME, f"{NAME}:drop_rate=0.1"])
    assert (plain.model, plain.options) == (NAME, {})
    assert (tuned.model, tuned.options, tuned.slug) == (
        NAME,
        {"drop_rate": 0.1},
        "timm_test_resnet_drop_rate-0.1",
    )
    with pytest.raises(UnknownModelError, match="timm:nonesuch"):
        parse_entries(["timm:nonesuch"])


def test_timm_absent_says_how_to_install(monkeypatch):
    from typer.testing import CliRunner

    from cnnlab.cli import app
    from cnnlab.models.timm_models import timm_available

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    assert not timm_available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'cnnlab\[timm\]'"):
        create_model(NAME, num_classes=3)
    result = CliRunner().invoke(app, ["summary", NAME])
    assert result.exit_code != 0
    assert "pip install 'cnnlab[timm]'" in result.output and "Traceback" not in result.output


def test_a_vit_backbone_pools_its_tokens_and_freezes_every_parameter():
    from cnnlab.models.transfer import build_transfer_model
    from cnnlab.transfer.backbone import load_backbone

    pre = load_backbone("timm:test_vit", "none", (32, 32))
    model = build_transfer_model(pre.backbone, 4, pool="flatten", trainable="none")
    assert model.feature_shape == (64,)  # timm's token pooling, not a map
    blocks = [name for name, _ in backbone_blocks(model.backbone)]
    assert blocks[0] == "patch_embed+cls_token+pos_embed" and blocks[-1] == "blocks.5+norm"
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "head.1.weight",
        "head.1.bias",
    ]
    model.train()
    with_weights = [  # the root holds cls_token, which has no mode
        m for n, m in model.backbone.named_modules() if n and list(m.parameters(recurse=False))
    ]
    assert not any(m.training for m in with_weights)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_lesson_003_xception_is_timms_keras_port(monkeypatch):
    """timm's legacy_xception has the lesson's Keras Xception counts exactly (22,910,480 in
    all, 54,528 BatchNorm statistics); without timm the lesson falls back to the zoo's."""
    from cnnlab.lessons.l003 import COUNTS, xception_backbone

    assert xception_backbone() == "timm:legacy_xception"
    lines = "\n".join(summary(build("timm:legacy_xception", device="meta")).totals_lines())
    assert f"Total params: {COUNTS['xception']['total']:,}" in lines
    assert f"Non-trainable params: {COUNTS['xception']['non-trainable']:,}" in lines
    monkeypatch.setitem(sys.modules, "timm", None)
    assert xception_backbone() == "xception"


def test_an_unreachable_hub_is_not_asked_and_the_error_says_so(monkeypatch, tmp_path):
    """Offline, huggingface_hub would retry each file for ~25 s before falling back on its
    cache; cnnlab asks it in offline mode instead (an empty cache here: it must fail at once)."""
    import huggingface_hub.constants as hub
    import timm

    from cnnlab.models import hub_offline

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hub_offline, "hub_reachable", lambda timeout=3.0: False)
    seen, real = [], timm.create_model

    def spy(*args, **kwargs):
        seen.append(hub.HF_HUB_OFFLINE)
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    with pytest.raises(WeightsError, match=r"huggingface.co:443 cannot be reached.*no copy"):
        create_model(NAME, pretrained="imagenet", num_classes=3)
    assert seen == [True] and hub.HF_HUB_OFFLINE is False  # forced for that call only


def test_hub_reachable_tries_a_connection_unless_a_proxy_is_set(monkeypatch):
    from cnnlab.models.hub_offline import hub_address, hub_reachable

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert hub_address() == ("127.0.0.1", 9)
    assert hub_reachable(timeout=1.0) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_reachable(timeout=1.0) is True  # through a proxy there is no telling
