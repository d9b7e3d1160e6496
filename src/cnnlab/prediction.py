"""The result of a prediction, shared by run folders (:func:`cnnlab.train.predict`) and exported
files (:func:`cnnlab.export.predict_exported`); a leaf module, so the exported path loads no
training code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Prediction:
    """Top classes of one image: ``top`` is [(class name, probability)], best first."""

    source: str
    top: list[tuple[str, float]]

    @property
    def label(self) -> str:
        """The predicted class."""
        return self.top[0][0]
