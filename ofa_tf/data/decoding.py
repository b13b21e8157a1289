"""Decode JPEG / PNG bytes so that a truncated or non-image file is reported with its path and
skipped instead of stopping the pipeline."""

from __future__ import annotations

import tensorflow as tf
from absl import logging

_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _looks_complete(data: tf.Tensor) -> tf.Tensor:
    """True for a JPEG or PNG whose first and last bytes are what a complete file has.

    Such files are decoded in graph; anything else (truncated, not an image, trailing bytes,
    other formats) takes the careful path, which catches the decode error and names the file.
    """
    n = tf.strings.length(data)

    def ends_with(suffix):
        return tf.strings.substr(data, tf.maximum(n - len(suffix), 0), len(suffix)) == suffix

    def starts_with(prefix):
        return tf.strings.substr(data, 0, len(prefix)) == prefix

    jpeg = starts_with(_JPEG_START) & ends_with(_JPEG_END)
    png = starts_with(_PNG_START) & ends_with(_PNG_END)
    return jpeg | png


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
    names `where` (its path), instead of an error that would end the epoch."""

    def fast():
        return tf.io.decode_image(data, channels=3, expand_animations=False), tf.constant(True)

    def careful():
        image, ok = tf.py_function(_careful_decode, [data, where], [tf.uint8, tf.bool])
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, ok

    return tf.cond(_looks_complete(data), fast, careful)
