"""A run folder's pictures, drawn by a callback passed to ``fit`` (training draws nothing):
``curves.png`` (loss and accuracy per epoch) and ``confusion.png`` (the final evaluation); and
a fine-tuning folder's curves of both stages, drawn by the caller of ``finetune``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.atomic import save_figure
from cnnlab.train.callbacks import Callback
from cnnlab.train.distributed import is_main_process
from cnnlab.train.finish import RunEnd
from cnnlab.train.run import CONFUSION, CURVES
from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.curves import plot_curves, plot_stages

if TYPE_CHECKING:
    from cnnlab.transfer.finetune import FinetuneResult


class RunFigures(Callback):
    """Writes curves.png and confusion.png into the run folder when a run ends, as
    `cnnlab train`, `compare` and `finetune` do: ``fit(..., callbacks=[RunFigures()])``."""

    def on_run_end(self, end: RunEnd) -> None:
        """curves.png once an epoch ended; confusion.png after a final evaluation."""
        if len(end.history):
            save_figure(plot_curves(end.history.epochs, title=end.path.name), end.path / CURVES)
        if end.confusion is not None:
            title = f"{end.path.name}: {end.split} split, best weights"
            figure = plot_confusion(end.confusion, list(end.classes), title=title)
            save_figure(figure, end.path / CONFUSION)


def save_stage_curves(result: FinetuneResult) -> Path | None:
    """curves.png in a fine-tuning's parent folder: every stage's epochs in order, the
    unfreezing marked; None (nothing drawn) when no stage ran an epoch, or in a torchrun
    process other than rank 0."""
    if not is_main_process() or not any(len(history) for history in result.stages.values()):
        return None
    stages = {name: history.epochs for name, history in result.stages.items()}
    return save_figure(plot_stages(stages), result.run_dir / CURVES)
