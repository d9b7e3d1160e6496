"""Self-contained HTML reports of run folders, fine-tuning folders and comparison folders.

:func:`write_report` picks the kind from the folder and writes one HTML file with every plot
embedded, so it opens from disk in any browser with no server and no network.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.atomic import write_text_atomic
from cnnlab.errors import RunError
from cnnlab.models.build import is_finetune_folder
from cnnlab.report.compare_report import compare_page
from cnnlab.report.run_report import run_page
from cnnlab.train.loading import resolve_run_dir


def report_kind(path: str | Path) -> str:
    """ "compare", "finetune" or "run", from the files in the folder.

    Raises:
        RunError: a path that is none of these.
    """
    path = Path(path)
    if (path / "compare.yaml").is_file():
        return "compare"
    if is_finetune_folder(path):
        return "finetune"
    if (path / "config.yaml").is_file():
        return "run"
    raise RunError(
        f"'{path}' is not a run, fine-tuning or comparison folder "
        "(no config.yaml, finetune.yaml or compare.yaml)"
    )


def render_report(path: str | Path, samples: int = 24, device: str = "cpu") -> str:
    """The HTML report of a folder as a string (see :func:`write_report`)."""
    path = Path(path)
    kind = report_kind(path)
    if kind == "compare":
        return compare_page(path)
    stage = resolve_run_dir(path)
    if kind == "finetune" and stage == path:
        raise RunError(f"fine-tuning folder '{path}' has no finished stage yet")
    finetune = path if kind == "finetune" else None
    return run_page(stage, samples=samples, device=device, finetune=finetune)


def write_report(
    path: str | Path, out: str | Path | None = None, samples: int = 24, device: str = "cpu"
) -> Path:
    """Write the HTML report of a run, fine-tuning (its last stage) or comparison folder.

    Args:
        path: the folder.
        out: the HTML file (default ``<path>/report.html``).
        samples: test images shown with their predictions (runs; 0 for none).
        device: where the sample predictions are computed.

    Returns:
        The written file (atomically: a reader never sees half a report).
    """
    page = render_report(path, samples=samples, device=device)
    target = Path(out) if out is not None else Path(path) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target
