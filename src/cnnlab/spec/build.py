"""`build_from_spec`: a spec file or dict, plus the caller's overrides, to a `SpecModel`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab.build_record import BuildRecord, attach
from cnnlab.errors import SpecError
from cnnlab.shapes import hwc
from cnnlab.spec.graph import SpecModel, build_graph
from cnnlab.spec.parse import Spec, load_spec, parse_classes, parse_shape, where


def build_from_spec(
    source: str | Path | Mapping[str, Any] | Spec,
    input_shape: str | Sequence[int] | None = None,
    num_classes: int | None = None,
) -> SpecModel:
    """Build a model from a declarative architecture spec.

    Args:
        source: path of a YAML or JSON file (``str`` or ``Path``), a dict with the same
            content, or a `Spec` from `load_spec`.
        input_shape: ``"HxWxC"`` or ``(H, W, C)``; overrides the spec's ``input:``.
        num_classes: overrides the spec's ``classes:`` (what ``units: classes`` means).

    Returns:
        A `SpecModel`; its :func:`~cnnlab.build_record.record_of` holds the name, input
        shape ``(C, H, W)``, classes and the spec as written (as `cnnlab.models.build`'s
        models do), ``model.graph`` maps each layer to its inputs and ``model.spec`` is the
        loaded `Spec`.

    Raises:
        SpecError: a one-line message naming the layer (index and name), the field, the bad
            value and the valid choices.
    """
    spec = source if isinstance(source, Spec) else load_spec(source)
    try:
        return _build(spec, input_shape, num_classes)
    except SpecError as err:
        # a mistake in a layer: say which file it is in (load errors already do)
        if spec.path is None or str(err).startswith(f"{spec.path}:"):
            raise
        raise SpecError(f"{spec.path}: {err}") from err


def _build(
    spec: Spec, input_shape: str | Sequence[int] | None, num_classes: int | None
) -> SpecModel:
    shape = spec.input_shape if input_shape is None else parse_shape(input_shape, "input_shape")
    if shape is None:
        raise SpecError(
            f"spec {spec.name!r} has no input shape: add `input: 32x32x3` (HxWxC) or pass "
            "input_shape"
        )
    classes = spec.num_classes if num_classes is None else parse_classes(num_classes, "num_classes")
    model = build_graph(spec.layers, shape, classes)
    _check_output(model, spec, classes)
    kind = "spec" if spec.raw else "module"  # without the spec as written, no rebuilding
    attach(model, BuildRecord(spec.name, shape, classes, kind=kind, options=spec.raw))
    model.spec = spec
    return model


def _check_output(model: SpecModel, spec: Spec, classes: int | None) -> None:
    last = spec.layers[-1]
    at = where(last.index, model.output)
    out = model.output_shapes[model.output]
    if classes is not None and tuple(out) != (classes,):
        raise SpecError(
            f"{at}: the model output is {hwc(out)} but classes={classes}; end with "
            "`dense: {units: classes}` on a flat input (flatten or gap before it)"
        )
    if "softmax" in (last.type, last.args.get("activation"), last.args.get("fn")):
        warnings.warn(
            f"{at}: softmax on the model output; cnnlab models return logits and the loss "
            "applies softmax, so drop it for training",
            stacklevel=3,
        )
