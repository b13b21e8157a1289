"""The part of OFA's subnet API every family's supernet shares, written once over the family's
own ``set_active_subnet`` / ``get_active_arch`` / ``sort_channels`` / ``elastic_blocks``."""

from __future__ import annotations

import numpy as np

from ofa_tf.arch.layout import build_layout
from ofa_tf.networks.extraction import extract_subnet


class SupernetAPI:
    """Mixed into a family's ``keras.Model`` supernet (before ``keras.Model``), which holds
    ``space``, ``_rng``, ``n_classes``, ``dropout_rate``, ``bn_momentum`` and ``bn_epsilon``
    (set by `_hold_space`)."""

    def _hold_space(self, space, n_classes, dropout_rate, bn_momentum, bn_epsilon, seed):
        """Keep the space, its layout, the head and BN settings, and the sampling generator."""
        self.space = space
        self.layout = build_layout(space, n_classes, dropout_rate)
        self.n_classes, self.dropout_rate = n_classes, float(dropout_rate)
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self._rng = np.random.default_rng(seed)
        self.active_resolution = space.default_resolution

    def set_max_net(self):
        self.set_active_subnet(**self.space.largest())

    def set_min_net(self):
        self.set_active_subnet(**self.space.smallest())

    def sample_active_subnet(self, rng=None):
        """Activate a uniformly sampled subnet and return its arch dict (with ``r``)."""
        arch = self.space.sample(self._rng if rng is None else rng)
        self.set_active_subnet(**arch)
        return arch

    def get_active_subnet(self, image_size=None, preserve_weight=True):
        """The active subnet as a plain Keras model with its weights copied in."""
        return extract_subnet(self, self.get_active_arch(), image_size=image_size,
                              preserve_weight=preserve_weight)

    def sort_channels(self, expand_ratio_stage=0):
        """Reorder every elastic block's middle channels by importance (its ``sort_channels``)."""
        for block in self.elastic_blocks:
            block.sort_channels(expand_ratio_stage)

    def re_organize_middle_weights(self, expand_ratio_stage=0):
        """OFA's name for `sort_channels`."""
        self.sort_channels(expand_ratio_stage)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "n_classes": self.n_classes,
                "dropout_rate": self.dropout_rate, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon, "space": self.space.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
