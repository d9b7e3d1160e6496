"""Using a finished run by its folder alone: `load_run` and `predict`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import DataConfig
from cnnlab.data.decode import read_image, resize_image
from cnnlab.data.imageset import convert_channels
from cnnlab.data.normalize import Normalizer
from cnnlab.errors import DataError, RunError, first_line
from cnnlab.models import build
from cnnlab.models.build import last_stage_with
from cnnlab.prediction import Prediction
from cnnlab.shapes import parse_input_shape
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.history import History
from cnnlab.train.run import BEST, HISTORY, LAST, METRICS, RunFolder

WEIGHTS = {"best": BEST, "last": LAST}


@dataclass
class Run:
    """A run loaded from its folder.

    Attributes:
        path: the folder. model: rebuilt, weights loaded, in eval mode.
        config: config.yaml as a dict. classes: class names, in label order.
        input_shape: (C, H, W) the model takes. normalizer: how pixels become inputs.
        history: per-epoch metrics. metrics: metrics.json (empty before the run finished).
    """

    path: Path
    model: nn.Module
    config: dict[str, Any]
    classes: list[str]
    input_shape: tuple[int, int, int]
    normalizer: Normalizer
    history: History
    metrics: dict[str, Any] = field(default_factory=dict)

    def data_config(self, **overrides: Any) -> DataConfig:
        """The DataConfig the run trained with (``overrides`` replace fields)."""
        return saved_data_config(self.config, **overrides)


# config.yaml's data keys that describe the loaded data rather than configure its loading
_DERIVED_DATA_KEYS = ("classes", "input_shape", "normalizer", "mode")


def saved_data_config(config: dict[str, Any], **overrides: Any) -> DataConfig:
    """The DataConfig of a run's ``config.yaml`` (``overrides`` replace fields)."""
    data = {k: v for k, v in config["data"].items() if k not in _DERIVED_DATA_KEYS}
    if isinstance(data.get("image_size"), list):
        data["image_size"] = tuple(data["image_size"])
    return DataConfig(**{**data, **overrides})


def resolve_run_dir(path: str | Path) -> Path:
    """``path``, or for a fine-tuning folder (``finetune.yaml``) its last stage with weights."""
    path = Path(path)
    return last_stage_with(path, BEST) or path


def load_run(
    path: str | Path,
    weights: str = "best",
    device: str | torch.device = "cpu",
    model: nn.Module | None = None,
) -> Run:
    """Load a run folder: its model with the chosen weights, classes and preprocessing.

    Args:
        path: the run folder (a fine-tuning folder: its last stage).
        weights: "best" (model.safetensors) or "last" (last.safetensors).
        device: where to put the model.
        model: an architecture to load the weights into, for runs of custom modules.

    Raises:
        RunError: not a run folder, no weights yet, or weights that do not fit the model.
    """
    if weights not in WEIGHTS:
        raise RunError(f"weights {weights!r} is not one of: best, last")
    folder = RunFolder(resolve_run_dir(path))
    config = folder.read_config()
    net = model if model is not None else build(config["model"])
    file = folder.file(WEIGHTS[weights])
    if not file.is_file():
        raise RunError(f"run '{path}' has no {file.name} yet (it stopped before an epoch ended)")
    try:
        net.load_state_dict(ckpt.load_weights(file))
    except RuntimeError as err:
        raise RunError(f"{file} does not fit the model: {first_line(err)}") from None
    net.to(device).eval()
    data = config["data"]
    history = History.load(folder.file(HISTORY)) if folder.file(HISTORY).is_file() else History()
    metrics_file = folder.file(METRICS)
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Run(
        path=folder.path,
        model=net,
        config=config,
        classes=list(data["classes"]),
        input_shape=parse_input_shape(data["input_shape"]),
        normalizer=Normalizer.from_dict(data["normalizer"]),
        history=history,
        metrics=metrics,
    )


def preprocess(run: Run, images: list[str | Path | torch.Tensor]) -> torch.Tensor:
    """Images as the run's model takes them: decoded, converted to its channels, resized to
    its size (as the data loader does) and normalized with the training statistics.

    Tensors are uint8 (C, H, W) images. Raises DataError/CorruptImageError naming the file.
    """
    channels, height, width = run.input_shape
    batch = []
    for item in images:
        if isinstance(item, torch.Tensor):
            if item.dtype != torch.uint8 or item.dim() != 3:
                raise DataError(
                    f"an image tensor must be uint8 (C, H, W), got {item.dtype} {tuple(item.shape)}"
                )
            image = convert_channels(item[None], channels)[0]
            if tuple(image.shape[1:]) != (height, width):
                image = resize_image(image, (height, width))
        else:
            image = read_image(item, channels=channels, size=(height, width))
        batch.append(image)
    return run.normalizer(torch.stack(batch))  # (B, C, H, W) float


@torch.no_grad()
def predict(
    run: Run | str | Path, images: list[str | Path | torch.Tensor], top_k: int = 3
) -> list[Prediction]:
    """Class probabilities of ``images`` from a run (or run folder), top ``top_k`` each."""
    if not isinstance(run, Run):
        run = load_run(run)
    if top_k < 1:
        raise DataError(f"top_k must be >= 1, got {top_k}")
    device = next(run.model.parameters()).device
    x = preprocess(run, images).to(device)
    probs = run.model.eval()(x).float().softmax(dim=1).cpu()  # (B, K)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [
        Prediction(
            f"image {n}" if isinstance(src, torch.Tensor) else str(src),
            [(run.classes[i], float(p)) for p, i in zip(v, ix, strict=True)],
        )
        for n, (src, v, ix) in enumerate(
            zip(images, values.tolist(), indices.tolist(), strict=True)
        )
    ]
