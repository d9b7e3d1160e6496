"""Declarative architectures: a YAML/JSON list of layers -> ``nn.Module``, shapes inferred.

A spec generalizes torchvision VGG's ``cfgs`` lists: an input shape, optional class count and
a list of layers, each ``type: {args}``. No layer takes its input channels; they come from the
shapes, which are inferred layer by layer, so a spec never hard-codes a size the input
determines. Lesson 000's basic CNN (``examples/specs/basic_cnn.yaml``)::

    name: basic_cnn
    input: 32x32x3          # height x width x channels, as Keras writes it
    classes: 10
    layers:
      - conv: {filters: 16, kernel: 3, stride: 2, activation: relu}   # -> 15x15x16
      - maxpool: {size: 2}                                             # -> 7x7x16
      - conv: {filters: 32, kernel: 3, stride: 2, activation: relu}   # -> 3x3x32
      - maxpool: 2                                                     # -> 1x1x32
      - dense: {units: classes}    # Keras Dense on the channel axis -> 1x1x10
      - flatten                    # (N, 10) logits

Each item is exactly one ``type: {args}`` (a scalar stands for the main arg: ``- dropout:
0.5``; a bare string is a layer without args: ``- flatten``, ``- relu``), with optional
``name:``, ``from:`` (a name or a list; ``input`` is the model input; ``add``/``concat``
merge several) and ``repeat: N`` (copies named ``name_1`` .. ``name_N``). Unnamed layers are
called ``{type}_{index}`` (``conv_3``), counting from 1. A graph-style residual::

    layers:
      - conv: {filters: 32, kernel: 3, padding: same, activation: relu}
        name: stem
      - conv: {filters: 32, kernel: 3, padding: same}
        name: body
      - add: {from: [stem, body]}
      - relu

Layer types: ``conv``, ``depthwise``, ``separable``, ``maxpool``, ``avgpool``,
``global_avg_pool`` (``gap``), ``global_max_pool``, ``dense`` (on an image it acts on the
channels, Keras style), ``flatten``, ``dropout``, ``batchnorm``, ``activation`` (and every
activation name as a shorthand), ``add``, ``concat``; blocks ``residual``
(`cnnlab.layers.ResidualUnit`), ``inception`` (`InceptionModule`; ``filters: N`` for lesson
002's four equal branches, or GoogLeNet's ``ch1x1``/``ch3x3red``/...), ``fire`` (``{squeeze:
24, expand: 48}`` as in lesson 003, or ``expand1x1``/``expand3x3``) and ``vgg_group``
(``{convs: N, filters: F}``: N 3x3 same ReLU convs and a 2x2 max pool). The value ``classes``
for ``units``/``filters`` means the class count, so ``build_from_spec(path, num_classes=5)``
re-heads a spec. Models return logits: leave out the lessons' final softmax.

Every mistake raises `cnnlab.errors.SpecError` with one line naming the layer, field, bad
value and valid choices, e.g. ``layer 3 'conv_3': kernel=5 is larger than the 3x3 input
(padding 'valid')``.

Specs are treated as untrusted input (`cnnlab.spec.limits`): only a regular file of at most
1 MiB is read; nesting (32 levels), values (50,000, aliases expanded), integer literals (30
characters), layers after ``repeat:`` (2,000), counts (1,048,576), windows (65,536), parameters
(10^9) and one layer's output (2^28 values per image) are bounded, and sizes are checked on the
meta device before any memory is allocated. Each limit is stated in its error message.
"""

from cnnlab.spec.build import build_from_spec
from cnnlab.spec.graph import SpecModel
from cnnlab.spec.layer_types import LAYER_TYPES, LayerType
from cnnlab.spec.parse import LayerEntry, Spec, load_spec

__all__ = [
    "LAYER_TYPES",
    "LayerEntry",
    "LayerType",
    "Spec",
    "SpecModel",
    "build_from_spec",
    "load_spec",
]
