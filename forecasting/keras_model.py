"""The Keras network and its hyperparameter space.

Imported only by training and inference code: importing it imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

import keras


def build_model(hp: Any, *, input_width: int, horizon: int) -> keras.Model:
    """A small MLP that outputs the residual over the seasonal-naive forecast for each step.

    The output layer starts at zero, so an untrained network *is* the seasonal naive forecast;
    training can only move it where the data supports it. ``hp`` is a keras-tuner
    ``HyperParameters`` (its defaults are the untuned model).
    """
    units = hp.Choice("units", [64, 128, 256], default=128)
    layers = hp.Int("layers", 1, 2, default=2)
    dropout = hp.Choice("dropout", [0.0, 0.1], default=0.0)
    learning_rate = hp.Choice("learning_rate", [1e-3, 3e-3], default=1e-3)

    inputs = keras.Input(shape=(input_width,), name="features")
    hidden = inputs
    for _ in range(layers):
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
        if dropout:
            hidden = keras.layers.Dropout(dropout)(hidden)
    residual = keras.layers.Dense(horizon, kernel_initializer="zeros", name="residual")(hidden)
    model = keras.Model(inputs, residual)
    # Several steps per call: the per-step Python overhead dominates for a network this small.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae", steps_per_execution=16)
    return model
