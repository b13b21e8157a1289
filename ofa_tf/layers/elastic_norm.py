"""Batch normalization over the first C channels of a wider layer."""

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers.common import channels_of


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticBatchNormalization(keras.layers.Layer):
    """BN whose active width follows its input; only active channels' moving stats move.

    Uses TF's fused kernel. As in PyTorch (and so the reference), the moving
    variance is updated with the unbiased batch variance while the batch is
    normalized with the biased one. ``momentum`` is Keras-style (0.9 here
    equals PyTorch's 0.1).
    """

    def __init__(self, channels, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape=None):
        shape = (self.channels,)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros",
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape, initializer="ones",
                                               trainable=False)

    def call(self, inputs, training=None):
        c = channels_of(inputs)
        gamma, beta = self.gamma[:c], self.beta[:c]
        mean, variance = self.moving_mean[:c], self.moving_variance[:c]
        if training and self.trainable:
            outputs, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean, variance, epsilon=self.epsilon, is_training=True,
                exponential_avg_factor=1.0 - self.momentum)
            self.moving_mean.assign(tf.concat([new_mean, self.moving_mean[c:]], 0))
            self.moving_variance.assign(tf.concat([new_variance, self.moving_variance[c:]], 0))
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, mean, variance, epsilon=self.epsilon, is_training=False)
        return outputs

    def active_weights(self, channels):
        """Weights of the static ``BatchNormalization`` twin: gamma, beta, mean, variance."""
        return [w.numpy()[:channels] for w in (self.gamma, self.beta, self.moving_mean,
                                                    self.moving_variance)]

    def permute_channels(self, order):
        for w in (self.gamma, self.beta, self.moving_mean, self.moving_variance):
            w.assign(w.numpy()[order])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "momentum": self.momentum,
                "epsilon": self.epsilon}
