"""Supernets, one module per family, each registering itself in `registry` on import; the
static subnet builder and extraction."""

from ofa_tf.networks.mobilenet_v3 import OFAMobileNetV3
from ofa_tf.networks.proxyless import OFAProxylessNASNets
from ofa_tf.networks.resnet import OFAResNets
from ofa_tf.networks.registry import Family, family_of, get_family, register_family

__all__ = ["Family", "OFAMobileNetV3", "OFAProxylessNASNets", "OFAResNets", "family_of", "get_family", "register_family"]
