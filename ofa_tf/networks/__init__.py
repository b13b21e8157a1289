"""Supernets and the layout they share with the static subnet builder."""

from ofa_tf.networks.layout import Layout, build_layout, make_divisible
from ofa_tf.networks.mobilenet_v3 import OFAMobileNetV3

__all__ = ["Layout", "OFAMobileNetV3", "build_layout", "make_divisible"]
