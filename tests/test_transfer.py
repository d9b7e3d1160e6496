"""Transfer learning end to end: a run folder as backbone, staged unfreezing vs a random frozen
backbone, frozen BatchNorm, the feature cache, torchvision weights (lesson 004's VGG16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from cnnlab.data import DataConfig
from cnnlab.errors import ConfigError
from cnnlab.train import TrainConfig, fit, load_run
from cnnlab.train.checkpoint import load_weights
from cnnlab.transfer import FinetuneConfig, finetune
from cnnlab.viz.figures import save_stage_curves
from transfer_helpers import write_digit_folder, write_run

QUIET = {"progress": "none", "device": "cpu"}


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> tuple[Path, Path]:
    """Digits 0-4 and 5-9 as two folder datasets."""
    root = tmp_path_factory.mktemp("digits")
    return write_digit_folder(root / "a", range(5)), write_digit_folder(root / "b", range(5, 10))


def pretrain(halves, tmp_path_factory, model: str, epochs: int) -> Path:
    run = tmp_path_factory.mktemp("pre") / model
    data = DataConfig(str(halves[0]), image_size=(28, 28), batch_size=32)
    fit(model, data, TrainConfig(epochs=epochs, run_dir=str(run), **QUIET))
    return run


@pytest.fixture(scope="module")
def lenet_run(halves, tmp_path_factory) -> Path:
    return pretrain(halves, tmp_path_factory, "lenet5", 3)


@pytest.fixture(scope="module")
def bn_run(halves, tmp_path_factory) -> Path:
    return pretrain(halves, tmp_path_factory, "mini_resnet_bn", 1)


def small(halves, **kw) -> DataConfig:
    return DataConfig(str(halves[1]), batch_size=16, **kw)


def test_staged_unfreezing_beats_a_random_frozen_backbone(halves, lenet_run, tmp_path):
    """Pretrained on digits 0-4, fine-tuned on 5-9 (freeze 4 + unfreeze 4 epochs) against the
    same head on the same architecture, randomly initialized and frozen, for 8 epochs."""
    train = TrainConfig(lr=3e-3, schedule="rampup-exp", warmup_epochs=1, **QUIET)
    staged = finetune(
        lenet_run,
        small(halves),
        TrainConfig(**{**train.to_dict(), "run_dir": str(tmp_path / "staged")}),
        FinetuneConfig(freeze_epochs=4, epochs=4),
    )
    random = finetune(
        lenet_run,
        small(halves),
        TrainConfig(lr=3e-3, run_dir=str(tmp_path / "random"), **QUIET),
        FinetuneConfig(weights="none", freeze_epochs=8, epochs=0),
    )
    ours, theirs = (r.final_metrics["test"]["accuracy"] for r in (staged, random))
    assert ours >= 0.88, staged.stages
    assert ours >= theirs + 0.08, (ours, theirs)
    assert staged.feature_cache and set(staged.stages) == {"1-head", "2-finetune"}
    assert not (tmp_path / "staged" / "curves.png").exists()  # finetune draws nothing
    assert save_stage_curves(staged) == tmp_path / "staged" / "curves.png"
    assert (tmp_path / "staged" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    run = load_run(tmp_path / "staged")  # the parent folder loads its last stage
    assert run.path.name == "2-finetune" and run.classes == ["5", "6", "7", "8", "9"]


def bn_buffers(state: dict, prefix: str = "") -> dict:
    return {k.removeprefix(prefix): v for k, v in state.items() if "running_" in k}


@pytest.mark.parametrize("cache", ["on", "off"])
def test_frozen_batchnorm_statistics_do_not_move(halves, bn_run, tmp_path, cache):
    finetune(
        bn_run,
        small(halves),
        TrainConfig(run_dir=str(tmp_path / "ft"), **QUIET),
        FinetuneConfig(head="flatten", freeze_epochs=1, epochs=0, feature_cache=cache),
    )
    before = bn_buffers(load_weights(bn_run / "model.safetensors"))
    after = load_weights(tmp_path / "ft" / "1-head" / "last.safetensors")
    after = bn_buffers(after, "backbone.")
    assert before and before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_unfrozen_last_blocks_train_and_others_stay(halves, bn_run, tmp_path):
    finetune(
        bn_run,
        small(halves),
        TrainConfig(run_dir=str(tmp_path / "ft"), **QUIET),
        FinetuneConfig(head="flatten", freeze_epochs=0, epochs=1, unfreeze="last:2"),
    )
    run = load_run(tmp_path / "ft")
    blocks = [name for name, _ in __import__("cnnlab.transfer", fromlist=["x"]).backbone_blocks(
        run.model.backbone)]  # fmt: skip
    before = load_weights(bn_run / "model.safetensors")
    after = load_weights(tmp_path / "ft" / "2-finetune" / "model.safetensors")
    for key, value in before.items():
        if "running_" in key or key.startswith(("fc", "dense", "classifier")):
            continue
        moved = not torch.equal(value, after[f"backbone.{key}"])
        trained = any(key.startswith(b + ".") for b in blocks[-2:])
        assert moved == trained, key


def test_feature_cache_gives_the_slow_paths_head(halves, lenet_run, tmp_path):
    heads = {}
    for cache in ("on", "off"):
        result = finetune(
            lenet_run,
            small(halves),
            TrainConfig(run_dir=str(tmp_path / cache), precision="fp32", **QUIET),
            FinetuneConfig(freeze_epochs=3, epochs=0, feature_cache=cache, dropout=0.3),
        )
        assert result.feature_cache == (cache == "on")
        state = load_weights(tmp_path / cache / "1-head" / "last.safetensors")
        heads[cache] = {k: v for k, v in state.items() if k.startswith("head.")}
    assert heads["on"].keys() == heads["off"].keys()
    for key, value in heads["on"].items():
        torch.testing.assert_close(value, heads["off"][key], rtol=1e-4, atol=1e-5)


def test_lesson_004_frozen_vgg16_from_a_torchvision_file(tmp_path):
    """torchvision's vgg16() state dict, the conv base at 32x32 frozen, lesson 004's head."""
    torch.manual_seed(0)
    reference = torchvision.models.vgg16().state_dict()
    torch.save(reference, tmp_path / "vgg16.pth")
    result = finetune(
        "vgg16",
        DataConfig("digits", batch_size=64),
        TrainConfig(run_dir=str(tmp_path / "ft"), **QUIET),
        FinetuneConfig(
            weights=str(tmp_path / "vgg16.pth"),
            image_size="32x32",
            head="flatten",
            hidden=(512,),
            dropout=0.5,
            freeze_epochs=2,
            epochs=0,
        ),
    )
    assert "its head (classifier: 6 tensors) unused" in result.weights
    summary = (tmp_path / "ft" / "1-head" / "summary.txt").read_text()
    for line in (
        "Total params: 14,982,474",
        "Trainable params: 267,786",
        "Non-trainable params: 14,714,688",
    ):
        assert line in summary
    run = load_run(tmp_path / "ft")
    assert run.input_shape == (3, 32, 32)  # grey digits become RGB at the backbone's size
    assert run.normalizer.mean == (0.485, 0.456, 0.406)
    # random-init weights give near-constant features, so no accuracy claim: the conv base is
    # torchvision's, untouched; the head trained (lesson 004 reaches 51.8% with ImageNet's)
    trained = load_weights(tmp_path / "ft" / "1-head" / "model.safetensors")
    for key in ("features.0.weight", "features.28.bias"):
        assert torch.equal(trained[f"backbone.{key}"], reference[key])
    assert len(result.stages["1-head"]) == 2
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.stages["1-head"])


def test_bad_options_are_named(halves, lenet_run, tmp_path):
    cases = [
        (FinetuneConfig(head="max"), "head 'max' is not one of: gap, flatten"),
        (FinetuneConfig(freeze_epochs=0, epochs=0), "nothing to train"),
        (FinetuneConfig(unfreeze="first:2"), "unfreeze 'first:2' must be 'all' or 'last:K'"),
        (FinetuneConfig(unfreeze="last:99", freeze_epochs=0), r"1 <= K <= \d+"),
        (FinetuneConfig(backbone_lr_mult=0), "backbone_lr_mult must be > 0"),
        (FinetuneConfig(image_size="32x32"), "trained its model on 28x28 images"),
        (FinetuneConfig(feature_cache="on"), "feature cache asked for but impossible"),
    ]
    for i, (options, message) in enumerate(cases):
        data = small(halves, augment="flip") if options.feature_cache == "on" else small(halves)
        with pytest.raises(ConfigError, match=message):
            finetune(lenet_run, data, TrainConfig(run_dir=str(tmp_path / str(i)), **QUIET), options)


def test_image_size_is_refused_only_when_the_backbone_cannot_take_it(tmp_path):
    """A backbone ending in global pooling takes another size (its weights do not depend on
    it); a flatten before a dense layer, or a size the pools cannot take, is refused."""
    from cnnlab.models import create_model
    from cnnlab.transfer import load_backbone

    gap = create_model("squeezenet_flowers", input_shape="32x32x1", num_classes=3)
    gap_run = write_run(tmp_path / "gap", gap, ["a", "b", "c"])
    pre = load_backbone(gap_run, image_size="64x64")
    assert pre.backbone.input_shape == (1, 64, 64)
    assert pre.report is not None and len(pre.report.loaded) == len(gap.state_dict()) - 2
    assert pre.backbone.desc["model"]["input_shape"] == "64x64x1"
    with torch.no_grad():
        assert pre.backbone.trunk(torch.zeros(2, 1, 64, 64)).shape[:2] == (2, 48)
    with pytest.raises(ConfigError, match=r"trained its model on 32x32 .* not --image-size 3x3"):
        load_backbone(gap_run, image_size="3x3")
    flat = write_run(tmp_path / "flat", create_model("lenet5", num_classes=3), list("abc"))
    with pytest.raises(ConfigError, match=r"28x28 images.*32x32 \(the weights of .* depend"):
        load_backbone(flat, image_size="32x32")


def test_cli_finetunes_a_gap_backbone_at_another_size(halves, tmp_path):
    from typer.testing import CliRunner

    from cnnlab.cli import app
    from cnnlab.models import create_model

    gap = create_model("squeezenet_flowers", input_shape="32x32x1", num_classes=5)
    run = write_run(tmp_path / "gap", gap, [str(d) for d in range(5)])
    args = ["finetune", str(run), "--data", str(halves[1]), "--image-size", "64x64"]
    args += ["--freeze-epochs", "1", "--epochs", "0", "--run-dir", str(tmp_path / "ft")]
    result = CliRunner().invoke(app, [*args, "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    config = (tmp_path / "ft" / "1-head" / "config.yaml").read_text()
    assert "input_shape: 64x64x1" in config


def test_cli_finetune_then_eval_predict_resume(halves, lenet_run, tmp_path):
    from typer.testing import CliRunner

    from cnnlab.cli import app

    def cli(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    out = tmp_path / "ft"
    common = ["--data", halves[1], "--device", "cpu", "--progress", "lines", "--lr", "3e-3"]
    result = cli("finetune", lenet_run, *common, "--freeze-epochs", "2", "--epochs", "0",
                 "--run-dir", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cached backbone features" in result.output and "fine-tuning folder" in result.output
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"  # drawn by the CLI, not finetune
    assert cli("eval", out, "--device", "cpu").exit_code == 0
    assert (out / "1-head" / "eval-test" / "confusion.png").is_file()
    image = next((halves[1] / "test" / "7").iterdir())
    predicted = cli("predict", out, image, "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.output)[0]["top"][0]["class"] in list("56789")
    again = cli("finetune", lenet_run, *common, "--freeze-epochs", "2", "--epochs", "1",
                "--run-dir", out)  # fmt: skip
    assert again.exit_code == 2 and "already holds a fine-tuning run" in again.output
    resumed = cli("finetune", lenet_run, *common, "--freeze-epochs", "2", "--epochs", "1",
                  "--run-dir", out, "--resume")  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "Epoch 1/2" not in resumed.output  # stage 1 had finished: not run again
    assert (out / "2-finetune" / "model.safetensors").is_file()
    bad = cli("finetune", lenet_run, *common, "--head", "max", "--run-dir", tmp_path / "bad")
    assert bad.exit_code == 2 and "head 'max' is not one of: gap, flatten" in bad.output
