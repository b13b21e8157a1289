"""Mixed-precision training: the Keras dtype policy a run builds its networks under, and loss
scaling for float16.

``mixed_float16`` / ``mixed_bfloat16`` networks keep every variable in float32 (so checkpoints,
``supernet.weights.h5`` and exports are what a float32 run writes) and compute in the 16-bit
type; batch normalization takes its float32 parameters and computes its statistics in float32
(`ElasticBatchNormalization`), and the trainer casts logits to float32 before the softmax, the
KD term and the loss. float16's narrow exponent needs loss scaling: the loss is multiplied by a
dynamic scale before the gradient and the gradients divided by it before the update, and a step
whose gradients overflow is skipped (the scale halves). bfloat16 has float32's exponent and
needs none.
"""

from __future__ import annotations

import contextlib

import keras

from ofa_tf.training.config import PRECISIONS


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    return precision


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Layers created inside compute in ``precision``'s dtype (they keep it after); the global
    Keras policy is restored on exit, so later networks of the process (an export, a test) are
    float32 as before."""
    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable("ofa_tf")
class StepCountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scaling, except that a skipped step (non-finite gradients) still
    advances the inner optimizer's ``iterations``: the training pipelines count the batches
    consumed and drive the learning-rate schedule and the resume position by ``iterations``,
    so they must not drift apart when float16 overflows (as a PyTorch scheduler stepped every
    iteration does not wait for GradScaler's skipped steps)."""

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.inner_optimizer.iterations.assign_add(1)


def optimizer_for(optimizer, precision: str):
    """``optimizer`` wrapped for loss scaling when ``precision`` is float16, else as it is."""
    if check_precision(precision) == "mixed_float16":
        return StepCountingLossScaleOptimizer(optimizer)
    return optimizer


def scale_loss(optimizer, loss):
    """``loss`` times the optimizer's loss scale (unchanged without loss scaling); the
    optimizer's ``apply`` divides the gradients by the same scale."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss
