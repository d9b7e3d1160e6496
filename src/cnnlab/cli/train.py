"""``cnnlab train``, ``cnnlab eval`` and ``cnnlab predict``: flags to configs, results to text."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cnnlab.cli.common import console, fail
from cnnlab.cli.data import ChannelsOpt, NoDownloadOpt, RootOpt, SizeOpt, StrictOpt, shown_warnings

TRAIN_HELP = "Training options"
DATA_HELP = "Data options"
RUN_HELP = "Run options"


def _opt(*names: str, help: str, panel: str = TRAIN_HELP, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


ModelArg = Annotated[
    str,
    typer.Argument(help="Registry name (see `cnnlab models`) or spec file (.yaml/.json)."),
]
DataOpt = Annotated[
    str,
    _opt("--data", "-d", help="Dataset name or folder (see `cnnlab data list`).", panel=DATA_HELP),
]


BatchSizeOpt = Annotated[
    int, _opt("--batch-size", "-b", help="Batch size per process (Keras' 32).", panel=DATA_HELP)
]
OptimizerOpt = Annotated[str, _opt("--optimizer", help="sgd, adam or adamw.")]
LrOpt = Annotated[
    float | None, _opt("--lr", help="Peak learning rate (default: sgd 0.1, adam 1e-3).")
]
WeightDecayOpt = Annotated[
    float, _opt("--weight-decay", help="Weight decay of conv/linear weights.")
]
WarmupOpt = Annotated[
    float, _opt("--warmup-epochs", help="Linear warm-up; the ramp of rampup-exp.")
]
SmoothingOpt = Annotated[float, _opt("--label-smoothing", help="Cross-entropy label smoothing.")]
EarlyStopOpt = Annotated[
    int | None, _opt("--early-stop", help="Stop after N epochs without improvement.")
]
ValSplitOpt = Annotated[
    float, _opt("--val-split", help="Validation fraction of train.", panel=DATA_HELP)
]
AugmentOpt = Annotated[
    str, _opt("--augment", help="e.g. flip,crop=4 or a preset (cifar, flowers).", panel=DATA_HELP)
]
SeedOpt = Annotated[
    int, _opt("--seed", help="Seed of init, data order, augmentation.", max=2**63 - 1)
]  # torch seeds are int64: a larger one was an internal error
InitOpt = Annotated[
    str, _opt("--init", help="default (PyTorch's) or keras (Glorot uniform, zero biases).")
]
DeviceFlag = Annotated[str, _opt("--device", help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[
    str, _opt("--precision", help="auto (bf16 where fast: CUDA, AMX CPUs), fp32, bf16, fp16.")
]
GradClipOpt = Annotated[float | None, _opt("--grad-clip", help="Max gradient norm.")]
NormalizeOpt = Annotated[
    str, _opt("--normalize", help="none, scale or standardize.", panel=DATA_HELP)
]
InMemoryOpt = Annotated[
    str, _opt("--in-memory", help="auto, on or off (stream from shards).", panel=DATA_HELP)
]
ChannelsLastOpt = Annotated[
    bool | None,
    _opt(
        "--channels-last/--no-channels-last",
        help="NHWC memory format (default: on CUDA, and for bf16 on CPU).",
    ),
]
CompileOpt = Annotated[bool, _opt("--compile", help="torch.compile the model.")]
QuietOpt = Annotated[bool, _opt("--quiet", "-q", help="Print nothing.", panel=RUN_HELP)]
ProgressOpt = Annotated[str, _opt("--progress", help="auto, bar, lines or none.", panel=RUN_HELP)]


def parse_model_options(items: list[str]) -> dict:
    """``["batchnorm=true", "dropout=0.3"]`` to ``{"batchnorm": True, "dropout": 0.3}``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--model-opt {item!r} must look like NAME=VALUE, e.g. batchnorm=true")
        options[key.strip()] = yaml.safe_load(value)
    return options


def strip_launcher_args(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc-per-node N`` (torchrun's processes must not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc-per-node":
            skip = True
            continue
        if arg.startswith("--nproc-per-node="):
            continue
        out.append(arg)
    return out


def launch_torchrun(nproc: int) -> None:
    """Re-run this ``cnnlab`` command under torchrun with ``nproc`` processes; exit with its
    status."""
    from cnnlab.train.distributed import torchrun_command

    cmd = torchrun_command(nproc, strip_launcher_args(sys.argv[1:]))
    console.print(f"launching: {' '.join(cmd)}", highlight=False)
    raise typer.Exit(subprocess.call(cmd))


def configs_from_flags(flags: dict[str, Any], data: dict[str, Any], train: dict[str, Any]):
    """A command's DataConfig and TrainConfig: each takes the flags named like its fields
    (paths as text), then the command's own ``data``/``train`` values, which win."""
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig

    def build(cls, fixed: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in flags.items() if k in names}
        values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        return cls(**{**values, **fixed})

    return build(DataConfig, data), build(TrainConfig, train)


def exit_code(stopped: str) -> int:
    """Exit status of a run: 0 finished, 130 interrupted (as a shell reports Ctrl-C)."""
    from cnnlab.train.stop import StopReason  # stdlib only: light

    return 130 if stopped == StopReason.INTERRUPTED else 0


def train_cmd(
    ctx: typer.Context,
    model: ModelArg = "lenet5",
    data: DataOpt = "digits",
    epochs: Annotated[int, _opt("--epochs", "-e", help="Passes over the training data.")] = 10,
    batch_size: BatchSizeOpt = 32,
    optimizer: OptimizerOpt = "adam",
    lr: LrOpt = None,
    momentum: Annotated[float, _opt("--momentum", help="SGD momentum.")] = 0.9,
    weight_decay: WeightDecayOpt = 0.0,
    schedule: Annotated[
        str, _opt("--schedule", help="constant, step, cosine, onecycle or rampup-exp (lesson 003).")
    ] = "constant",
    warmup_epochs: WarmupOpt = 0.0,
    label_smoothing: SmoothingOpt = 0.0,
    grad_clip: GradClipOpt = None,
    early_stop: EarlyStopOpt = None,
    max_steps: Annotated[
        int | None, _opt("--max-steps", help="Stop after N optimizer steps in total.")
    ] = None,
    val_split: ValSplitOpt = 0.1,
    augment: AugmentOpt = "none",
    normalize: NormalizeOpt = "scale",
    image_size: SizeOpt = None,
    channels: ChannelsOpt = None,
    in_memory: InMemoryOpt = "auto",
    workers: Annotated[
        int | None, _opt("--workers", help="Decode processes.", panel=DATA_HELP)
    ] = None,
    strict: StrictOpt = False,
    root: RootOpt = None,
    no_download: NoDownloadOpt = False,
    model_opt: Annotated[
        list[str], _opt("--model-opt", help="Model factory option NAME=VALUE (repeatable).")
    ] = [],  # noqa: B006 (typer reads the default; it is never mutated)
    seed: SeedOpt = 0,
    init: InitOpt = "default",
    device: DeviceFlag = "auto",
    precision: PrecisionOpt = "auto",
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    run_dir: Annotated[
        Path | None,
        _opt("--run-dir", help="Run folder (default runs/<model>-<data>-<time>).", panel=RUN_HELP),
    ] = None,
    resume: Annotated[
        bool, _opt("--resume", help="Continue the run in --run-dir.", panel=RUN_HELP)
    ] = False,
    tensorboard: Annotated[
        bool, _opt("--tensorboard", help="Write TensorBoard events.", panel=RUN_HELP)
    ] = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = "auto",
    lr_find: Annotated[
        bool,
        _opt("--lr-find", help="Run the LR range test, plot it, suggest an --lr; no training."),
    ] = False,
    nproc_per_node: Annotated[
        int | None,
        _opt("--nproc-per-node", help="Launch torchrun with N processes (GPUs).", panel=RUN_HELP),
    ] = None,
) -> None:
    """Train a model; by default lenet5 on the bundled digits."""
    from cnnlab.train import fit
    from cnnlab.train.fit import resume_run
    from cnnlab.viz.figures import RunFigures  # the run folder's curves.png, confusion.png

    if nproc_per_node is not None and "LOCAL_RANK" not in os.environ:
        launch_torchrun(nproc_per_node)
    shown = "none" if quiet else progress
    with shown_warnings():
        if resume:
            if run_dir is None:
                fail("--resume needs --run-dir DIR (the run to continue)")
            explicit = _explicit_flags(ctx)
            _refuse_changes(run_dir, locals(), explicit)
            history = resume_run(
                run_dir,
                epochs=epochs if "epochs" in explicit else None,
                device=device,
                progress=shown,
                max_steps=max_steps,
                callbacks=[RunFigures()],
            )
            _print_result(history, quiet, echoed=shown != "none")
            raise typer.Exit(exit_code(history.stopped))
        data_cfg, cfg = configs_from_flags(
            locals(),
            data={"source": data, "download": not no_download, "progress": not quiet},
            train={"progress": shown},
        )
        options = parse_model_options(model_opt)
        if lr_find:
            _lr_find(model, data_cfg, cfg, options, run_dir)
            return
        history = fit(model, data_cfg, cfg, model_options=options, callbacks=[RunFigures()])
    _print_result(history, quiet, echoed=shown != "none")
    raise typer.Exit(exit_code(history.stopped))


# flags that --resume takes: they change where and how long the run goes on, not what it trains
RESUME_FLAGS = {"epochs", "max_steps", "device", "progress", "quiet", "run_dir", "resume"}
RESUME_FLAGS |= {"nproc_per_node", "workers", "root", "no_download"}


def _explicit_flags(ctx: typer.Context) -> set[str]:
    """Names of the parameters given on the command line (not left at their defaults)."""
    given = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in given.items() if getattr(source, "name", "") == "COMMANDLINE"}


def _refuse_changes(run_dir: Path, values: dict[str, Any], explicit: set[str]) -> None:
    """Exit 2 when a flag given with --resume asks for another setting than the run's saved
    one: the run would silently go on with the saved one (the same value is fine)."""
    from cnnlab.train import TrainConfig
    from cnnlab.train.run import RunFolder

    config = RunFolder(run_dir).read_config()
    data_cfg, cfg = configs_from_flags(values, data={"source": values["data"]}, train={})
    saved_train = TrainConfig.from_dict(config["train"])
    for name in sorted(explicit - RESUME_FLAGS):
        given, saved = values[name], None
        if name == "lr":
            given, saved = cfg.peak_lr, saved_train.peak_lr
        elif name in config["train"]:
            given, saved = getattr(cfg, name), config["train"][name]
        elif name == "data":
            saved = config["data"].get("source")
        elif name == "augment":  # "cifar" and "crop=4,flip" are saved as "flip,crop=4"
            given, saved = data_cfg.augment_config().to_text(), config["data"].get("augment")
        elif name in config["data"]:
            given, saved = getattr(data_cfg, name), config["data"][name]
        elif name == "model":
            saved = config["model"].get("name")
            if Path(given).is_file():  # a spec file: its name is inside; resume checks it
                continue
        if _comparable(given) != _comparable(saved):
            flag = "--" + name.replace("_", "-")
            fail(
                f"{flag} {given} differs from the saved {name} of run '{run_dir}' ({saved}): "
                "--resume continues a run as it was configured (it takes --epochs, "
                f"--max-steps, --device, --progress); start a new run to train with {flag} {given}"
            )


def _comparable(value: Any) -> Any:
    """A flag's value and the saved one in one form ("32x32" and [32, 32]; paths as text)."""
    if isinstance(value, str) and "x" in value and value.replace("x", "").isdigit():
        return [int(v) for v in value.split("x")]
    if isinstance(value, (tuple, list)):
        return [_comparable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _lr_find(model, data_cfg, cfg, options: dict, run_dir: Path | None) -> None:
    from cnnlab.train.lr_find import lr_find
    from cnnlab.viz.samples import save_figure

    result = lr_find(model, data_cfg, cfg, model_options=options)
    out = (run_dir or Path("runs")) / "lr_find.png"
    save_figure(result.plot(), out)
    if result.suggestion is None:
        console.print("no learning rate made the loss fall; try a wider range", highlight=False)
    else:
        console.print(
            f"suggested --lr {result.suggestion:.2g} (steepest loss descent); "
            f"minimum/10: {result.min_over_10:.2g}",
            highlight=False,
        )
    console.print(f"wrote {out}", highlight=False)


def _print_result(history, quiet: bool, echoed: bool) -> None:
    """The run's outcome; ``echoed``: the progress display already said it was complete."""
    if quiet or int(os.environ.get("RANK", "0")) != 0:
        return
    if history.already_complete and not echoed:  # a scheduler's re-run with --progress none
        console.print(history.already_complete, highlight=False)
    metrics = history.final_metrics
    test = metrics.get("test") or metrics.get("val")
    if test:
        split = "test" if "test" in metrics else "val"
        console.print(
            f"{split} accuracy (best weights, epoch {metrics.get('best_epoch')}): "
            f"{test['accuracy']:.2%} on {test['count']:,} images",
            highlight=False,
        )
    console.print(f"run folder: {history.run_dir}", highlight=False)


RunArg = Annotated[Path, typer.Argument(help="Run folder written by `cnnlab train`.")]
WeightsOpt = Annotated[str, typer.Option("--weights", help="best or last.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]


def eval_cmd(
    run_dir: RunArg,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Other data with the same classes (default: the run's)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="test, val or train (default: the split the run reported on, else test/val).",
        ),
    ] = None,
    weights: WeightsOpt = "best",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default RUN_DIR/eval-SPLIT).")
    ] = None,
    worst: Annotated[int, typer.Option("--worst", help="Worst-classified images to show.")] = 30,
    precision: Annotated[
        str,
        typer.Option("--precision", help="run (as in training, the default), fp32, bf16 or fp16."),
    ] = "run",
    device: DeviceOpt = "auto",
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix, most-confused pairs, worst
    images."""
    # imported here so that `cnnlab --help` does not load torch's training stack
    from cnnlab.train.evaluation import evaluate_run
    from cnnlab.viz.evaluation import eval_figures

    with shown_warnings():
        result = evaluate_run(
            run_dir,
            data=data,
            split=split,
            weights=weights,
            device=device,
            out_dir=out,
            worst=worst,
            precision=precision,
            figures=eval_figures,
        )
    _print_eval(result)


def _print_eval(result) -> None:
    m = result.metrics
    console.print(f"evaluating the {result.split} split: {result.split_reason}", highlight=False)
    top5 = f", top-5 {m['top5']:.2%}" if "top5" in m else ""
    console.print(
        f"{result.split}: accuracy {m['accuracy']:.2%}{top5}, loss {m['loss']:.4f} "
        f"({m['count']:,} images, {m['weights']} weights, {m['precision']})",
        highlight=False,
    )
    if result.reported is not None:
        said = f"training reported {result.reported['accuracy']:.2%} on this split"
        why = f" ({result.mismatch})" if result.mismatch else " (computed the same way)"
        console.print(said + why, highlight=False, markup=False)
    console.print(result.report.to_text(), highlight=False, markup=False)
    if result.most_confused:
        pairs = ", ".join(f"{t} -> {p} ({n})" for t, p, n in result.most_confused[:5])
        console.print(f"most confused: {pairs}", highlight=False, markup=False)
    for role, path in result.files.items():
        console.print(f"wrote {path} ({role})", highlight=False)


def predict_cmd(
    run_dir: RunArg,
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, ...).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes to show per image.")] = 3,
    weights: WeightsOpt = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Class probabilities of images, preprocessed exactly as in training."""
    import json

    from cnnlab.train import load_run, predict
    from cnnlab.train.device import resolve_device

    run = load_run(run_dir, weights=weights, device=resolve_device(device))
    predictions = predict(run, list(images), top_k=top_k)
    if as_json:
        rows = [
            {"image": p.source, "top": [{"class": c, "probability": q} for c, q in p.top]}
            for p in predictions
        ]
        print(json.dumps(rows, indent=2))
        return
    for p in predictions:
        shown = ", ".join(f"{c} {q:.1%}" for c, q in p.top)
        console.print(f"{p.source}: {shown}", highlight=False, markup=False)
