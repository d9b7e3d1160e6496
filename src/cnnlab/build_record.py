"""What cnnlab knows about a model it built: the one contract between a model and the rest.

Every model that :func:`cnnlab.models.build` (or ``create_model``, ``build_from_spec``, a
``TransferModel``) returns carries a :class:`BuildRecord`, attached by :func:`attach` and read
by :func:`record_of`, and nowhere else. Training, run folders, summaries and pictures ask
``record_of(model)`` for the model's name, input shape and classes; a run folder stores
:meth:`BuildRecord.description` as ``config.yaml``'s ``model:`` section, and
:func:`cnnlab.models.build` turns that section back into the model.

A module cnnlab did not build has no record; one that sets the older ``cnnlab_meta`` dict
(``{"name", "input_shape", "num_classes"}``) is read through it, so custom modules written for
earlier versions keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cnnlab.shapes import Shape, hwc

KINDS = ("registry", "spec", "transfer", "module")
_ATTR = "_cnnlab_record"  # the single attribute a record lives in
_LEGACY_ATTR = "cnnlab_meta"  # what custom modules of earlier versions set


@dataclass(frozen=True)
class BuildRecord:
    """How a model was built: enough to name it, check it against data and rebuild it.

    Attributes:
        name: registry name, spec name, or ``<backbone>_transfer``.
        input_shape: ``(C, H, W)`` the model takes (None: unknown).
        num_classes: classes of its head (None: a headless feature extractor, or unknown).
        kind: ``"registry"``, ``"spec"``, ``"transfer"`` or ``"module"`` (custom code, which a
            run folder cannot rebuild).
        options: what rebuilds it besides name, shape and classes: the factory's keyword
            options (registry), the spec as written (spec) or the transfer description.
        lr_mults: learning-rate factor per submodule name (``{"backbone": 0.1}``); parameters
            of other submodules train at the optimizer's rate (see :func:`param_groups`).
        pretrained: what loading pretrained weights did (a ``LoadReport``), if any.
    """

    name: str
    input_shape: Shape | None
    num_classes: int | None
    kind: str = "module"
    options: Mapping[str, Any] = field(default_factory=dict)
    lr_mults: Mapping[str, float] = field(default_factory=dict)
    pretrained: Any = None

    def description(self) -> dict[str, Any]:
        """The run folder's ``model:`` section (plain YAML types), as earlier versions wrote it.

        ``{"name", "kind", "input_shape": "HxWxC", "num_classes"}`` plus ``kwargs`` (registry),
        ``spec`` (spec) or ``transfer`` (transfer).
        """
        desc: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "input_shape": hwc(self.input_shape) if self.input_shape else None,
            "num_classes": self.num_classes,
        }
        key = {"registry": "kwargs", "spec": "spec", "transfer": "transfer"}.get(self.kind)
        if key:
            desc[key] = plain(self.options)
        return desc


def attach(model: nn.Module, record: BuildRecord) -> nn.Module:
    """Attach ``record`` to ``model`` (replacing any earlier one); returns ``model``."""
    if record.kind not in KINDS:
        raise ValueError(f"record kind {record.kind!r} is not one of {KINDS}")
    # object.__setattr__: a plain attribute, never a submodule, parameter or buffer
    object.__setattr__(model, _ATTR, record)
    return model


def record_of(model: nn.Module) -> BuildRecord | None:
    """The model's :class:`BuildRecord`; for a custom module with the older ``cnnlab_meta``
    dict, a ``"module"`` record made from it; else None."""
    record = getattr(model, _ATTR, None)
    if isinstance(record, BuildRecord):
        return record
    meta = getattr(model, _LEGACY_ATTR, None)
    if isinstance(meta, Mapping):
        shape = meta.get("input_shape")
        return BuildRecord(
            name=str(meta.get("name") or type(model).__name__),
            input_shape=tuple(shape) if shape is not None else None,
            num_classes=meta.get("num_classes"),
        )
    return None


def model_name(model: nn.Module) -> str:
    """The recorded name, or the class name of a module without a record."""
    record = record_of(model)
    return record.name if record else type(model).__name__


def param_groups(model: nn.Module) -> list[dict[str, Any]] | None:
    """Optimizer groups from the record's ``lr_mults`` (None when it has none).

    Each named submodule's parameters form a group at its factor; all other parameters form a
    ``"rest"`` group at 1. Frozen parameters are left out; empty groups too.
    """
    record = record_of(model)
    if record is None or not record.lr_mults:
        return None
    groups, taken = [], set()
    for name, mult in record.lr_mults.items():
        params = [p for p in model.get_submodule(name).parameters() if p.requires_grad]
        taken |= {id(p) for p in params}
        if params:
            groups.append({"name": name, "params": params, "lr_mult": float(mult)})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    if rest:
        groups.append({"name": "rest", "params": rest, "lr_mult": 1.0})
    return groups


def plain(value: Any) -> Any:
    """YAML-safe copy (tuples become lists, str subclasses such as torch's version str)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
