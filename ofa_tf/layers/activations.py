"""The families' activations, computed exactly as Keras 3 computes them.

The supernet applies these functions; the static subnet uses
``keras.layers.Activation`` with the same names, so both graphs do the same
arithmetic and extraction is exact to float32 round-off.
"""

import tensorflow as tf


def h_sigmoid(x):
    """relu6(x + 3) / 6 (Keras 3's ``hard_sigmoid``)."""
    return tf.nn.relu6(x + tf.constant(3.0, x.dtype)) / tf.constant(6.0, x.dtype)


def h_swish(x):
    """x * relu6(x + 3) / 6 (Keras 3's ``hard_swish``)."""
    return x * h_sigmoid(x)


_FUNCTIONS = {"relu": tf.nn.relu, "relu6": tf.nn.relu6, "h_swish": h_swish, "h_sigmoid": h_sigmoid}

# Names of the same functions for keras.layers.Activation.
KERAS_NAMES = {"relu": "relu", "relu6": "relu6", "h_swish": "hard_swish", "h_sigmoid": "hard_sigmoid"}


def function(name: str):
    """The activation function called ``name`` in the layout (``relu``, ``relu6``, ``h_swish``, ``h_sigmoid``)."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_FUNCTIONS)}")
    return _FUNCTIONS[name]


def apply(x, name: str):
    return function(name)(x)
