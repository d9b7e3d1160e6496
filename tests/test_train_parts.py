"""The training engine's parts: schedules, optimizer groups, classification report, plots."""

from __future__ import annotations

import io
import itertools
import math

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from cnnlab import create_model
from cnnlab.errors import ConfigError, DataError
from cnnlab.train.config import TrainConfig
from cnnlab.train.evaluation import (
    classification_report,
    confusion_matrix,
    confusion_text,
    most_confused,
)
from cnnlab.train.optim import build_optimizer
from cnnlab.train.schedules import build_scheduler, lr_at
from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.curves import plot_curves
from cnnlab.viz.samples import save_figure


def lrs(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    return [lr_at(cfg, s, steps_per_epoch) for s in range(cfg.epochs * steps_per_epoch)]


def test_constant_step_and_cosine():
    assert set(lrs(TrainConfig(epochs=3, lr=0.1, optimizer="sgd"), 4)) == {0.1}
    step = TrainConfig(epochs=6, lr=1.0, schedule="step", step_epochs=2, gamma=0.5)
    assert lrs(step, 2) == [1.0] * 4 + [0.5] * 4 + [0.25] * 4
    cos = TrainConfig(epochs=4, lr=1.0, schedule="cosine", min_lr=0.1)
    values = lrs(cos, 10)
    assert values[0] == 1.0 and values[20] == pytest.approx(0.55)  # half way: the mean
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert lr_at(cos, 40, 10) == pytest.approx(0.1)


def test_warmup_then_cosine():
    cfg = TrainConfig(epochs=5, lr=1.0, schedule="cosine", warmup_epochs=1, start_lr=0.2)
    assert lr_at(cfg, 0, 10) == pytest.approx(0.2)
    assert lr_at(cfg, 5, 10) == pytest.approx(0.6)  # linear, half way through the warm-up
    assert lr_at(cfg, 10, 10) == pytest.approx(1.0)  # the cosine starts at the peak
    assert lr_at(cfg, 30, 10) == pytest.approx(0.5)  # and spans the 4 epochs after warm-up


@pytest.mark.parametrize(("epochs", "steps"), [(1, 10), (3, 7), (5, 21)])
def test_onecycle_matches_torch(epochs, steps):
    model = create_model("lenet5")
    cfg = TrainConfig(epochs=epochs, schedule="onecycle", lr=0.1, optimizer="sgd")
    reference = torch.optim.SGD(model.parameters(), lr=0.1)
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=0.1, total_steps=epochs * steps, cycle_momentum=False
    )
    ours = lrs(cfg, steps)
    for value in ours:
        assert value == pytest.approx(reference.param_groups[0]["lr"], rel=1e-9)
        reference.step()
        torch_sched.step()


def test_rampup_exp_is_lesson_003_lrfn():
    """The Keras flowers codelab's lrfn: ramp 5 epochs 1e-5 -> 5e-5, then decay 0.8 to 1e-5."""
    start, low, peak, ramp, sustain, decay = 1e-5, 1e-5, 5e-5, 5, 0, 0.8

    def lrfn(epoch):
        if epoch < ramp:
            return (peak - start) / ramp * epoch + start
        if epoch < ramp + sustain:
            return peak
        return (peak - low) * decay ** (epoch - ramp - sustain) + low

    cfg = TrainConfig(
        epochs=15, schedule="rampup-exp", lr=peak, start_lr=start, min_lr=low, warmup_epochs=ramp
    )
    for epoch in range(15):
        for step in (0, 6, 9):  # constant within an epoch, as Keras' per-epoch callback
            assert lr_at(cfg, epoch * 10 + step, 10) == pytest.approx(lrfn(epoch), rel=1e-12)


def test_scheduler_state_round_trips_weights_only():
    model = create_model("lenet5")
    cfg = TrainConfig(epochs=4, schedule="cosine", warmup_epochs=1)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 5)
    for _ in range(7):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2 = build_optimizer(model, TrainConfig(epochs=9, schedule="step"))
    sched2 = build_scheduler(opt2, TrainConfig(epochs=9, schedule="step"), 3)
    sched2.load_state_dict(state)
    for _ in range(5):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_weight_decay_only_on_weights_and_lr_mult():
    model = create_model("mini_resnet_bn", input_shape="28x28x1")
    opt = build_optimizer(model, TrainConfig(weight_decay=5e-4, optimizer="sgd", lr=0.1))
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0
    assert all(p.ndim <= 1 for p in groups["no_decay"]["params"])
    total = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())
    head = list(model.fc.parameters()) if hasattr(model, "fc") else list(model.parameters())[-2:]
    ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in ids]
    opt = build_optimizer(
        model,
        TrainConfig(lr=0.1),
        [{"params": body, "lr_mult": 0.1, "name": "backbone"}, {"params": head}],
    )
    lrs_by_name = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs_by_name["backbone.decay"] == pytest.approx(0.01)
    assert lrs_by_name["group1.decay"] == pytest.approx(0.1)


def test_optimizers_use_fused_kernels_on_cpu_with_foreach_numerics():
    """Fused SGD/Adam/AdamW where PyTorch has them; the same updates as the default kernels."""
    for name in ("sgd", "adam", "adamw"):
        models = [create_model("lenet5") for _ in range(2)]
        models[1].load_state_dict(models[0].state_dict())
        cfg = TrainConfig(optimizer=name, weight_decay=1e-4)
        fused = build_optimizer(models[0], cfg)
        assert fused.defaults.get("fused") is True, name
        name_of = {id(p): n for n, p in models[0].named_parameters()}
        twin = dict(models[1].named_parameters())
        groups = [
            {**g, "fused": None, "params": [twin[name_of[id(p)]] for p in g["params"]]}
            for g in fused.param_groups
        ]
        plain = type(fused)(groups)
        assert not plain.param_groups[0]["fused"]
        x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        for model, opt in ((models[0], fused), (models[1], plain)):
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_precision_auto_resolves_by_hardware(monkeypatch):
    from cnnlab.train import device as dev

    cpu, mps = torch.device("cpu"), torch.device("mps")
    assert dev.resolve_precision("fp32", cpu) == "fp32"
    assert dev.resolve_precision("bf16", cpu) == "bf16"
    assert dev.resolve_precision("auto", mps) == "fp32"
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: True)
    assert dev.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(dev, "cpu_has_fast_bf16", lambda: False)
    assert dev.resolve_precision("auto", cpu) == "fp32"
    assert dev.wants_channels_last(None, cpu, "bf16") is True
    monkeypatch.setattr(dev, "cpu_prefers_channels_last", lambda: True)
    assert dev.wants_channels_last(None, cpu, "fp32") is True
    monkeypatch.setattr(dev, "cpu_prefers_channels_last", lambda: False)
    assert dev.wants_channels_last(None, cpu, "fp32") is False
    assert dev.wants_channels_last(None, mps, "fp32") is False
    assert dev.wants_channels_last(False, cpu, "bf16") is False
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device"):
        dev.check_precision("fp16", cpu)


def test_frozen_model_and_bad_warmup_are_errors():
    model = create_model("lenet5")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())
    opt = build_optimizer(create_model("lenet5"), TrainConfig())
    with pytest.raises(ConfigError, match="warmup_epochs 3 must be shorter than epochs 3"):
        build_scheduler(opt, TrainConfig(epochs=3, warmup_epochs=3, schedule="cosine"), 5)


def test_report_matches_sklearn():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (400,), generator=gen)
    predictions = torch.where(
        torch.rand(400, generator=gen) < 0.7, targets, torch.randint(0, 4, (400,), generator=gen)
    )
    predictions[predictions == 3] = 2  # class 3 is never predicted: precision 0/0 -> 0
    matrix = confusion_matrix(targets, predictions, 5)
    assert matrix.tolist() == sk_confusion(targets, predictions, labels=range(5)).tolist()
    report = classification_report(matrix, list("abcde"))
    p, r, f, s = precision_recall_fscore_support(
        targets, predictions, labels=range(5), zero_division=0
    )
    assert report.precision == pytest.approx(p.tolist())
    assert report.recall == pytest.approx(r.tolist())
    assert report.f1 == pytest.approx(f.tolist())
    assert report.support == s.tolist()
    assert report.accuracy == pytest.approx(float((targets == predictions).float().mean()))
    assert report.macro_f1 == pytest.approx(float(np.mean(f)))
    text = report.to_text()
    assert "weighted avg" in text and len(text.splitlines()) == 11
    assert set(report.to_dict()) >= {"precision", "recall", "f1", "support", "accuracy"}


def test_most_confused_and_text():
    matrix = torch.tensor([[5, 2, 0], [3, 4, 3], [0, 1, 9]])
    assert most_confused(matrix, ["a", "b", "c"], k=3) == [
        ("b", "a", 3),
        ("b", "c", 3),
        ("a", "b", 2),
    ]
    assert most_confused(torch.eye(3, dtype=torch.int64), ["a", "b", "c"]) == []
    text = confusion_text(matrix, ["a", "a_very_long_class_name", "c"])
    assert "a_very_long~" in text and text.splitlines()[2].split()[-1] == "3"


def test_bad_label_is_named():
    with pytest.raises(DataError, match="target label 7 is outside"):
        confusion_matrix(torch.tensor([0, 7]), torch.tensor([0, 1]), 3)


def _png(tmp_path, figure, name) -> np.ndarray:
    path = save_figure(figure, tmp_path / name)
    return matplotlib.image.imread(path)


def test_curves_titles_like_lesson_004(tmp_path):
    history = [
        {"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.75},
        {"epoch": 2, "loss": 0.5, "accuracy": 0.9712, "val_loss": 0.6, "val_accuracy": 0.96},
    ]
    figure = plot_curves(history, title="run")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "Training loss: 0.5000, Validation loss: 0.6000",
        "Training accuracy: 97.12%, Validation accuracy: 96.00%",
    ]
    assert _png(tmp_path, figure, "c.png").shape[:2] == (1000, 1000)
    single = plot_curves([{"epoch": 1, "loss": 2.0, "accuracy": 0.1, "val_loss": math.nan}])
    assert single.axes[0].get_title() == "Training loss: 2.0000"
    _png(tmp_path, single, "single.png")


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confusion_plot_any_size(tmp_path, classes):
    matrix = torch.randint(0, 5, (classes, classes)) + torch.eye(classes, dtype=torch.int64) * 50
    figure = plot_confusion(matrix, [f"class{i}" for i in range(classes)], title="t")
    accuracy = matrix.trace().item() / matrix.sum().item()
    assert f"accuracy {accuracy:.2%}" in figure.axes[0].get_title()
    annotated = len(figure.axes[0].texts)
    assert annotated == (classes * classes if classes <= 20 else 0)
    assert _png(tmp_path, figure, f"m{classes}.png").shape[0] > 300


def test_keras_init_and_the_init_option(tmp_path):
    from cnnlab.models import create_model
    from cnnlab.models.init import apply_init, keras_init
    from cnnlab.train import TrainConfig, fit

    model = keras_init(create_model("lenet5"))
    conv = model.c1.conv
    fan_in, fan_out = 1 * 5 * 5, 6 * 5 * 5
    bound = math.sqrt(6 / (fan_in + fan_out))
    peak = float(conv.weight.detach().abs().max())
    assert bound / 2 < peak <= bound
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in model.modules()
        if hasattr(m, "bias") and isinstance(m.bias, torch.Tensor)
    )
    with pytest.raises(ConfigError, match="init 'he' is not one of: default, keras"):
        apply_init(model, "he")
    with pytest.raises(ConfigError, match="init 'he' is not one of"):
        TrainConfig(init="he").validate()
    with pytest.raises(ConfigError, match="applies to a model given by name"):
        fit(
            create_model("lenet5"),
            "digits",
            TrainConfig(init="keras", run_dir=str(tmp_path / "m"), progress="none"),
        )
    history = fit(
        "lenet5",
        "digits",
        TrainConfig(
            init="keras", max_steps=1, run_dir=str(tmp_path / "k"), progress="none", device="cpu"
        ),
    )
    assert yaml.safe_load((history.run_dir / "config.yaml").read_text())["train"]["init"] == "keras"


def test_curves_of_one_epoch_tick_whole_epochs():
    from cnnlab.viz.curves import plot_curves

    row = {"epoch": 1, "loss": 1.7, "accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.8}
    figure = plot_curves([row])
    for ax in figure.axes:
        assert list(ax.get_xticks()) == [1]
