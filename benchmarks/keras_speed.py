"""tf.keras side of ``benchmarks/train_speed.py``: the lesson's Keras model trained with ``fit``.

Runs in an interpreter that has TensorFlow (never a cnnlab dependency), driven over a pipe:
it loads the uint8 images and labels from an ``.npz``, builds the lesson's model exactly as the
lesson notebook does (``../shared/seeds``: lesson 004's ``cnn_model``, lesson 000's
``makeVGG6`` and lesson 003's squeezenet-style flowers model with its flip + saturation
augmentation, at 64x64 and 5 classes), prints ``ready <params>``, then answers each line
``<steps>`` on stdin with ``<images> <seconds>``: the time of ``steps`` training batches of one
``fit`` call, measured from the end of its first batch (so ``fit``'s per-call setup and pipeline
fill are left out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from keras import layers


def fmnist_cnn() -> keras.Model:
    """Lesson 004's ``cnn_model`` (225,034 parameters)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def vgg6() -> keras.Model:
    """Lesson 000's ``makeVGG6()`` (33,859,658 parameters)."""
    model = keras.Sequential([keras.Input((32, 32, 3))])
    model.add(layers.Conv2D(64, (3, 3), padding="same", activation="relu"))
    for n_layers, filters in ((1, 64), (2, 128)):
        for _ in range(n_layers):
            model.add(layers.Conv2D(filters, (3, 3), padding="same", activation="relu"))
        model.add(layers.MaxPooling2D(2, strides=2))
    model.add(layers.Flatten())
    model.add(layers.Dense(4096, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def fire(x, squeeze: int, expand: int):
    """Lesson 003's ``fire``: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""
    y = layers.Conv2D(squeeze, 1, padding="same", activation="relu")(x)
    y1 = layers.Conv2D(expand // 2, 1, padding="same", activation="relu")(y)
    y3 = layers.Conv2D(expand // 2, 3, padding="same", activation="relu")(y)
    return layers.concatenate([y1, y3])


def squeezenet_flowers() -> keras.Model:
    """Lesson 003's squeezenet-style model, 64x64x3 input, 5 classes (21,709 parameters)."""
    x = keras.Input((64, 64, 3))
    y = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    y = layers.MaxPooling2D(2)(fire(y, 24, 48))
    y = layers.MaxPooling2D(2)(fire(y, 24, 48))
    y = layers.GlobalAveragePooling2D()(fire(y, 24, 48))
    return keras.Model(x, layers.Dense(5, activation="softmax")(y))


def flip_saturate(x, y):
    """Lesson 003's random flip and saturation in [0, 2], per image, on a batch; saturation as
    a blend with the ITU-R 601 grey (cnnlab's and the PyTorch loop's formula)."""
    n = tf.shape(x)[0]
    flip = tf.random.uniform((n, 1, 1, 1)) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    gray = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    factor = tf.random.uniform((n, 1, 1, 1), 0.0, 2.0)
    return tf.clip_by_value((x - gray) * factor + gray, 0.0, 1.0), y


MODELS = {"fmnist_cnn": fmnist_cnn, "vgg6": vgg6, "squeezenet_flowers": squeezenet_flowers}


def dataset(x: np.ndarray, y: np.ndarray, batch: int, augment: bool):
    """The arrays themselves for ``fit`` (as lessons 000/004), or lesson 003's tf.data pipeline:
    shuffled, batched, augmented on the batch, repeated, prefetched."""
    if not augment:
        return x, y
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).batch(batch)
    return data.map(flip_saturate).repeat().prefetch(tf.data.AUTOTUNE)


class Window(keras.callbacks.Callback):
    """Timestamps at the end of the first and of the last batch of a ``fit`` call."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last, self.start, self.end = last, 0.0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()
        elif batch == self.last:
            self.end = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with x (N, H, W, C) uint8 and y")
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: TF's)")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    with np.load(args.data) as data:
        x = data["x"].astype(np.float32) / 255.0  # as the lessons do: normalized once, in memory
        y = data["y"]
    model = MODELS[args.model]()
    optimizer = keras.optimizers.Adam(args.lr)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["acc"])
    augment = args.model == "squeezenet_flowers"
    inputs = dataset(x, y, args.batch, augment)
    batch = {"shuffle": False} if augment else {"batch_size": args.batch, "shuffle": True}
    print(f"ready {model.count_params()} tf={tf.__version__} keras={keras.__version__}")
    sys.stdout.flush()
    for line in sys.stdin:
        steps = int(line)
        window = Window(steps)
        fit_data = {"x": inputs} if augment else {"x": inputs[0], "y": inputs[1]}
        model.fit(
            **fit_data,
            **batch,
            epochs=1,
            steps_per_epoch=steps + 1,
            verbose=0,
            callbacks=[window],
        )
        print(f"{steps * args.batch} {window.end - window.start:.6f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
