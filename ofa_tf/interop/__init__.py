"""Interoperation with the reference implementation (mit-han-lab/once-for-all, PyTorch)."""

from ofa_tf.interop.reference_mapping import (CheckpointMismatchError, load_reference_state_dict,
                                              reference_state_dict)

__all__ = ["CheckpointMismatchError", "load_reference_state_dict", "reference_state_dict"]
