"""TF checkpoints that hold every variable of a supernet.

``tf.train.Checkpoint(model=supernet)`` alone walks TensorFlow's object graph, which does not
enter the nested Python lists Keras 3 keeps layers in (a supernet's stages): the stage blocks'
BN moving statistics would be missing from every checkpoint, their trainable weights reachable
only through the optimizer, and a teacher or next phase restored from it would keep random
stage weights. Listing ``model.weights`` as well (an order fixed by the architecture) puts all of
them in.
"""

from __future__ import annotations

import tensorflow as tf


def model_checkpoint(model, **extra) -> tf.train.Checkpoint:
    """A checkpoint of ``model`` (every weight, by position) and ``extra`` trackables."""
    return tf.train.Checkpoint(model=model, weights=list(model.weights), **extra)


def restore_model(model, checkpoint_path: str) -> None:
    """Load ``model``'s weights from a checkpoint written through `model_checkpoint` (its other
    parts, e.g. the optimizer, are ignored); every weight must be there."""
    checkpoint = tf.train.Checkpoint(weights=list(model.weights))
    checkpoint.restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
