"""The rows of ``cnnlab models``: every registered model measured at its default input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.models import create_model, list_models, model_info
from cnnlab.params import count_params
from cnnlab.trace import trace_model


@dataclass(frozen=True)
class ZooRow:
    """One registered model, built on the meta device (no memory, no arithmetic)."""

    name: str
    params: int
    non_trainable: int
    macs: int
    input: str
    classes: int | None
    source: str
    description: str

    @property
    def macs_text(self) -> str:
        """MACs in millions or billions (``15.47 G``)."""
        if self.macs >= 1e9:
            return f"{self.macs / 1e9:.2f} G"
        return f"{self.macs / 1e6:.2f} M"


def zoo_rows(pattern: str | None = None) -> list[ZooRow]:
    """Measure each model matching ``pattern`` (substring or glob) at its default input."""
    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        _, _, flops = trace_model(model, info.input_shape, [])
        counts = count_params(model)
        rows.append(
            ZooRow(
                name,
                counts.total,
                counts.non_trainable,
                flops // 2,
                info.input_hwc,
                info.num_classes,
                info.source,
                info.description,
            )
        )
    return rows
