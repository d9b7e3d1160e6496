"""``compare``: train every entry with the same data, budget and seeds into one folder.

The folder holds ``compare.yaml`` (the plan), ``runs/<entry>-seed<N>/`` (ordinary run folders)
and the results (see :mod:`cnnlab.compare.results`). Running the same comparison into the same
folder again continues it: finished runs are kept, interrupted ones resumed, so a killed
comparison loses at most the unfinished epoch of one run.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from cnnlab.atomic import write_text_atomic
from cnnlab.build_record import plain
from cnnlab.compare.entries import Entry, parse_entry, validate_entries
from cnnlab.data import DataConfig
from cnnlab.errors import ConfigError, RunError, TrainingError
from cnnlab.train.config import TrainConfig
from cnnlab.train.run import CONFIG, METRICS, STATE

PLAN = "compare.yaml"
FAILED = "failed.txt"  # in a run folder: why the run could not finish (a NaN loss, ...)
# fields that do not change what is trained, so they may differ when a comparison continues
_FREE = {"progress", "run_dir", "resume", "seed", "device", "workers"}


@dataclass
class CompareOutcome:
    """What :func:`compare` did: the folder, and whether a run was interrupted (Ctrl-C)."""

    path: Path
    interrupted: bool = False


def compare(
    models: Sequence[str | Entry],
    data: str | DataConfig = "digits",
    config: TrainConfig | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = None,
    model_options: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    print_fn: Callable[[str], None] | None = None,
) -> CompareOutcome:
    """Train each model once per seed with the same data and training config.

    Args:
        models: registry names or spec files, optionally with factory options
            (``"vgg10:batchnorm=true"``), or :class:`Entry` objects.
        data: dataset name/folder or DataConfig; its ``seed`` is replaced by each seed.
        config: training options shared by every run; its ``seed`` and ``run_dir`` are set
            per run.
        seeds: one run per model per seed (same seeds, hence same splits, for every model).
        out_dir: the comparison folder (default ``comparisons/<data>-<timestamp>``); an
            existing one continues if its plan is the same.
        model_options: factory options for every registry model (an entry's own win).
        callbacks: training callbacks given to every run's ``fit`` (or resume).
        print_fn: where progress lines go (default: print).

    Returns:
        The folder and whether a run was interrupted; results are written with
        :func:`cnnlab.compare.results.write_results` by the caller or the CLI.

    Raises:
        ConfigError: bad entries or seeds. RunError: ``out_dir`` holds another comparison.
    """
    say = print_fn or print
    entries = validate_entries(
        [m if isinstance(m, Entry) else parse_entry(m, model_options) for m in models]
    )
    seeds = _check_seeds(seeds)
    data_cfg = DataConfig(source=data) if isinstance(data, str) else data
    cfg = (config or TrainConfig()).validate()
    plan = make_plan(entries, seeds, data_cfg, cfg)
    folder = _open_folder(out_dir, data_cfg, plan)
    total, n = len(entries) * len(seeds), 0
    for entry in entries:
        for seed in seeds:
            n += 1
            say(f"[{n}/{total}] {entry.label}, seed {seed}")
            status = train_one(entry, seed, data_cfg, cfg, folder, say, callbacks)
            if status == "interrupted":
                return CompareOutcome(folder, interrupted=True)
    return CompareOutcome(folder)


def run_folder(root: Path, entry: Entry, seed: int) -> Path:
    """Where ``entry``'s run with ``seed`` lives inside the comparison folder ``root``."""
    return root / "runs" / f"{entry.slug}-seed{seed}"


def train_one(
    entry: Entry,
    seed: int,
    data_cfg: DataConfig,
    cfg: TrainConfig,
    root: Path,
    say: Callable[[str], None],
    callbacks: Sequence[Any] = (),
) -> str:
    """Train (or continue, or skip) one run; returns how it ended ("completed", "failed", ...).

    A run that fails with a TrainingError (a NaN loss) is recorded in ``failed.txt`` and the
    comparison goes on: a diverging architecture is a result, not a crash.
    """
    # looked up per call, not at import: the tests replace cnnlab.train.fit.fit
    from cnnlab.train.fit import fit

    path = run_folder(root, entry, seed)
    if (path / METRICS).is_file():
        say(f"  done before: {path}")
        return "completed"
    if (path / FAILED).is_file():
        say(f"  failed before: {(path / FAILED).read_text().strip()}")
        return "failed"
    # a run with a checkpoint continues; one stopped before its first starts over (see fit)
    resume = (path / STATE).is_file()
    if resume:
        say(f"  resuming {path}")
    try:
        history = fit(
            entry.model,
            replace(data_cfg, seed=seed),
            replace(cfg, seed=seed, run_dir=str(path), resume=resume),
            model_options=dict(entry.options),
            callbacks=callbacks,
            print_fn=say,
        )
    except TrainingError as err:
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path / FAILED, f"{err}\n")
        say(f"  failed: {err}")
        return "failed"
    return history.stopped


def make_plan(
    entries: list[Entry], seeds: list[int], data_cfg: DataConfig, cfg: TrainConfig
) -> dict[str, Any]:
    """The comparison's plan as plain data (saved as compare.yaml)."""
    data = {k: v for k, v in asdict(data_cfg).items() if k not in _FREE | {"progress"}}
    return {
        "models": [{"label": e.label, "model": e.model, "options": e.options} for e in entries],
        "seeds": list(seeds),
        "data": data,
        "train": {k: v for k, v in asdict(cfg).items() if k not in _FREE},
    }


def read_plan(root: str | Path) -> dict[str, Any]:
    """A comparison folder's compare.yaml.

    Raises:
        RunError: not a comparison folder.
    """
    file = Path(root) / PLAN
    if not file.is_file():
        raise RunError(f"'{root}' is not a comparison folder (no {PLAN})")
    return yaml.safe_load(file.read_text())


def _open_folder(out_dir: str | Path | None, data_cfg: DataConfig, plan: dict) -> Path:
    if out_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(str(data_cfg.source)).name or "data"
        out_dir = Path("comparisons") / f"{name}-{stamp}"
    root = Path(out_dir)
    started = any((root / "runs").glob(f"*/{CONFIG}"))
    if (root / PLAN).is_file() and started:  # a plan nothing ran for may be replaced
        old = read_plan(root)
        for key in ("models", "seeds", "data", "train"):
            if plain(old.get(key)) != plain(plan[key]):
                raise RunError(
                    f"'{root}' holds another comparison: its {key} differ "
                    f"({old.get(key)!r} there, {plan[key]!r} now); choose another --out"
                )
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / PLAN, yaml.safe_dump(plain(plan), sort_keys=False))
    return root


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("compare needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {seeds} repeat a seed")
    return seeds
