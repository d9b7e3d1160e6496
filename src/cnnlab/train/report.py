"""Classification figures from predictions: the confusion matrix and per-class
precision/recall/F1 from scikit-learn's ``sklearn.metrics`` (zero_division=0), plus the
most-confused pairs and the matrix as text."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn import metrics as skm

from cnnlab.errors import DataError


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
        return {
            "classes": list(self.classes),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
        }

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
