"""Squeeze-and-excitation whose width follows the active middle channels."""

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers import activations
from ofa_tf.layers.common import channels_of
from ofa_tf.layers.elastic_conv import ElasticPointwiseConv2D


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticSqueezeExcite(keras.layers.Layer):
    """avg-pool -> 1x1 reduce (+bias) -> relu -> 1x1 expand (+bias) -> h_sigmoid -> scale.

    The caller passes the active squeeze width (OFA: make_divisible(C // 4, 8)
    for C active channels); the convs use the first channels of each weight.
    """

    def __init__(self, channels, se_channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.se_channels = int(se_channels)
        self.reduce = ElasticPointwiseConv2D(self.channels, self.se_channels, use_bias=True,
                                             name=f"{self.name}_reduce")
        self.expand = ElasticPointwiseConv2D(self.se_channels, self.channels, use_bias=True,
                                             name=f"{self.name}_expand")

    def build(self, input_shape=None):
        self.reduce.build()
        self.expand.build()

    def call(self, inputs, se_channels=None):
        pooled = tf.reduce_mean(inputs, axis=(1, 2), keepdims=True)
        hidden = tf.nn.relu(self.reduce(pooled, out_channels=se_channels))
        gate = activations.h_sigmoid(self.expand(hidden, out_channels=channels_of(inputs)))
        return inputs * gate

    def active_weights(self, channels, se_channels):
        """Weights of the static twins ``{name}_reduce`` and ``{name}_expand`` (1x1 Conv2D)."""
        return {self.reduce.name: self.reduce.active_weights(channels, se_channels),
                self.expand.name: self.expand.active_weights(se_channels, channels)}

    def permute_channels(self, order):
        """Reorder the gated channels, then the hidden units by importance
        (L1 norm of the expand weights), as the reference does."""
        self.reduce.permute_channels(order, "in")
        self.expand.permute_channels(order, "out")
        importance = np.abs(self.expand.kernel.numpy()).sum(axis=(0, 1, 3))
        hidden_order = np.argsort(-importance, kind="stable")
        self.reduce.permute_channels(hidden_order, "out")
        self.expand.permute_channels(hidden_order, "in")

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "se_channels": self.se_channels}
