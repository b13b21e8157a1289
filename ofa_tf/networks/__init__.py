"""Supernets (one module per family) and the static subnet builder."""

from ofa_tf.networks.mobilenet_v3 import OFAMobileNetV3

__all__ = ["OFAMobileNetV3"]
