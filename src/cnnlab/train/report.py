"""Classification figures from predictions: confusion matrix, per-class precision/recall/F1
(as scikit-learn's ``classification_report``, zero_division=0), most-confused pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.errors import DataError


def confusion_matrix(targets, predictions, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows the true class, columns the predicted one.

    Raises:
        DataError: a label outside ``[0, num_classes)``, naming it.
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
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


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
        """An aligned table like scikit-learn's ``classification_report``."""
        width = max([len(c) for c in self.classes] + [len("weighted avg")])
        head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
        rows = [head, ""]
        for i, name in enumerate(self.classes):
            rows.append(
                f"{name:>{width}}  {self.precision[i]:>9.{digits}f}  {self.recall[i]:>9.{digits}f}"
                f"  {self.f1[i]:>9.{digits}f}  {self.support[i]:>9}"
            )
        total = sum(self.support)
        macro = [sum(v) / len(v) for v in (self.precision, self.recall)]
        weighted = [
            sum(x * s for x, s in zip(v, self.support, strict=True)) / total if total else 0.0
            for v in (self.precision, self.recall)
        ]
        rows += [
            "",
            f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {self.accuracy:>9.{digits}f}  {total:>9}",
            f"{'macro avg':>{width}}  {macro[0]:>9.{digits}f}  {macro[1]:>9.{digits}f}  "
            f"{self.macro_f1:>9.{digits}f}  {total:>9}",
            f"{'weighted avg':>{width}}  {weighted[0]:>9.{digits}f}  {weighted[1]:>9.{digits}f}  "
            f"{self.weighted_f1:>9.{digits}f}  {total:>9}",
        ]
        return "\n".join(rows)


def classification_report(matrix: torch.Tensor, classes: list[str]) -> ClassReport:
    """Per-class figures of a confusion matrix (0 where undefined, as zero_division=0)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.shape != (len(classes), len(classes)):
        raise DataError(f"a {tuple(m.shape)} matrix does not fit {len(classes)} classes")
    hits, support, predicted = m.diag(), m.sum(1), m.sum(0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = float(support.sum())
    return ClassReport(
        classes=list(classes),
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=[int(s) for s in support.tolist()],
        accuracy=float(hits.sum()) / total if total else 0.0,
        macro_f1=float(f1.mean()),
        weighted_f1=float((f1 * support).sum()) / total if total else 0.0,
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
