"""The reference's learning-rate schedule: linear warm-up, then cosine decay to zero.

The step is the optimizer's own ``iterations`` counter, so restoring the
optimizer from a checkpoint restores the position in the schedule too.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("ofa_tf")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step)`` for ``warmup_steps`` of linear warm-up from 0 and ``decay_steps`` of cosine.

    As in OFA: during warm-up (counting steps from 1) ``lr = base_lr * (step + 1) / warmup_steps``;
    afterwards ``lr = 0.5 * base_lr * (1 + cos(pi * t / decay_steps))`` with ``t`` the steps since
    warm-up ended. Warm-up epochs come on top of the phase's epochs, as the reference adds them.
    """

    def __init__(self, base_lr: float, decay_steps: int, warmup_steps: int = 0):
        if base_lr <= 0 or not math.isfinite(base_lr):
            raise ValueError(f"base_lr must be a positive number, got {base_lr!r}")
        if int(decay_steps) < 1:
            raise ValueError(f"decay_steps must be >= 1, got {decay_steps!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.base_lr, self.decay_steps, self.warmup_steps = float(base_lr), int(decay_steps), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = tf.constant(self.base_lr, tf.float32)
        t = tf.clip_by_value(step - self.warmup_steps, 0.0, float(self.decay_steps))
        cosine = 0.5 * base * (1.0 + tf.cos(math.pi * t / self.decay_steps))
        if not self.warmup_steps:
            return cosine
        warm = base * (step + 1.0) / self.warmup_steps
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"base_lr": self.base_lr, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps}
