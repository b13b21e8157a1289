"""Elastic convolutions: depthwise with an elastic kernel, pointwise with elastic channels.

Weights are stored at their largest shape and sliced to the active shape on
every call, so a small subnet runs small convolutions. Each layer can hand
over the weights of its static twin (``keras.layers.DepthwiseConv2D`` /
``Conv2D``) for the active choice.
"""

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers.common import channels_of, he_fan_out, leading_slice, static_int


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticDepthwiseConv2D(keras.layers.Layer):
    """Depthwise conv whose k x k kernel is the centre of the largest kernel.

    For each step down the sorted kernel sizes (7 -> 5 -> 3) the centre crop is
    flattened per channel and multiplied by a (k^2 x k^2) matrix shared by all
    channels and initialised to identity (OFA's kernel transformation). The
    input is padded symmetrically by k // 2, as the reference pads.
    """

    def __init__(self, channels, kernel_sizes=(3, 5, 7), strides=1, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_sizes = tuple(sorted(int(k) for k in kernel_sizes))
        self.strides = int(strides)
        self.max_kernel_size = self.kernel_sizes[-1]

    def build(self, input_shape=None):
        k = self.max_kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, self.channels, 1),
                                      initializer=he_fan_out(k, self.channels))
        self.transforms = {}
        descending = self.kernel_sizes[::-1]
        for src, dst in zip(descending, descending[1:]):
            self.transforms[(src, dst)] = self.add_weight(
                name=f"transform_{src}to{dst}", shape=(dst * dst, dst * dst),
                initializer=keras.initializers.Identity())

    def _shrink(self, kernel, src, dst):
        start = (src - dst) // 2
        crop = kernel[start:start + dst, start:start + dst, :, 0]
        flat = tf.reshape(crop, (dst * dst, -1))
        flat = tf.matmul(self.transforms[(src, dst)], flat)
        return tf.reshape(flat, (dst, dst, -1, 1))

    def _kernel_for_index(self, kernel, index):
        descending = self.kernel_sizes[::-1]
        for src, dst in zip(descending[:index], descending[1:index + 1]):
            kernel = self._shrink(kernel, src, dst)
        return kernel

    def active_kernel(self, kernel_size, channels=None):
        """The (k, k, channels, 1) kernel for ``kernel_size`` (int or scalar tensor)."""
        kernel = self.kernel if channels is None else leading_slice(self.kernel, (None, None, channels, None))
        descending = self.kernel_sizes[::-1]
        known = static_int(kernel_size)
        if known is not None:
            if known not in descending:
                raise ValueError(f"{self.name}: kernel size {known} is not one of {self.kernel_sizes}")
            return self._kernel_for_index(kernel, descending.index(known))
        if len(descending) == 1:
            return kernel
        index = tf.argmax(tf.cast(tf.equal(tf.constant(descending, tf.int32),
                                           tf.cast(kernel_size, tf.int32)), tf.int32),
                          output_type=tf.int32)
        return tf.switch_case(index, [lambda i=i: self._kernel_for_index(kernel, i)
                                      for i in range(len(descending))])

    def call(self, inputs, kernel_size=None):
        kernel_size = self.max_kernel_size if kernel_size is None else kernel_size
        kernel = self.active_kernel(kernel_size, channels_of(inputs))
        if self.strides == 1:
            return tf.nn.depthwise_conv2d(inputs, kernel, (1, 1, 1, 1), "SAME")
        pad = tf.cast(kernel_size, tf.int32) // 2 if static_int(kernel_size) is None else kernel_size // 2
        inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.depthwise_conv2d(inputs, kernel, (1, self.strides, self.strides, 1), "VALID")

    def active_weights(self, kernel_size, channels):
        """Weights of the static ``DepthwiseConv2D`` twin."""
        return [np.asarray(self.active_kernel(kernel_size, channels))]

    def permute_channels(self, order):
        self.kernel.assign(self.kernel.numpy()[:, :, order, :])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_sizes": list(self.kernel_sizes), "strides": self.strides}


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticPointwiseConv2D(keras.layers.Layer):
    """1x1 conv that uses the first ``in`` input and first ``out`` output channels."""

    def __init__(self, max_in_channels, max_out_channels, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.max_in_channels = int(max_in_channels)
        self.max_out_channels = int(max_out_channels)
        self.use_bias = bool(use_bias)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(1, 1, self.max_in_channels, self.max_out_channels),
                                      initializer=he_fan_out(1, self.max_out_channels))
        self.bias = (self.add_weight(name="bias", shape=(self.max_out_channels,), initializer="zeros")
                     if self.use_bias else None)

    def call(self, inputs, out_channels=None):
        kernel = leading_slice(self.kernel, (None, None, channels_of(inputs), out_channels))
        outputs = tf.nn.conv2d(inputs, kernel, 1, "VALID")
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, leading_slice(self.bias, (out_channels,)))
        return outputs

    def active_weights(self, in_channels, out_channels):
        """Weights of the static 1x1 ``Conv2D`` twin."""
        out = [self.kernel.numpy()[:, :, :in_channels, :out_channels]]
        if self.bias is not None:
            out.append(self.bias.numpy()[:out_channels])
        return out

    def permute_channels(self, order, axis):
        """Reorder input (``axis='in'``) or output (``'out'``) channels."""
        kernel = self.kernel.numpy()
        if axis == "in":
            self.kernel.assign(kernel[:, :, order, :])
        elif axis == "out":
            self.kernel.assign(kernel[:, :, :, order])
            if self.bias is not None:
                self.bias.assign(self.bias.numpy()[order])
        else:
            raise ValueError(f"axis must be 'in' or 'out', got {axis!r}")

    def get_config(self):
        return {**super().get_config(), "max_in_channels": self.max_in_channels,
                "max_out_channels": self.max_out_channels, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticConv2D(ElasticPointwiseConv2D):
    """A k x k conv (any stride) on the first ``in`` input channels, giving the first ``out``
    output channels: the stem and bottleneck convs of width-elastic networks. Padded
    symmetrically by k // 2, as the reference pads."""

    def __init__(self, max_in_channels, max_out_channels, kernel_size=1, strides=1, use_bias=False, **kwargs):
        super().__init__(max_in_channels, max_out_channels, use_bias=use_bias, **kwargs)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)

    def build(self, input_shape=None):
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, self.max_in_channels, self.max_out_channels),
                                      initializer=he_fan_out(k, self.max_out_channels))
        self.bias = (self.add_weight(name="bias", shape=(self.max_out_channels,), initializer="zeros")
                     if self.use_bias else None)

    def call(self, inputs, out_channels=None):
        kernel = leading_slice(self.kernel, (None, None, channels_of(inputs), out_channels))
        if self.strides == 1:
            outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")
        else:
            pad = self.kernel_size // 2
            inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            outputs = tf.nn.conv2d(inputs, kernel, self.strides, "VALID")
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, leading_slice(self.bias, (out_channels,)))
        return outputs

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticDense(keras.layers.Layer):
    """A classifier on the first ``in`` features of a wider input (width-elastic networks), with
    a ``keras.layers.Dense`` twin."""

    def __init__(self, max_in_features, units, **kwargs):
        super().__init__(**kwargs)
        self.max_in_features, self.units = int(max_in_features), int(units)

    def build(self, input_shape=None):
        bound = 1 / np.sqrt(self.max_in_features)
        self.kernel = self.add_weight(name="kernel", shape=(self.max_in_features, self.units),
                                      initializer=keras.initializers.RandomUniform(-bound, bound))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return tf.matmul(inputs, leading_slice(self.kernel, (channels_of(inputs), None))) + self.bias

    def active_weights(self, in_features):
        return [self.kernel.numpy()[:in_features], self.bias.numpy()]

    def get_config(self):
        return {**super().get_config(), "max_in_features": self.max_in_features, "units": self.units}
