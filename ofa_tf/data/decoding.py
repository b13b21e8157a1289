"""Decode JPEG / PNG bytes so that a truncated or non-image file is reported with its path and
skipped instead of stopping the pipeline."""

from __future__ import annotations

import tensorflow as tf
from absl import logging


def _careful_decode(data: tf.Tensor, where: tf.Tensor):
    """Eager decode that reports failure instead of raising (runs in `tf.py_function`)."""
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False), True
    except tf.errors.OpError as e:
        reason = e.message.split("}}")[-1].split("[Op:")[0].strip() or type(e).__name__
        if not data.numpy():
            reason = "empty file"
        logging.warning("Skipping corrupt or unreadable image %s: %s",
                        where.numpy().decode("utf-8", "replace"), reason)
        return tf.zeros([1, 1, 3], tf.uint8), False


def decode_image_checked(data: tf.Tensor, where: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded bytes → (uint8 [H, W, 3], ok). A bad image gives ok=False and a warning that
    names `where` (its path), instead of an error that would end the epoch. Every file takes
    this path: a JPEG whose first and last bytes are intact can still be corrupt inside."""
    image, ok = tf.py_function(_careful_decode, [data, where], [tf.uint8, tf.bool])
    image.set_shape([None, None, 3])
    ok.set_shape([])
    return image, ok
