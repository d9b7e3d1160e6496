"""`finetune`: a pretrained backbone with a new head, trained in two stages into one folder.

Stage 1 (``1-head/``) trains the head on a frozen backbone (parameters frozen, BatchNorm kept in
eval mode), on cached features when nothing changes them between epochs. Stage 2
(``2-finetune/``) unfreezes the backbone (all of it or its last K blocks) and trains everything
with the configured schedule (lesson 003's ramp-up then decay by default) and the backbone at
``backbone_lr_mult`` times the learning rate. Each stage is a complete run folder (eval,
predict and resume work on it); the parent holds ``finetune.yaml`` and the curves of both
stages. ``load_run(parent)`` loads the last stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cnnlab.data import DataConfig
from cnnlab.data.memory import memory_budget
from cnnlab.data.pipeline import Loaders
from cnnlab.errors import ConfigError, RunError
from cnnlab.models.transfer import HEADS, TransferModel, build_transfer_model, set_trainable
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import distributed
from cnnlab.train.callbacks import Callback
from cnnlab.train.config import TrainConfig
from cnnlab.train.distributed import DistEnv
from cnnlab.train.fit import fit, resolve_hardware
from cnnlab.train.history import History
from cnnlab.train.run import BEST, METRICS, STATE, RunFolder, new_run_path
from cnnlab.train.session import agreed, data_name, make_loaders
from cnnlab.transfer.backbone import PretrainedBackbone, load_backbone
from cnnlab.transfer.features import feature_cache_bytes, feature_loaders

FINETUNE = "finetune.yaml"
STAGES = ("1-head", "2-finetune")
CACHE_MODES = ("auto", "on", "off")


@dataclass
class FinetuneConfig:
    """What to fine-tune and how (training options themselves are a TrainConfig).

    Attributes:
        weights: ``"imagenet"`` (default for zoo backbones), ``"none"`` (random init), a
            ``.safetensors``/``.pth`` state dict or a run folder; default for a run-folder
            backbone: its own best weights.
        head: ``"gap"`` (global average pool) or ``"flatten"`` the backbone's feature map.
        hidden: widths of hidden dense layers of the head (ReLU), e.g. ``(512,)``.
        dropout: dropout after each hidden layer (before the output without hidden layers).
        image_size: input (H, W); default the backbone's (its default input, or the run's).
        freeze_epochs: stage 1 epochs (head only); 0 skips it.
        epochs: stage 2 epochs (unfrozen); 0 stops after stage 1 (a frozen-backbone model).
        unfreeze: stage 2's trainable backbone: ``"all"`` or ``"last:K"`` blocks.
        backbone_lr_mult: the backbone's learning rate over the head's in stage 2.
        feature_cache: stage 1 on cached backbone features: ``"auto"`` (when possible),
            ``"on"`` (error when not possible) or ``"off"``.
    """

    weights: str | None = None
    head: str = "gap"
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    image_size: tuple[int, int] | str | None = None
    freeze_epochs: int = 3
    epochs: int = 3
    unfreeze: str = "all"
    backbone_lr_mult: float = 0.1
    feature_cache: str = "auto"

    def validate(self) -> FinetuneConfig:
        """Check the fields; return self. Raises ConfigError naming the field and value."""
        if self.head not in HEADS:
            raise ConfigError(f"head {self.head!r} is not one of: {', '.join(HEADS)}")
        if self.feature_cache not in CACHE_MODES:
            raise ConfigError(
                f"feature_cache {self.feature_cache!r} is not one of: {', '.join(CACHE_MODES)}"
            )
        for name in ("freeze_epochs", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
        if self.freeze_epochs + self.epochs == 0:
            raise ConfigError("freeze_epochs and epochs are both 0: nothing to train")
        if self.unfreeze != "all" and not (
            self.unfreeze.startswith("last:") and self.unfreeze[5:].isdigit()
        ):
            raise ConfigError(f"unfreeze {self.unfreeze!r} must be 'all' or 'last:K'")
        if not self.backbone_lr_mult > 0:
            raise ConfigError(f"backbone_lr_mult must be > 0, got {self.backbone_lr_mult!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        return self


@dataclass
class FinetuneResult:
    """What `finetune` did.

    Attributes:
        run_dir: the parent folder. stages: history of each stage run (``1-head``,
        ``2-finetune``). final_metrics: the last stage's metrics.json content.
        weights: what loading the weights did (one line). feature_cache: stage 1 used it.
        stopped: why the last stage ended ("completed", "interrupted", ...).
    """

    run_dir: Path
    stages: dict[str, History] = field(default_factory=dict)
    final_metrics: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    feature_cache: bool = False
    stopped: str = "completed"


def finetune(
    backbone: str | Path,
    data: str | DataConfig = "digits",
    train: TrainConfig | None = None,
    options: FinetuneConfig | None = None,
    *,
    print_fn: Callable[[str], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> FinetuneResult:
    """Fine-tune ``backbone`` (zoo name or run folder) on ``data`` in two stages.

    Args:
        backbone: a zoo model name (``vgg16``, ``mobilenet_v2``, ``resnet18`` ...) or a run
            folder of ``cnnlab train``/``finetune``.
        data: dataset name/folder or DataConfig; converted to the backbone's channels, size
            and normalization.
        train: optimizer, lr, schedule (stage 2; stage 1 is constant), seed, device ...;
            ``epochs`` is ignored (see ``options``); ``run_dir`` is the parent folder;
            ``resume`` continues an interrupted fine-tuning.
        options: backbone, head and stage options.
        print_fn: where progress lines go.
        callbacks: hooks given to each stage's ``fit`` (e.g. the stage folders' figures,
            ``cnnlab.viz.figures.RunFigures``). The parent folder's curves of both stages
            are the caller's to draw: ``cnnlab.viz.figures.save_stage_curves(result)``.

    Raises:
        ConfigError, WeightsError, RunError, TrainingError: as their messages say.
    """
    train = (train or TrainConfig(schedule="rampup-exp", warmup_epochs=1)).validate()
    opts = (options or FinetuneConfig()).validate()
    say = print_fn or print
    env = distributed.setup(train.device)
    quiet = train.progress == "none" or not env.is_main
    pre = load_backbone(backbone, opts.weights, opts.image_size, progress=not quiet)
    weights_line = pre.report.message() if pre.report else "random backbone weights (none)"
    if not quiet:
        say(weights_line)
    data_cfg = _data_config(data, pre, train.seed, quiet)
    train = resolve_hardware(train, env.device)  # the stages' fit() calls keep these values
    _, loaders = make_loaders(data_cfg, train, env, bool(train.channels_last))
    torch.manual_seed(train.seed)
    model = build_transfer_model(
        pre.backbone,
        len(loaders.classes),
        pool=opts.head,
        hidden=tuple(opts.hidden),
        dropout=opts.dropout,
        trainable="none" if opts.freeze_epochs else opts.unfreeze,
        backbone_lr_mult=opts.backbone_lr_mult,
    )
    parent = Path(agreed(env, lambda: str(_prepare_parent(train, pre.backbone.name, loaders))))
    result = FinetuneResult(parent, weights=weights_line)
    if env.is_main and not train.resume:
        RunFolder(parent).write_yaml(FINETUNE, _record(backbone, opts, pre, weights_line))
    stages = _stage_configs(train, opts, parent)
    for stage, cfg in stages.items():
        result.stopped = _run_stage(stage, cfg, model, loaders, opts, env, result, say, callbacks)
        if result.stopped not in ("completed", "early_stop"):
            break
    return result


def _data_config(
    data: str | DataConfig, pre: PretrainedBackbone, seed: int, quiet: bool
) -> DataConfig:
    """The data as the backbone takes it: its channels (grey to RGB and back), its input size
    and the normalization its weights expect."""
    cfg = DataConfig(source=data, seed=seed) if isinstance(data, str) else data
    if not isinstance(cfg, DataConfig):
        raise ConfigError(f"data must be a dataset name, folder or DataConfig, not {data!r}")
    channels, height, width = pre.backbone.input_shape
    cfg = replace(cfg, channels=channels, image_size=(height, width), progress=not quiet)
    norm = pre.normalizer
    if norm is None:
        return cfg
    if norm.get("mode") == "standardize":
        mean, std = tuple(norm["mean"]), tuple(norm["std"])
        if len(mean) != channels:  # e.g. ImageNet statistics for a grey backbone: average
            mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
        return replace(cfg, normalize="standardize", mean=mean, std=std)
    return replace(cfg, normalize=norm.get("mode", "scale"), mean=None, std=None)


def _prepare_parent(train: TrainConfig, name: str, loaders: Loaders) -> Path:
    """The parent folder (rank 0): a new one, or the given one, checked for --resume."""
    if train.run_dir is None:
        if train.resume:
            raise RunError("resume needs the fine-tuning folder: pass --run-dir DIR")
        return new_run_path(Path("runs"), f"finetune-{name}-{data_name(loaders)}")
    path = Path(train.run_dir)
    held = (path / FINETUNE).is_file()
    if train.resume and not held:
        raise RunError(f"'{path}' holds no {FINETUNE}: not a fine-tuning run to resume")
    if not train.resume and held:
        raise RunError(
            f"'{path}' already holds a fine-tuning run; pass --resume to continue it, or "
            "choose another --run-dir"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stage_configs(train: TrainConfig, opts: FinetuneConfig, parent: Path) -> dict:
    stages = {}
    if opts.freeze_epochs:
        stages[STAGES[0]] = replace(
            train,
            epochs=opts.freeze_epochs,
            schedule="constant",
            warmup_epochs=0.0,
            run_dir=str(parent / STAGES[0]),
        )
    if opts.epochs:
        stages[STAGES[1]] = replace(train, epochs=opts.epochs, run_dir=str(parent / STAGES[1]))
    return stages


def _run_stage(
    stage: str,
    cfg: TrainConfig,
    model: TransferModel,
    loaders: Loaders,
    opts: FinetuneConfig,
    env: DistEnv,
    result: FinetuneResult,
    say: Callable[[str], None],
    callbacks: Sequence[Callback] = (),
) -> str:
    """Train one stage, or resume it (``fit`` trains nothing more when it had finished); its
    stop reason. The model leaves with the stage's best weights."""
    folder = Path(cfg.run_dir)
    cfg = replace(cfg, resume=(folder / STATE).is_file())
    frozen = stage == STAGES[0]
    set_trainable(model, "none" if frozen else opts.unfreeze)
    stage_loaders = loaders
    finished = (folder / METRICS).is_file()  # no features to cache for a finished stage
    if frozen and not finished and _use_cache(opts, loaders, model, cfg, env, say):
        started = time.perf_counter()
        stage_loaders = feature_loaders(model, loaders, cfg.precision)
        say(f"cached backbone features in {time.perf_counter() - started:.1f} s")
        result.feature_cache = True
    shown = say if cfg.progress != "none" else None
    history = fit(model, stage_loaders, cfg, callbacks=callbacks, print_fn=shown)
    result.stages[stage] = history
    result.final_metrics = history.final_metrics
    if history.stopped in ("completed", "early_stop") and (folder / BEST).is_file():
        model.load_state_dict(ckpt.load_weights(folder / BEST))  # copied to the model's device
    return history.stopped


def _use_cache(
    opts: FinetuneConfig,
    loaders: Loaders,
    model: TransferModel,
    cfg: TrainConfig,
    env: DistEnv,
    say: Callable[[str], None],
) -> bool:
    """Whether stage 1 can train on cached features; why not, when asked for or in "auto"."""
    if opts.feature_cache == "off":
        return False
    images = sum(len(getattr(x, "labels", ())) for x in (loaders.train, loaders.val, loaders.test))
    config = loaders.config
    reasons = [
        text
        for bad, text in (
            (
                config is not None and not config.augment_config().is_identity,
                "augmentation changes the images every epoch",
            ),
            (loaders.mode != "memory", "the data streams from shards (not in memory)"),
            (cfg.compile, "--compile compiles the full model"),
            (env.world_size > 1, "distributed training"),
            (not model.accepts_features, "features and images have the same shape"),
            (
                feature_cache_bytes(model, images) > memory_budget(env.device),
                "the features do not fit the memory budget",
            ),
        )
        if bad
    ]
    if not reasons:
        return True
    if opts.feature_cache == "on":
        raise ConfigError(f"feature cache asked for but impossible: {'; '.join(reasons)}")
    if cfg.progress != "none":
        say(f"stage 1 runs the backbone every step: {'; '.join(reasons)}")
    return False


def _record(
    backbone: str | Path, opts: FinetuneConfig, pre: PretrainedBackbone, weights: str
) -> dict[str, Any]:
    return {  # RunFolder.write_yaml writes tuples as lists
        "backbone": str(backbone),
        "options": asdict(opts),
        "weights": weights,
        "input_shape": list(pre.backbone.input_shape),
        "normalizer": pre.normalizer,
        "stages": list(STAGES),
    }
