"""Progressive-shrinking training: the phase table, in-step sampling, the trainer, the optimizer.

Names are imported on first use, so the settings (``ofa_tf.training.config``) load without
TensorFlow and a CLI can check its flags before TensorFlow starts."""

import importlib

_MODULE_OF = {"ReferenceSGD": "optimizer", "PHASE_NAMES": "phases", "Phase": "phases",
              "progressive_shrinking_phases": "phases", "SubnetSampler": "sampling",
              "OFATrainer": "trainer"}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'ofa_tf.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ofa_tf.training.{_MODULE_OF[name]}"), name)
