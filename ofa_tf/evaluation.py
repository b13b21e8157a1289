"""Evaluate subnets of a supernet: activate one, recalibrate its BN statistics, measure it.

A subnet's BN statistics are not those of the supernet (the moving averages mix every
subnet trained), so OFA recomputes them on a few thousand training images before any
evaluation. Both steps run on the supernet itself with the subnet active, through compiled
functions that are traced once (spatial size left dynamic) and serve every subnet and
resolution. Training, search and export all use this module; it knows no family and
imports neither of them.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf

from ofa_tf.layers.elastic_norm import elastic_batch_norms, recalibrating

_IMAGES = tf.TensorSpec([None, None, None, 3], tf.float32)


@contextlib.contextmanager
def activated_subnet(supernet, arch: Mapping | None = None):
    """Activate ``arch`` (an arch dict or `Arch`; None: keep the active one) for the ``with``
    block; on exit, however it is left, the previously active subnet, every BN moving mean and
    variance and every random-generator state of the supernet (its dropout's: BN recalibration
    runs in training mode) are restored. A recalibration for one subnet (validation during
    training, export) then leaves the supernet, and so a run resumed from the checkpoint taken
    just before a validation, as it was."""
    previous = supernet.get_active_arch()
    statistics = [v for bn in elastic_batch_norms(supernet) for v in (bn.moving_mean, bn.moving_variance)]
    statistics += [layer.seed_generator.state for layer in supernet._flatten_layers()
                   if getattr(layer, "seed_generator", None) is not None]
    saved = [v.numpy() for v in statistics]
    try:
        if arch is not None:
            supernet.set_active_subnet(**arch)
        yield supernet
    finally:
        for v, value in zip(statistics, saved):
            v.assign(value)
        supernet.set_active_subnet(**previous)


class BNRecalibrator:
    """Recomputes the active subnet's BN statistics as OFA's ``set_running_statistics``: the
    moving mean and variance of the active channels become the average over the batches."""

    def __init__(self, supernet):
        self.supernet = supernet
        self._calibrate_batch = tf.function(
            self._calibrate_batch_fn, input_signature=[_IMAGES, tf.TensorSpec([], tf.float32)])

    def _calibrate_batch_fn(self, images, factor):
        with recalibrating(self.supernet, factor):
            self.supernet(images, training=True)
        return tf.constant(0)

    def recalibrate(self, batches: Iterable, n_images: int) -> int:
        """Use the first ``n_images`` images of ``batches`` (``(images, labels)`` pairs);
        returns the number of images used."""
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        seen, count = 0, 0
        for images, _ in batches:
            images = images[: n_images - seen]
            count += 1
            self._calibrate_batch(images, tf.constant(1.0 / count))
            seen += int(images.shape[0])
            if seen >= n_images:
                break
        if not seen:
            raise ValueError("the calibration data yielded no images")
        return seen


class SubnetValidator:
    """BN recalibration and evaluation of any subnet of ``supernet``.

    ``calibration_data(image_size)`` returns batches ``(images, labels)`` of training images at
    that size (OFA uses 2000 images with training augmentation, in batches of 200);
    ``eval_data(image_size)`` the validation batches. ``n_calibration_images`` caps the first.
    """

    def __init__(self, supernet, calibration_data: Callable[[int], tf.data.Dataset],
                 eval_data: Callable[[int], tf.data.Dataset], n_calibration_images: int = 2000):
        if n_calibration_images < 1:
            raise ValueError(f"n_calibration_images must be >= 1, got {n_calibration_images}")
        self.supernet = supernet
        self.calibration_data, self.eval_data = calibration_data, eval_data
        self.n_calibration_images = int(n_calibration_images)
        self.recalibrator = BNRecalibrator(supernet)
        self._eval_batch = tf.function(
            self._eval_batch_fn, input_signature=[_IMAGES, tf.TensorSpec([None], tf.int32)])

    def _eval_batch_fn(self, images, labels):
        # float32 whatever the supernet computes in (a mixed-precision run validates it as it trains).
        logits = tf.cast(self.supernet(images, training=False), tf.float32)
        labels = tf.cast(labels, tf.int32)
        top5 = tf.math.top_k(logits, k=min(5, self.supernet.n_classes)).indices
        hits = tf.equal(top5, labels[:, None])
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return (tf.reduce_sum(tf.cast(hits[:, 0], tf.int64)),
                tf.reduce_sum(tf.cast(tf.reduce_any(hits, axis=1), tf.int64)),
                tf.reduce_sum(loss), tf.size(labels, out_type=tf.int64))

    def recalibrate(self, image_size: int) -> int:
        """Recompute the active subnet's BN statistics; returns the number of images used."""
        return self.recalibrator.recalibrate(self.calibration_data(image_size), self.n_calibration_images)

    def evaluate(self, arch: Mapping) -> dict:
        """Activate ``arch``, recalibrate its BN at ``arch["r"]`` and measure it on the eval data.

        Returns ``{"top1", "top5"}`` in percent, the mean ``loss`` and ``n`` images. Note that the
        supernet's moving statistics for the active channels are left recalibrated (as in OFA).
        """
        arch = self.supernet.space.arch(arch, require_resolution=True)
        self.supernet.set_active_subnet(**arch)
        self.recalibrate(arch.resolution)
        totals = np.zeros(4)
        for images, labels in self.eval_data(arch.resolution):
            totals += [float(t) for t in self._eval_batch(images, tf.reshape(labels, [-1]))]
        top1, top5, loss, n = totals
        if not n:
            raise ValueError("the evaluation data yielded no images")
        return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss / n, "n": int(n)}

    def evaluate_many(self, archs: Mapping[str, Mapping]) -> dict:
        """``{name: evaluate(arch)}`` without side effects: the active subnet and every BN
        moving statistic are restored afterwards, so validating during training changes nothing
        about the run (a resumed run equals an uninterrupted one)."""
        with activated_subnet(self.supernet):
            return {name: self.evaluate(arch) for name, arch in archs.items()}
