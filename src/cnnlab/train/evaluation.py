"""`evaluate_run`: a finished run on a split, with the figures a careful engineer asks for:
accuracy, per-class precision/recall/F1 (scikit-learn's ``sklearn.metrics``, zero_division=0),
the confusion matrix (as text), the most confused pairs. Pictures (confusion.png, worst.png)
are drawn by a ``figures`` callback passed in from above (``cnnlab.viz.evaluation.eval_figures``),
since training code never draws.

The default split and precision are the ones the run reported on at the end of training, so
that ``cnnlab eval RUN`` reproduces metrics.json's number exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm

from cnnlab.atomic import write_text_atomic
from cnnlab.data import load_splits
from cnnlab.data.imageset import DatasetSplits, ImageSet
from cnnlab.data.memory import DeviceLoader
from cnnlab.errors import DataError
from cnnlab.train.device import resolve_device
from cnnlab.train.engine import Evaluation, evaluate
from cnnlab.train.loading import Run, load_run


def confusion_matrix(targets, predictions, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows the true class, columns the predicted one.

    Raises:
        DataError: a label outside ``[0, num_classes)``, naming it (scikit-learn would drop it
            silently).
    """
    t = torch.as_tensor(targets, dtype=torch.int64).flatten().cpu()
    p = torch.as_tensor(predictions, dtype=torch.int64).flatten().cpu()
    if t.shape != p.shape:
        raise DataError(f"{t.numel()} targets but {p.numel()} predictions")
    for name, labels in (("target", t), ("prediction", p)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.numel():
            raise DataError(
                f"{name} label {int(bad[0])} is outside [0, {num_classes}) ({num_classes} classes)"
            )
    matrix = skm.confusion_matrix(t.numpy(), p.numpy(), labels=np.arange(num_classes))
    return torch.from_numpy(matrix).to(torch.int64)


def _labels(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The (true, predicted) label arrays a confusion matrix counts, for sklearn.metrics."""
    m = np.asarray(torch.as_tensor(matrix, dtype=torch.int64).cpu())
    true, predicted = np.indices(m.shape)
    counts = m.ravel()
    return np.repeat(true.ravel(), counts), np.repeat(predicted.ravel(), counts)


@dataclass
class ClassReport:
    """Per-class precision, recall, F1 and support, with the overall figures."""

    classes: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    accuracy: float
    macro_f1: float
    weighted_f1: float
    matrix: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-able: per-class lists keyed by metric, plus the overall figures."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "matrix"}

    def to_text(self, digits: int = 4) -> str:
        """scikit-learn's ``classification_report`` table (needs the report's matrix)."""
        if self.matrix is None:
            raise ValueError("to_text needs a ClassReport made by classification_report")
        true, predicted = _labels(self.matrix)
        if not len(true):
            return "(no images: no per-class figures)"  # sklearn refuses empty input
        return skm.classification_report(
            true,
            predicted,
            labels=np.arange(len(self.classes)),
            target_names=list(self.classes),
            digits=digits,
            zero_division=0,
        ).rstrip("\n")


def classification_report(matrix: torch.Tensor, classes: list[str]) -> ClassReport:
    """Per-class figures of a confusion matrix, by ``sklearn.metrics`` (0 where undefined).

    Raises:
        DataError: a matrix whose shape does not fit ``classes``.
    """
    m = torch.as_tensor(matrix, dtype=torch.int64).cpu()
    if m.shape != (len(classes), len(classes)):
        raise DataError(f"a {tuple(m.shape)} matrix does not fit {len(classes)} classes")
    true, predicted = _labels(m)
    if not len(true):  # sklearn refuses empty input; every figure is 0, as zero_division=0
        zeros = [0.0] * len(classes)
        return ClassReport(list(classes), zeros, zeros, zeros, [0] * len(classes), 0.0, 0.0, 0.0, m)
    labels = np.arange(len(classes))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    weighted = skm.f1_score(true, predicted, labels=labels, average="weighted", zero_division=0)
    return ClassReport(
        classes=list(classes),
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=[int(s) for s in support],
        accuracy=float(skm.accuracy_score(true, predicted)),
        macro_f1=float(np.mean(f1)) if len(f1) else 0.0,
        weighted_f1=float(weighted),
        matrix=m,
    )


def most_confused(matrix: torch.Tensor, classes: list[str], k: int = 5) -> list[tuple]:
    """The ``k`` largest off-diagonal counts as (true, predicted, count), largest first."""
    m = torch.as_tensor(matrix, dtype=torch.int64).clone()
    m.fill_diagonal_(0)
    pairs = [(int(m[i, j]), i, j) for i, j in m.nonzero().tolist()]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [(classes[i], classes[j], n) for n, i, j in pairs[:k]]


def confusion_text(matrix: torch.Tensor, classes: list[str]) -> str:
    """The matrix as aligned text: a row per true class, a column per predicted class."""
    names = [c if len(c) <= 12 else c[:11] + "~" for c in classes]
    m = torch.as_tensor(matrix, dtype=torch.int64).tolist()
    width = max([len(n) for n in names] + [len(str(v)) for row in m for v in row])
    first = max(len(n) for n in names)
    lines = [" " * first + " " + " ".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, m, strict=True):
        lines.append(f"{name:>{first}} " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


SPLITS = ("train", "val", "test")
PRECISIONS = ("run", "fp32", "bf16", "fp16")


@dataclass
class EvalReport:
    """Result of :func:`evaluate_run`; ``files`` maps each written file's role to its path.

    ``split_reason`` says why this split was evaluated; ``reported`` is what training wrote in
    metrics.json for the same split and weights (None when it did not), ``mismatch`` why the
    two can differ (empty when they are computed the same way)."""

    split: str
    metrics: dict[str, Any]
    report: ClassReport
    confusion: torch.Tensor
    most_confused: list[tuple[str, str, int]]
    files: dict[str, Path] = field(default_factory=dict)
    split_reason: str = ""
    reported: dict[str, Any] | None = None
    mismatch: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (eval.json)."""
        return {
            "split": self.split,
            **self.metrics,
            "per_class": self.report.to_dict(),
            "most_confused": [list(p) for p in self.most_confused],
            "confusion": self.confusion.tolist(),
        }


@dataclass
class EvalData:
    """What the figures callback draws from: the run, the split's images, the outputs, and
    how many worst-classified images to show (``worst`` of :func:`evaluate_run`)."""

    run: Run
    images: ImageSet
    outputs: Evaluation
    worst: int = 30


FiguresFn = Callable[[EvalReport, EvalData, Path], dict[str, Path]]


def load_split_images(run: Run, data: str | None, split: str | None) -> ImageSet:
    """``split`` of the run's data (or of ``data``), converted to the model's input shape.

    Raises:
        DataError: an unknown split, a split the data lacks, or other class names.
    """
    return _split_images(run, data, split)[2]


def _split_images(
    run: Run, data: str | None, split: str | None, tfrecord_keys: str | None = None
) -> tuple[str, str, ImageSet]:
    """(the split, why it is evaluated, its images); None: see :func:`choose_split`."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split {split!r} is not one of: {', '.join(SPLITS)}")
    overrides = {"source": data} if data else {}
    if tfrecord_keys:
        overrides["tfrecord_keys"] = tfrecord_keys
    cfg = run.data_config(**overrides)
    channels, height, width = run.input_shape
    splits = load_splits(
        cfg.source, cfg.load_options(), image_size=(height, width), channels=channels
    )
    split, reason = choose_split(run, splits) if split is None else (split, "as asked")
    images = splits.get(split)  # a DataError naming the splits present
    if list(images.classes) != run.classes:
        raise DataError(
            f"data {str(cfg.source)!r} has classes {images.classes[:10]} but the run was trained "
            f"on {run.classes[:10]}: the class names and their order must match"
        )
    return split, reason, images


def choose_split(run: Run, splits: DatasetSplits) -> tuple[str, str]:
    """The split to evaluate when none is given, and why: the one the run reported on at the
    end of training (metrics.json: test, else validation), else the data's test split, else its
    validation split.

    Raises:
        DataError: data with neither a test nor a validation split.
    """
    for name in ("test", "val"):
        if name in run.metrics and getattr(splits, name) is not None:
            return name, f"the split the run reported on at the end of training ({name})"
    if splits.test is not None:
        return "test", "the data's test split"
    if splits.val is not None:
        return "val", "the data has no test split; its validation split instead"
    raise DataError("the data has no test or validation split to evaluate; pass --split train")


def eval_precision(run: Run, precision: str, device: torch.device) -> str:
    """``precision`` resolved: "run" is the precision the run trained and reported in (its
    config.yaml), or fp32 where that one cannot run (fp16 off CUDA).

    Raises:
        DataError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise DataError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if precision != "run":
        return precision
    trained = str(run.config.get("train", {}).get("precision", "fp32"))
    if trained == "fp16" and device.type != "cuda":
        return "fp32"
    return trained if trained in PRECISIONS else "fp32"


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | None = None,
    split: str | None = None,
    weights: str = "best",
    device: str = "auto",
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    worst: int = 30,
    precision: str = "run",
    figures: FiguresFn | None = None,
    tfrecord_keys: str | None = None,
) -> EvalReport:
    """Evaluate a run folder's model on a split and write eval.json and report.txt.

    Args:
        run_dir: the run folder.
        data: another dataset or folder with the same classes (default: the run's data).
        split: "test", "val" or "train" (default: the split the run reported on; see
            :func:`choose_split`).
        weights: "best" or "last".
        device: where to compute.
        out_dir: where to write (default ``<run_dir>/eval-<split>``).
        batch_size: evaluation batch size (default: the one the run validated with).
        worst: images in the worst-classified figure (0 for none).
        precision: "run" (what training used, so the numbers match metrics.json), "fp32",
            "bf16" or "fp16".
        figures: draws the pictures into the output folder and returns them by role (the
            CLI passes :func:`cnnlab.viz.evaluation.eval_figures`); None draws nothing.
        tfrecord_keys: feature names when ``data`` is TFRecord files with other names than
            the run's (default: the run's, else lesson 003's).

    Returns:
        The metrics, per-class report, confusion matrix and written files.
    """
    run = load_run(run_dir, weights=weights, device=resolve_device(device))
    split, reason, images = _split_images(run, data, split, tfrecord_keys)
    dev = next(run.model.parameters()).device
    used = eval_precision(run, precision, dev)
    outputs = _outputs(run, images, dev, used, batch_size)
    result = _report(run, split, weights, used, outputs, len(images))
    result.split_reason = reason
    result.reported, result.mismatch = _compare_with_training(run, result, data, dev)
    out = Path(out_dir) if out_dir is not None else run.path / f"eval-{split}"
    result.files = _write(result, run, out)
    if figures is not None:
        result.files.update(figures(result, EvalData(run, images, outputs, worst), out))
    return result


def _outputs(
    run: Run, images: ImageSet, dev: torch.device, precision: str, batch_size: int | None
) -> Evaluation:
    """The model's outputs on ``images``, batched, laid out and run as at the end of training."""
    data = run.config.get("data", {})
    if batch_size is None:  # the run's validation batch size (DataConfig.eval_batch_size)
        batch_size = data.get("eval_batch_size") or max(2 * int(data.get("batch_size", 128)), 256)
    channels_last = bool(run.config.get("train", {}).get("channels_last", False))
    if channels_last:
        run.model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(
        images, batch_size, dev, normalizer=run.normalizer, channels_last=channels_last
    )
    return evaluate(
        run.model,
        loader,
        num_classes=len(run.classes),
        device=dev,
        precision=precision,
        keep_outputs=True,
    )


def _report(
    run: Run, split: str, weights: str, precision: str, ev: Evaluation, count: int
) -> EvalReport:
    matrix = confusion_matrix(ev.targets, ev.predictions, len(run.classes))
    metrics = {**ev.metrics, "count": count, "weights": weights, "precision": precision}
    return EvalReport(
        split,
        metrics,
        classification_report(matrix, run.classes),
        matrix,
        most_confused(matrix, run.classes, k=10),
    )


def _compare_with_training(
    run: Run, result: EvalReport, data: str | None, device: torch.device
) -> tuple[dict[str, Any] | None, str]:
    """metrics.json's figures for this split and weights, and why they can differ from ours:
    another precision, or another kind of device (its kernels round differently)."""
    reported = run.metrics.get(result.split)
    weights = result.metrics["weights"]
    if data or not isinstance(reported, dict) or reported.get("weights", "best") != weights:
        return None, ""
    trained = str(run.config.get("train", {}).get("precision", "fp32"))
    used = result.metrics["precision"]
    if used != trained:
        return reported, f"training evaluated in {trained}, this evaluation in {used}"
    trained_on = str(run.config.get("device", device.type)).split(":")[0]
    if trained_on != device.type:
        return reported, f"training evaluated on {trained_on}, this evaluation on {device.type}"
    return reported, ""


def _write(result: EvalReport, run: Run, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "eval.json", "report": out / "report.txt"}
    write_text_atomic(files["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    pairs = "\n".join(f"  {t} -> {p}: {n}" for t, p, n in result.most_confused) or "  (none)"
    m = result.metrics
    text = (
        f"{run.path.name}: {result.split} split ({result.split_reason}), {m['weights']} weights, "
        f"{m['precision']}, {m['count']} images\n\n{result.report.to_text()}\n\n"
        f"confusion matrix (rows: true, columns: predicted)\n"
        f"{confusion_text(result.confusion, run.classes)}\n\nmost confused (true -> predicted)\n"
        f"{pairs}\n"
    )
    write_text_atomic(files["report"], text)
    return files
