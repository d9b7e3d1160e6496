"""Checks lessons share: a model's printed counts and shapes, datasets found offline, training
a lesson's models with its recipe through ``cnnlab compare``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnlab.lessons.core import RECORDED, Context

# where a dataset may sit under --data-root: a class-per-folder tree (with train/ and test/, or
# the classes directly as flower_photos has them)
FOLDERS = {
    "mnist": ("mnist", "mnist-png", "MNIST"),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST"),
    "cifar10": ("cifar10", "cifar-10", "cifar10-jpg", "CIFAR10"),
    "flowers": ("flower_photos", "flowers"),
}


def check_counts(ctx: Context, name: str, model: Any, lesson: dict[str, int], **kw) -> None:
    """Rows for a model's total / trainable / non-trainable params (``lesson`` has the keys it
    printed) and, with ``shapes`` (layer -> Keras shape text), the printed output shapes."""
    from cnnlab.summary import summary

    shapes = kw.pop("shapes", None) or {}
    s = summary(model, **kw)
    got = {
        "total": s.counts.total,
        "trainable": s.counts.trainable,
        "non-trainable": s.counts.non_trainable,
    }
    for key, value in lesson.items():
        ctx.exact(f"{name}: {key} params", f"{value:,}", f"{got[key]:,}")
    printed = {row.name: row.keras_shape for row in s.rows}
    for layer, shape in shapes.items():
        ctx.exact(f"{name}: output of {layer}", shape, printed.get(layer, "(no such layer)"))


def find_data(ctx: Context, name: str) -> tuple[str, str | None]:
    """(source, root) for a dataset: a class-per-folder tree under ``--data-root`` if there is
    one, else the registered name read from ``--data-root`` (or the cache) without download
    when offline files are expected. Training raises DataError when it is absent."""
    root = ctx.options.data_root
    if root:
        for folder in FOLDERS.get(name, (name,)):
            path = Path(root) / folder
            if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
                return str(path), None
    return name, root


def how_to_get(name: str) -> str:
    """The command that makes a dataset available offline."""
    folder = FOLDERS.get(name, (name,))[0]
    return (
        f"`cnnlab data stats {name}` once online (downloads with checksums), or "
        f"`--data-root DIR` with DIR/{folder}/train/<class>/... (e.g. an extracted "
        "../shared/datasets archive)"
    )


@dataclass
class Contender:
    """A model a lesson trains: label, registry name, options and the lesson's test accuracy
    (None: the lesson printed none)."""

    label: str
    model: str
    lesson_accuracy: float | None = None
    options: dict | None = None


def train_and_compare(
    ctx: Context,
    name: str,
    contenders: Sequence[Contender],
    data,
    config,
    tol: float = 0.01,
) -> list | None:
    """Train every contender with the lesson's recipe (``cnnlab compare`` into
    ``<out>/<name>``), write its table, plots and HTML report, and add one accuracy row per
    model. Returns the compare results, or None when the data is missing (a "needs" row)."""
    from cnnlab.compare import Entry, compare, load_results
    from cnnlab.errors import DataError
    from cnnlab.report import write_report
    from cnnlab.viz.figures import RunFigures

    folder = ctx.out / name
    entries = [Entry(c.label, c.model, dict(c.options or {})) for c in contenders]
    cfg = lesson_config(ctx, config)
    try:
        with _deterministic(cfg.deterministic):
            compare(
                entries,
                data,
                cfg,
                seeds=range(ctx.options.seeds),
                out_dir=folder,
                callbacks=[RunFigures()],  # each run folder's curves.png and confusion.png
                print_fn=ctx.say,
            )
    except DataError as err:
        for c in contenders:
            ctx.needs(
                f"{c.label}: test accuracy",
                _pct(c.lesson_accuracy),
                f"{err}; {how_to_get(_data_name(data))}",
            )
        return None
    # the report writes the comparison's table and plots as it reads them
    ctx.links.append((f"{name}: comparison report", write_report(folder)))
    results = load_results(folder)
    ctx.picture(f"{name}: learning curves", folder / "curves.png")
    for c, result in zip(contenders, results, strict=True):
        stat = result.stat("test_accuracy")
        value = None if stat is None else stat[0]
        if c.lesson_accuracy is None:
            ctx.row(f"{c.label}: test accuracy", "-", _pct(value), RECORDED)
        else:
            ctx.accuracy(f"{c.label}: test accuracy", c.lesson_accuracy, value, tol)
    return results


def lesson_config(ctx: Context, config):
    """The TrainConfig a lesson trains with: its recipe on the chosen device, no progress bar.

    Quick mode pins what decides its observations on any machine: fp32 (``precision="auto"``
    picks bf16 on CPUs with AVX-512 bf16 or AMX and fp32 on others, and a net still climbing
    after a few epochs can end points apart), deterministic kernels and the seed (0, or each
    of ``--seeds``). Channels-last keeps fp32 convolutions fast on the CPU (oneDNN's NHWC).
    """
    cfg = replace(config, device=ctx.options.device, progress="none")
    if ctx.options.quick:
        cfg = replace(cfg, precision="fp32", deterministic=True, channels_last=True)
    return cfg


@contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """Deterministic kernels while a lesson trains (``fit`` turns them on for the process),
    then the caller's setting back."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        if on:
            torch.use_deterministic_algorithms(before, warn_only=before_warn)


def finetune_accuracy(
    ctx: Context,
    figure: str,
    lesson: float,
    tol: float,
    backbone: str,
    data,
    opts,
    run: str,
    schedule: str = "constant",
) -> None:
    """Fine-tune ``backbone`` on ``data`` (a DataConfig) as ``opts`` (a FinetuneConfig) says
    into ``<out>/<run>`` and add the accuracy row (test split, else validation); a "needs" row
    when the ImageNet weights or the data are missing."""
    from cnnlab.errors import DataError, WeightsError
    from cnnlab.train import TrainConfig
    from cnnlab.transfer import finetune
    from cnnlab.viz.figures import save_stage_curves

    cfg = TrainConfig(
        schedule=schedule, device=ctx.options.device, progress="none", run_dir=str(ctx.out / run)
    )
    try:
        result = finetune(backbone, data, cfg, opts, print_fn=ctx.say)
        save_stage_curves(result)
    except WeightsError as err:
        ctx.needs(figure, _pct(lesson), f"ImageNet weights: {err}")
        return
    except DataError as err:
        ctx.needs(figure, _pct(lesson), f"{err}; {how_to_get(_data_name(data))}")
        return
    metrics = result.final_metrics.get("test") or result.final_metrics.get("val") or {}
    ctx.accuracy(figure, lesson, metrics.get("accuracy"), tol)


def _data_name(data) -> str:
    source = getattr(data, "source", data)
    return Path(str(source)).name


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def lesson_data(
    ctx: Context,
    dataset: str,
    *,
    batch_size: int,
    val_split: float,
    normalize: str = "scale",
    quick_size: int = 28,
    quick_channels: int | None = None,
    quick_batch: int | None = None,
):
    """The DataConfig of a lesson's training: its dataset (found offline, never downloaded
    here), batch, split and preprocessing; in quick mode the bundled digits resized to
    ``quick_size`` (and ``quick_channels``), batches of ``quick_batch`` if given."""
    from cnnlab.data import DataConfig

    quick = ctx.options.quick
    source, root = ("digits", None) if quick else find_data(ctx, dataset)
    return DataConfig(
        source,
        batch_size=(quick_batch or batch_size) if quick else batch_size,
        val_split=val_split,
        normalize=normalize,
        root=root,
        image_size=quick_size if quick else None,
        channels=quick_channels if quick else None,
        download=False,
    )


def check_layer_params(
    ctx: Context, name: str, model: Any, lesson: Sequence[int], depth: int = 1
) -> None:
    """One row comparing the parameter counts of every layer that has parameters, in order,
    with the ``Param #`` column the lesson printed (zero rows left out)."""
    from cnnlab.summary import summary

    rows = summary(model, depth=depth).rows
    if depth > 1:  # only the leaves: a block's row would repeat its layers' parameters
        rows = [r for r in rows if r.type in ("Conv2d", "Linear", "Dense")]
    got = [r.params for r in rows if r.params]
    ctx.exact(
        f"{name}: the {len(lesson)} per-layer parameter counts, in order",
        " ".join(f"{n:,}" for n in lesson),
        " ".join(f"{n:,}" for n in got),
    )
