"""Training pieces: the reference's optimizer (more to come: phases, train step, BN recalibration)."""

from ofa_tf.training.optimizer import ReferenceSGD

__all__ = ["ReferenceSGD"]
