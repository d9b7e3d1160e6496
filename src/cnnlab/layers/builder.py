"""Stack layers while tracking the running shape, so no layer is given its input size by hand."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.layers.shape_infer import infer_output_shape
from cnnlab.shapes import Shape


class SequentialBuilder:
    """Build an ``nn.Sequential`` of named layers from an input shape.

    ``b.channels`` is the current channel count (or feature count once flattened), so each new
    layer takes its input size from what came before:

    >>> b = SequentialBuilder((3, 32, 32))
    >>> b.add("conv1", ConvBNAct(b.channels, 16, 3, 2, "valid"))  # doctest: +SKIP
    """

    def __init__(self, input_shape: Shape) -> None:
        self.input_shape = tuple(input_shape)
        self.shape: Shape = tuple(input_shape)
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()

    @property
    def channels(self) -> int:
        """Channels of the current ``(C, H, W)`` shape, or features of a flat ``(F,)`` one."""
        return self.shape[0]

    def add(self, name: str, module: nn.Module) -> SequentialBuilder:
        """Append ``module`` as ``name`` and update the running shape."""
        if name in self.layers:
            raise ValueError(f"layer name {name!r} is used twice")
        try:
            self.shape = infer_output_shape(module, self.shape)
        except ShapeError as err:
            raise ShapeError(f"layer {name!r}: {err}") from err
        self.layers[name] = module
        return self

    def build(self) -> nn.Sequential:
        """The stacked layers as one ``nn.Sequential``."""
        return nn.Sequential(self.layers)
