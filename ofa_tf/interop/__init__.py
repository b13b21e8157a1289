"""Interoperation with the reference implementation (mit-han-lab/once-for-all, PyTorch).

The names below load on first use, so the command lines can report a bad flag or a missing
file before TensorFlow starts.
"""

__all__ = ["CheckpointMismatchError", "load_reference_state_dict", "reference_state_dict"]


def __getattr__(name):
    if name not in __all__:
        raise AttributeError(f"module 'ofa_tf.interop' has no attribute {name!r}")
    from ofa_tf.interop import reference_mapping

    return getattr(reference_mapping, name)
