"""Small pieces every elastic layer needs: active channel counts, OFA's init, the order of
channels by importance."""

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf


def leading_slice(tensor, sizes):
    """The first ``sizes[i]`` entries of ``tensor`` along each axis (None: the whole axis), as
    one ``Slice``: how the elastic layers cut the active weights out of the largest ones.

    A ``Slice``'s gradient is one ``Pad``. A strided slice's gradient (``StridedSliceGrad``),
    when the sizes are only known at run time as in a compiled elastic step, is 3-4x slower
    (measured), and it ran once per weight and step: 19 % of the smallest OFA-ResNet50D
    subnet's backward pass."""
    if len(sizes) != len(tensor.shape):
        raise ValueError(f"leading_slice: {len(sizes)} sizes for a rank-{len(tensor.shape)} tensor")
    if all(isinstance(size, int) or size is None for size in sizes):
        return tf.slice(tensor, [0] * len(sizes), [-1 if size is None else size for size in sizes])
    size = tf.stack([tf.constant(-1, tf.int32) if s is None else tf.cast(s, tf.int32) for s in sizes])
    return tf.slice(tensor, tf.zeros_like(size), size)


def channels_of(x):
    """Channel count of an NHWC tensor: a Python int when static, else a scalar tensor."""
    static = x.shape[-1]
    return int(static) if static is not None else tf.shape(x)[-1]


_static_choices = 0   # nesting depth of `static_choices`


@contextlib.contextmanager
def static_choices():
    """While active, a function being traced reads the active choices (kernel size, expand
    ratio, depth, width) as Python values, as eager code does: the graph is that one subnet,
    with static shapes (which XLA needs), and holds only while the choices do not change."""
    global _static_choices
    _static_choices += 1
    try:
        yield
    finally:
        _static_choices -= 1


def reads_choices_now() -> bool:
    """Whether layers read their active choices as Python values: eagerly, or while tracing
    under `static_choices`."""
    return tf.executing_eagerly() or _static_choices > 0


def choice_numpy(variable):
    """A choice variable's current value as numpy, also while a function is traced."""
    with tf.init_scope():
        return keras.ops.convert_to_numpy(variable)


def static_int(value):
    """The Python int behind ``value`` when it can be read now (eagerly, or a choice variable
    under `static_choices`), else None."""
    if isinstance(value, int):
        return value
    if tf.executing_eagerly() or (_static_choices and isinstance(value, keras.Variable)):
        return int(choice_numpy(value))
    return None


def he_fan_out(kernel_size: int, out_channels: int):
    """OFA's 'he_fout' conv init: normal with std sqrt(2 / (k * k * out_channels))."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (kernel_size * kernel_size * out_channels)))


def choice_variable(layer: keras.layers.Layer, name: str, value, dtype: str, shape=()):
    """A non-trainable variable of ``layer`` holding an active choice.

    Under a distribution strategy it is sync-on-read: each replica writes its own copy
    without a cross-replica merge (which control flow such as the trainer's loop over
    subnets forbids), and every replica samples the same subnet from the same seed, so
    the copies agree; reads outside a replica return the first replica's value.
    """
    with keras.name_scope(layer.name, caller=layer):
        variable = keras.Variable(keras.initializers.Constant(value), shape=shape, dtype=dtype,
                                  trainable=False, name=name, aggregation="only_first_replica",
                                  synchronization="on_read")
    layer._track_variable(variable)
    return variable


def importance_order(importance, widths, expand_ratio_stage: int = 0):
    """Channel order by ``importance`` (descending), as the reference's
    ``re_organize_middle_weights``: with ``expand_ratio_stage`` = n > 0, channels inside the
    ``widths`` (of the expand ratios, largest first) of the n+1 largest ratios keep their group."""
    importance = np.asarray(importance, np.float64).copy()
    if expand_ratio_stage > 0:
        right, base = len(importance), -len(widths) * 1e5
        for left in widths[: expand_ratio_stage + 1]:
            importance[left:right] += base
            base += 1e5
            right = left
    return np.argsort(-importance, kind="stable")


def checked_choice(layer_name: str, what: str, value, choices):
    """``value`` if it is one of ``choices``; one ValueError naming the layer otherwise."""
    if value not in choices:
        raise ValueError(f"{layer_name}: {what} {value!r} not in {choices}")
    return value


def nearest_choice(variable, choices):
    """The entry of ``choices`` nearest to a float choice variable's value (as the space spells it)."""
    value = float(choice_numpy(variable))
    return min(choices, key=lambda c: abs(c - value))
