"""Progressive-shrinking training: the phase table, in-step sampling, the trainer, the optimizer."""

from ofa_tf.training.optimizer import ReferenceSGD
from ofa_tf.training.phases import PHASE_NAMES, Phase, progressive_shrinking_phases
from ofa_tf.training.sampling import SubnetSampler
from ofa_tf.training.trainer import OFATrainer

__all__ = ["OFATrainer", "PHASE_NAMES", "Phase", "ReferenceSGD", "SubnetSampler",
           "progressive_shrinking_phases"]
