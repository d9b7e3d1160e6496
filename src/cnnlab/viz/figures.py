"""A run folder's pictures, drawn by a callback passed to ``fit`` (training draws nothing):
``curves.png`` (loss and accuracy per epoch) and ``confusion.png`` (the final evaluation)."""

from __future__ import annotations

from cnnlab.atomic import save_figure
from cnnlab.train.callbacks import Callback
from cnnlab.train.finish import RunEnd
from cnnlab.train.run import CONFUSION, CURVES
from cnnlab.viz.confusion import plot_confusion
from cnnlab.viz.curves import plot_curves


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
