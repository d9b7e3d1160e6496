"""`import_keras`: a Keras model file as a cnnlab run folder.

The folder holds what ``cnnlab train`` writes and the other commands read: ``config.yaml``
(the model's description, the data section with classes, input shape and normalizer, the
versions, and a ``keras:`` section naming the file it came from), ``model.safetensors`` and
``last.safetensors`` (the same imported weights), ``summary.txt`` and ``keras.yaml`` (which
Keras layer went into which module). It has no history or metrics: nothing was trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.atomic import write_text_atomic
from cnnlab.build_record import record_of
from cnnlab.data import DataConfig
from cnnlab.data.datasets import is_registered
from cnnlab.data.folder import scan_folder
from cnnlab.data.normalize import Normalizer
from cnnlab.data.registry import dataset_info
from cnnlab.errors import ConfigError, RunError, UnknownModelError, choices_text
from cnnlab.keras.mapping import KerasLoadReport, load_weights
from cnnlab.models import build
from cnnlab.models.registry import check_model_options
from cnnlab.shapes import hwc
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.run import BEST, CONFIG, LAST, SUMMARY, RunFolder, new_run_path, versions

RECORD = "keras.yaml"
# the zoo option that pads stride-2 convs as Keras does (mobilenet_v2), chosen when the Keras
# file pads 'same' at stride 2 where the model built with the caller's options does not
KERAS_PADDING = {"padding": "same"}
# Keras' input scalings: the lessons divide by 255; keras.applications' Xception and
# MobileNetV2 take [-1, 1] (preprocess_input's "tf" mode), i.e. (x/255 - 0.5) / 0.5
NORMALIZE = ("scale", "none", "tf")


@dataclass
class KerasImport:
    """The result of :func:`import_keras`: the run folder, the loaded model and the report;
    ``chosen``: the model options the import chose from the Keras file (``padding``), for the
    Keras layers ``chosen_for``."""

    path: Path
    model: nn.Module
    report: KerasLoadReport
    classes: list[str]
    chosen: dict[str, Any] = dataclasses.field(default_factory=dict)
    chosen_for: list[str] = dataclasses.field(default_factory=list)


def import_keras(
    file: str | Path,
    model: str | Path,
    *,
    input_shape: str | Sequence[int] | None = None,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    data: str | None = None,
    class_names: Sequence[str] | None = None,
    normalize: str = "scale",
    bn_epsilon: float | None = None,
) -> KerasImport:
    """Build ``model`` (a registry name or spec file), load the Keras ``file`` into it and
    write a run folder.

    Args:
        file: ``.keras``, ``.weights.h5`` or legacy ``.h5``.
        model: the cnnlab architecture of the same network (``"lenet5"``, ``"net.yaml"``).
        input_shape: ``"HxWxC"``; default: the model's.
        num_classes: classes of the head; default: the model's.
        options: the registry factory's options (``{"batchnorm": True}``).
        run_dir: the folder to write; default a new ``runs/<model>-keras-<time>``.
        data: the dataset the Keras model was trained on (registered name or folder): the
            run's data source (so ``cnnlab eval`` needs no ``--data``) and its class names.
        class_names: class names in label order (default: the data's, else ``0``..``N-1``).
        normalize: how pixels became the Keras model's inputs: ``scale`` (x/255, the
            lessons), ``none`` (0..255) or ``tf`` ([-1, 1], keras.applications).
        bn_epsilon: Keras BatchNormalization epsilon where the file does not record it.

    Where the file's config shows a Keras ``same`` conv at stride 2 that ``model`` pads
    symmetrically (TensorFlow pads only the bottom/right at an even size) and ``model`` is a zoo
    model with a ``padding`` option the caller did not set (``mobilenet_v2``), the model is
    built again with ``padding="same"``: the result's ``chosen``, recorded in the run's model
    description. Otherwise the report's warnings say how to get it.

    Raises:
        WeightsError: the file does not fit the model (see :func:`load_weights`). RunError: a
        run folder that already holds a run. ConfigError: bad classes or normalization.
    """
    if normalize not in NORMALIZE:
        raise ConfigError(f"normalize {normalize!r} is not one of: {choices_text(NORMALIZE)}")
    net = build(model, input_shape=input_shape, num_classes=num_classes, options=options)
    record = record_of(net)
    if record is None or record.num_classes is None or record.input_shape is None:
        raise ConfigError(
            f"model {str(model)!r} has no classifier head: a run folder needs classes "
            "(pass --classes N, or a model with a head)"
        )
    classes = _classes(class_names, data, record.num_classes)
    report = load_weights(net, file, bn_epsilon=bn_epsilon)
    chosen = _keras_padding(model, options or {}, report)
    chosen_for = list(report.padding_mismatch) if chosen else []
    if chosen:  # the same model padded like Keras: its weights are the same, its outputs Keras'
        opts = {**(options or {}), **chosen}
        net = build(model, input_shape=input_shape, num_classes=num_classes, options=opts)
        report = load_weights(net, file, bn_epsilon=bn_epsilon)
        record = record_of(net)
        assert record is not None and record.input_shape is not None
    folder = _folder(run_dir, record.name)
    channels = record.input_shape[0]
    normalizer = (
        Normalizer("standardize", (0.5,) * channels, (0.5,) * channels)
        if normalize == "tf"
        else Normalizer(normalize)
    )
    _write(folder, net, file, report, classes, data, normalizer, chosen, chosen_for)
    return KerasImport(folder.path, net, report, classes, chosen, chosen_for)


def _keras_padding(model: str | Path, options: Mapping[str, Any], report: KerasLoadReport) -> dict:
    """``{"padding": "same"}`` when the Keras file pads ``same`` at stride 2 where ``model``
    pads symmetrically, the zoo model has that option and the caller did not set it."""
    if not report.padding_mismatch or KERAS_PADDING.keys() & set(options):
        return {}
    try:
        check_model_options(str(model), dict(KERAS_PADDING))
    except UnknownModelError:  # a spec file, or a zoo model without the option
        return {}
    return dict(KERAS_PADDING)


def _classes(names: Sequence[str] | None, data: str | None, count: int) -> list[str]:
    if names is not None:
        found, where = [str(n) for n in names], "--class-names"
    elif data is not None:
        found, where = _data_classes(data), f"data {data!r}"
    else:
        return [str(i) for i in range(count)]
    if len(found) != count or len(set(found)) != len(found):
        raise ConfigError(
            f"{where} gives {len(found)} distinct class names {found[:10]} but the model has "
            f"{count} classes"
        )
    return found


def _data_classes(data: str) -> list[str]:
    if is_registered(data):
        return list(dataset_info(data).classes)
    if Path(data).is_dir():
        return scan_folder(data).classes
    raise ConfigError(f"data {data!r} is neither a registered dataset nor a folder of images")


def _folder(run_dir: str | Path | None, name: str) -> RunFolder:
    if run_dir is None:
        return RunFolder(new_run_path(Path("runs"), f"{name}-keras"))
    folder = RunFolder(Path(run_dir))
    if folder.file(CONFIG).is_file():
        raise RunError(f"run folder '{run_dir}' already holds a run; choose another --run-dir")
    folder.path.mkdir(parents=True, exist_ok=True)
    return folder


def _write(
    folder: RunFolder,
    net: nn.Module,
    file: str | Path,
    report: KerasLoadReport,
    classes: list[str],
    data: str | None,
    normalizer: Normalizer,
    chosen: Mapping[str, Any],
    chosen_for: list[str],
) -> None:
    from cnnlab.summary import summary  # traces the model: loaded only to write a run

    record = record_of(net)
    assert record is not None and record.input_shape is not None
    source = {"file": str(Path(file).resolve()), "sha256": _sha256(Path(file))}
    data_section = {
        **dataclasses.asdict(DataConfig(source=data or "")),
        "classes": classes,
        "input_shape": hwc(record.input_shape),
        "normalizer": normalizer.to_dict(),
        "mode": "memory",
    }
    config = {
        "model": record.description(),
        "data": data_section,
        "keras": source,
        "versions": versions(),
    }
    state = net.state_dict()
    ckpt.write_all({folder.file(LAST): ckpt.weights_writer(state)})
    ckpt.write_all({folder.file(BEST): ckpt.weights_writer(state)})
    folder.write_yaml(
        RECORD,
        {
            **source,
            "pairs": [{"keras": k, "cnnlab": c} for k, c in report.pairs],
            "flatten_hwc_to_chw": report.flatten_permuted,
            "bn_epsilon_folded": report.epsilon_folded,
            "warnings": report.warnings,
            "options_chosen": dict(chosen),
            "options_chosen_for": chosen_for,
        },
    )
    write_text_atomic(folder.file(SUMMARY), summary(net).to_text() + "\n")
    folder.write_yaml(CONFIG, config)  # last: a folder with config.yaml is complete


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
