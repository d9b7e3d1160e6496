"""The Keras bridge: load a Keras model's weights into the same cnnlab model, with h5py only.

>>> from cnnlab.keras import load_weights
>>> model = cnnlab.models.build("lenet5")
>>> load_weights(model, "lenet5.weights.h5")           # doctest: +SKIP

`import_keras` also writes a run folder, which ``cnnlab eval``, ``predict``, ``report``,
``visualize`` and ``finetune`` take like one that ``cnnlab train`` wrote.
"""

from cnnlab.keras.mapping import KerasLoadReport, load_weights
from cnnlab.keras.reader import KerasLayer, read_keras_file

__all__ = ["KerasLayer", "KerasLoadReport", "load_weights", "read_keras_file"]
