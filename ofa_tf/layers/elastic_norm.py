"""Batch normalization over the first C channels of a wider layer."""

import contextlib

import keras
import tensorflow as tf

from ofa_tf.layers.common import channels_of, leading_slice


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
        self._recalibration_factor = None  # set only inside `recalibrating(...)`

    def build(self, input_shape=None):
        shape = (self.channels,)
        # Never autocast: under a mixed-precision policy the fused kernel takes float16 or
        # bfloat16 activations with float32 parameters and statistics, and computes the
        # statistics in float32.
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones", autocast=False)
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros", autocast=False)
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros",
                                           trainable=False, autocast=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape, initializer="ones",
                                               trainable=False, autocast=False)

    def call(self, inputs, training=None):
        c = channels_of(inputs)
        gamma, beta, mean, variance = (leading_slice(w, (c,)) for w in (
            self.gamma, self.beta, self.moving_mean, self.moving_variance))
        if training and self._recalibration_factor is not None:
            return self._recalibrate(inputs, gamma, beta, c)
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

    def _recalibrate(self, inputs, gamma, beta, c):
        """Normalize with the batch's statistics and move the active channels' moving stats
        toward its mean and biased variance by the recalibration factor (OFA's recipe)."""
        outputs, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        # The fused kernel returns the unbiased variance; OFA averages the biased one.
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), batch_variance.dtype)
        batch_variance = batch_variance * (n - 1.0) / tf.maximum(n, 1.0)
        factor = tf.cast(self._recalibration_factor, batch_mean.dtype)
        for var, batch in ((self.moving_mean, batch_mean), (self.moving_variance, batch_variance)):
            # (1 - f) * old + f * batch, not old + f * (batch - old): with f = 1 (the first batch)
            # the old value drops out exactly, so a subnet's statistics do not depend on which
            # subnet was calibrated before it (a resumed collect equals an uninterrupted one).
            old = var[:c]
            var.assign(tf.concat([(1.0 - factor) * old + factor * batch, var[c:]], 0))
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


def elastic_batch_norms(model) -> list:
    """Every :class:`ElasticBatchNormalization` inside ``model``."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, ElasticBatchNormalization)]


@contextlib.contextmanager
def recalibrating(model, factor):
    """While this is active, calls of ``model`` with ``training=True`` recompute BN statistics:
    every :class:`ElasticBatchNormalization` normalizes with the batch's own statistics and moves
    its active channels' moving mean and variance by ``factor`` toward the batch's. With
    ``factor = 1 / i`` for the i-th batch the moving stats end as the average over the batches,
    as OFA's ``set_running_statistics``. Use it around the trace of a ``tf.function`` that takes
    ``factor`` as an argument; nothing else about the model changes."""
    layers = elastic_batch_norms(model)
    if not layers:
        raise ValueError(f"{model.name} has no ElasticBatchNormalization layers to recalibrate")
    for layer in layers:
        layer._recalibration_factor = factor
    try:
        yield
    finally:
        for layer in layers:
            layer._recalibration_factor = None
