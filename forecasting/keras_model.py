"""The Keras network and its hyperparameter space.

Imported only by training and inference code: importing it imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

import keras

#: Starting weight of the 7-day profile in the blend. An equal mix of it and last week beat either
#: alone on the benchmark meters, and it is where short histories need the network to start.
PROFILE_BLEND_START = 0.5


def build_model(hp: Any, *, input_width: int, horizon: int, profile_inputs: bool = False) -> keras.Model:
    """A small MLP that outputs the residual over the seasonal-naive forecast for each step.

    The output layer starts at zero, so an untrained network *is* the seasonal naive forecast;
    training can only move it where the data supports it. With ``profile_inputs`` (the last
    ``2 * horizon`` inputs are the 7-day profile and the day before, each minus the weekly naive;
    see :mod:`forecasting.features`) a linear path adds ``a * (profile - naive) + b * (day_before -
    naive)`` with two weights shared by all steps, starting at ``a = PROFILE_BLEND_START, b = 0``:
    the untrained network is then that blend of last week and the profile. Two weights learn in the few hundred steps a
    short history allows; the hidden layers would not. ``hp`` is a keras-tuner
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
    if profile_inputs:
        # (batch, 2 * horizon) -> (batch, horizon, 2): per step, [profile, day before] - weekly naive.
        alternatives = keras.layers.Reshape((2, horizon))(inputs[:, -2 * horizon :])
        alternatives = keras.layers.Permute((2, 1))(alternatives)
        blend = keras.layers.Dense(
            1,
            use_bias=False,
            kernel_initializer=keras.initializers.Constant([[PROFILE_BLEND_START], [0.0]]),
            name="naive_blend",
        )(alternatives)
        residual = keras.layers.Add()([residual, keras.layers.Reshape((horizon,))(blend)])
    model = keras.Model(inputs, residual)
    # Several steps per call: the per-step Python overhead dominates for a network this small.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae", steps_per_execution=16)
    return model
