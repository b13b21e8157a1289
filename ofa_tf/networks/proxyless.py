"""OFA-ProxylessNAS: the reference's ``OFAProxylessNASNets`` as an elastic Keras supernet.

The network is MBConv throughout (ReLU6, no SE), so it is the MBConv supernet built from the
ProxylessNAS layout (`ofa_tf.arch.layout.proxyless_layout`): a ReLU6 stem, a fixed first block,
six stages whose last always runs one block (its kernel size and expand ratio stay elastic),
and a feature-mix conv with BN before the global pool. Arch dicts have the reference's form:
21 ``ks`` / ``e`` values and 6 depths, the last 1.
"""

from __future__ import annotations

import keras

from ofa_tf.arch.space import SearchSpace
from ofa_tf.networks.mobilenet_v3 import OFAMobileNetV3
from ofa_tf.networks.registry import Family, register_family
from ofa_tf.networks.static import build_op_model, build_static_model


@keras.saving.register_keras_serializable("ofa_tf")
class OFAProxylessNASNets(OFAMobileNetV3):
    """Elastic ProxylessNAS supernet (w1.3, kernel 3/5/7, expand 3/4/6, depth 2/3/4 by default),
    with the reference's BN epsilon 1e-3 and the same subnet API as `OFAMobileNetV3`."""

    default_space = staticmethod(SearchSpace.proxyless)
    default_width_mult = 1.3

    def __init__(self, n_classes=1000, width_mult=None, ks_list=None, expand_ratio_list=None,
                 depth_list=None, dropout_rate=0.1, bn_momentum=0.9, bn_epsilon=1e-3, space=None,
                 seed=None, name="ofa_proxyless", **kwargs):
        super().__init__(n_classes=n_classes, width_mult=width_mult, ks_list=ks_list,
                         expand_ratio_list=expand_ratio_list, depth_list=depth_list,
                         dropout_rate=dropout_rate, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                         space=space, seed=seed, name=name, **kwargs)
        if self.space.family != "proxyless":
            raise ValueError(f"OFAProxylessNASNets needs a ProxylessNAS space, got family {self.space.family!r}")


register_family(Family("proxyless", OFAProxylessNASNets, build_static_model, build_op_model))
