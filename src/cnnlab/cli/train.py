"""``cnnlab train``, ``cnnlab eval`` and ``cnnlab predict``: flags to configs, results to text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli import options as opt
from cnnlab.cli.common import console, exit_code, fail, from_flags, parse_model_options
from cnnlab.cli.data import shown_warnings


def strip_launcher_args(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc-per-node N`` (torchrun's processes must not relaunch)."""
    out, args = [], iter(argv)
    for arg in args:
        if arg == "--nproc-per-node":
            next(args, None)  # its value
        elif not arg.startswith("--nproc-per-node="):
            out.append(arg)
    return out


def launch_torchrun(nproc: int) -> None:
    """Re-run this ``cnnlab`` command under torchrun with ``nproc`` processes; exit with its
    status."""
    from cnnlab.train.distributed import torchrun_command

    cmd = torchrun_command(nproc, strip_launcher_args(sys.argv[1:]))
    console.print(f"launching: {' '.join(cmd)}", highlight=False)
    raise typer.Exit(subprocess.call(cmd))


def train_cmd(
    ctx: typer.Context,
    model: opt.Model = "lenet5",
    data: opt.Data = "digits",
    epochs: Annotated[
        int, opt.option("--epochs", "-e", help="Passes over the training data.")
    ] = 10,
    batch_size: opt.BatchSize = 32,
    optimizer: opt.Optimizer = "adam",
    lr: opt.Lr = None,
    momentum: opt.Momentum = 0.9,
    weight_decay: opt.WeightDecay = 0.0,
    schedule: Annotated[
        str,
        opt.option(
            "--schedule", help="constant, step, cosine, onecycle or rampup-exp (lesson 003)."
        ),
    ] = "constant",
    warmup_epochs: opt.Warmup = 0.0,
    label_smoothing: opt.Smoothing = 0.0,
    grad_clip: opt.GradClip = None,
    early_stop: opt.EarlyStop = None,
    max_steps: Annotated[
        int | None, opt.option("--max-steps", help="Stop after N optimizer steps in total.")
    ] = None,
    val_split: opt.ValSplit = 0.1,
    augment: opt.Augment = "none",
    normalize: opt.Normalize = "scale",
    image_size: opt.Size = None,
    channels: opt.Channels = None,
    in_memory: opt.InMemory = "auto",
    workers: Annotated[
        int | None, opt.option("--workers", help="Decode processes.", panel=opt.DATA)
    ] = None,
    strict: opt.Strict = False,
    root: opt.Root = None,
    no_download: opt.NoDownload = False,
    tfrecord_keys: opt.TFRecordKeys = None,
    model_opt: Annotated[
        list[str], opt.option("--model-opt", help="Model factory option NAME=VALUE (repeatable).")
    ] = [],  # noqa: B006 (typer reads the default; it is never mutated)
    seed: opt.Seed = 0,
    init: opt.Init = "default",
    device: opt.Device = "auto",
    precision: opt.Precision = "auto",
    channels_last: opt.ChannelsLast = None,
    keep_host_memory: opt.KeepHostMemory = None,
    compile: opt.Compile = False,
    run_dir: Annotated[
        Path | None,
        opt.option(
            "--run-dir", help="Run folder (default runs/<model>-<data>-<time>).", panel=opt.RUN
        ),
    ] = None,
    resume: Annotated[
        bool, opt.option("--resume", help="Continue the run in --run-dir.", panel=opt.RUN)
    ] = False,
    tensorboard: Annotated[
        bool, opt.option("--tensorboard", help="Write TensorBoard events.", panel=opt.RUN)
    ] = False,
    quiet: opt.Quiet = False,
    progress: opt.Progress = "auto",
    lr_find: Annotated[
        bool,
        opt.option(
            "--lr-find", help="Run the LR range test, plot it, suggest an --lr; no training."
        ),
    ] = False,
    nproc_per_node: Annotated[
        int | None,
        opt.option(
            "--nproc-per-node", help="Launch torchrun with N processes (GPUs).", panel=opt.RUN
        ),
    ] = None,
) -> None:
    """Train a model; by default lenet5 on the bundled digits."""
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig, fit
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
        flags = locals()
        data_cfg = from_flags(
            DataConfig, flags, source=data, download=not no_download, progress=not quiet
        )
        cfg = from_flags(TrainConfig, flags, progress=shown)
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
    from cnnlab.data import DataConfig
    from cnnlab.train import TrainConfig
    from cnnlab.train.run import RunFolder

    config = RunFolder(run_dir).read_config()
    data_cfg = from_flags(DataConfig, values, source=values["data"])
    cfg = from_flags(TrainConfig, values)
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


def eval_cmd(
    run_dir: opt.RunArg,
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
    weights: opt.Weights = "best",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default RUN_DIR/eval-SPLIT).")
    ] = None,
    worst: Annotated[int, typer.Option("--worst", help="Worst-classified images to show.")] = 30,
    precision: Annotated[
        str,
        typer.Option("--precision", help="run (as in training, the default), fp32, bf16 or fp16."),
    ] = "run",
    device: opt.AnyDevice = "auto",
    tfrecord_keys: opt.TFRecordKeys = None,
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
            tfrecord_keys=tfrecord_keys,
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
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="Run folder of `cnnlab train`, or a file of `cnnlab export` (.onnx, .pt)."
        ),
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, ...).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes to show per image.")] = 3,
    weights: opt.Weights = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    device: opt.AnyDevice = "cpu",
) -> None:
    """Class probabilities of images, preprocessed exactly as in training."""
    import json

    predictions = _predictions(run_dir, list(images), top_k, weights, device)
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


def _predictions(source: Path, images: list[Path], top_k: int, weights: str, device: str) -> list:
    """Predictions of a run folder, or of an exported file (no training code loaded)."""
    if source.suffix.lower() in (".onnx", ".pt") and not source.is_dir():
        from cnnlab.export.runtime import predict_exported  # onnxruntime, not the models

        return predict_exported(source, images, top_k=top_k)
    from cnnlab.train import load_run, predict  # torch and the models: not for `cnnlab --help`
    from cnnlab.train.device import resolve_device

    run = load_run(source, weights=weights, device=resolve_device(device))
    return predict(run, images, top_k=top_k)
