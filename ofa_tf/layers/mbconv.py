"""The elastic MBConv block: expand 1x1 -> depthwise k x k -> (SE) -> project 1x1."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.arch.layout import BlockSpec
from ofa_tf.layers import activations
from ofa_tf.layers.common import (checked_choice, choice_numpy, choice_variable, importance_order,
                                  nearest_choice, reads_choices_now, static_int)
from ofa_tf.layers.elastic_conv import ElasticDepthwiseConv2D, ElasticPointwiseConv2D
from ofa_tf.layers.elastic_norm import ElasticBatchNormalization
from ofa_tf.layers.elastic_se import ElasticSqueezeExcite


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticMBConv(keras.layers.Layer):
    """One block slot of the supernet, holding its active kernel size and expand ratio.

    The choice lives in two non-trainable variables read inside ``call``, so a
    compiled function serves every choice; the middle width (and the SE width)
    for the active expand ratio is looked up in a table built from the layout.
    Sub-layer names equal the static subnet's layer names.
    """

    def __init__(self, spec, bn_momentum=0.9, bn_epsilon=1e-5, **kwargs):
        spec = spec if isinstance(spec, BlockSpec) else BlockSpec(**{
            **spec, "kernel_sizes": tuple(spec["kernel_sizes"]),
            "expand_ratios": tuple(spec["expand_ratios"])})
        kwargs.setdefault("name", spec.name)
        super().__init__(**kwargs)
        self.spec = spec
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        p, mid = spec.name, spec.max_mid_channels
        bn = lambda c, n: ElasticBatchNormalization(c, bn_momentum, bn_epsilon, name=n)  # noqa: E731
        if spec.has_expand:
            self.expand = ElasticPointwiseConv2D(spec.in_channels, mid, name=f"{p}_expand")
            self.expand_bn = bn(mid, f"{p}_expand_bn")
        self.depthwise = ElasticDepthwiseConv2D(mid, spec.kernel_sizes, spec.stride, name=f"{p}_depthwise")
        self.depthwise_bn = bn(mid, f"{p}_depthwise_bn")
        if spec.use_se:
            self.se = ElasticSqueezeExcite(mid, spec.max_se_channels, name=f"{p}_se")
        self.project = ElasticPointwiseConv2D(mid, spec.out_channels, name=f"{p}_project")
        self.project_bn = bn(spec.out_channels, f"{p}_project_bn")

    def _sublayers(self):
        names = (["expand", "expand_bn"] if self.spec.has_expand else []) + ["depthwise", "depthwise_bn"] + \
            (["se"] if self.spec.use_se else []) + ["project", "project_bn"]
        return [getattr(self, n) for n in names]

    def build(self, input_shape=None):
        for layer in self._sublayers():
            layer.build()
        self.active_kernel_size = choice_variable(self, "active_kernel_size", self.spec.max_kernel_size, "int32")
        self.active_expand_ratio = choice_variable(self, "active_expand_ratio",
                                                   max(self.spec.expand_ratios), "float32")

    # ------------------------------------------------------------ active choice
    def set_active(self, kernel_size=None, expand_ratio=None):
        if kernel_size is not None:
            self.active_kernel_size.assign(int(checked_choice(self.name, "kernel size", kernel_size,
                                                              self.spec.kernel_sizes)))
        if expand_ratio is not None:
            self.active_expand_ratio.assign(float(checked_choice(self.name, "expand ratio", expand_ratio,
                                                                 self.spec.expand_ratios)))

    def active_choice(self):
        """(kernel_size, expand_ratio) as Python numbers, expand ratio as in the space."""
        return (int(choice_numpy(self.active_kernel_size)),
                nearest_choice(self.active_expand_ratio, self.spec.expand_ratios))

    def _active_widths(self):
        """(middle channels, SE channels) for the active expand ratio: ints eagerly (and under
        `static_choices`), tensors in a graph."""
        spec = self.spec
        if reads_choices_now():
            mid = spec.mid_channels(self.active_choice()[1])
            return mid, spec.se_channels(mid)
        ratios = tf.constant([float(e) for e in spec.expand_ratios], tf.float32)
        index = tf.argmin(tf.abs(ratios - tf.cast(self.active_expand_ratio, tf.float32)))
        mids = [spec.mid_channels(e) for e in spec.expand_ratios]
        return (tf.gather(tf.constant(mids, tf.int32), index),
                tf.gather(tf.constant([spec.se_channels(m) for m in mids], tf.int32), index))

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=None):
        act = self.spec.act
        mid, se_channels = self._active_widths()
        known = static_int(self.active_kernel_size)
        kernel_size = self.active_kernel_size if known is None else known
        x = inputs
        if self.spec.has_expand:
            x = activations.apply(self.expand_bn(self.expand(x, out_channels=mid), training=training), act)
        x = self.depthwise(x, kernel_size=kernel_size)
        x = activations.apply(self.depthwise_bn(x, training=training), act)
        if self.spec.use_se:
            x = self.se(x, se_channels=se_channels)
        x = self.project_bn(self.project(x), training=training)
        if self.spec.residual:
            x = x + inputs
        return x

    # ------------------------------------------------------------- extraction
    def active_weights(self, kernel_size=None, expand_ratio=None):
        """Weights of the static block for a choice (default: the active one),
        keyed by the static layer names."""
        active_k, active_e = self.active_choice()
        k = active_k if kernel_size is None else kernel_size
        e = active_e if expand_ratio is None else expand_ratio
        spec, p = self.spec, self.spec.name
        mid = spec.mid_channels(e)
        out = {}
        if spec.has_expand:
            out[f"{p}_expand"] = self.expand.active_weights(spec.in_channels, mid)
            out[f"{p}_expand_bn"] = self.expand_bn.active_weights(mid)
        out[f"{p}_depthwise"] = self.depthwise.active_weights(k, mid)
        out[f"{p}_depthwise_bn"] = self.depthwise_bn.active_weights(mid)
        if spec.use_se:
            out.update(self.se.active_weights(mid, spec.se_channels(mid)))
        out[f"{p}_project"] = self.project.active_weights(mid, spec.out_channels)
        out[f"{p}_project_bn"] = self.project_bn.active_weights(spec.out_channels)
        return out

    def sort_channels(self, expand_ratio_stage=0):
        """Reorder middle channels by importance (L1 norm of the project weights), descending.

        With ``expand_ratio_stage`` = n > 0, channels already inside the widths
        of the n+1 largest expand ratios keep their group (the reference's
        protection of earlier width phases). Outputs at the largest expand
        ratio are unchanged; smaller ratios then keep the most important channels.
        """
        if not self.spec.has_expand:
            return None
        importance = np.abs(self.project.kernel.numpy()).sum(axis=(0, 1, 3))
        widths = [self.spec.mid_channels(e) for e in sorted(self.spec.expand_ratios, reverse=True)]
        order = importance_order(importance, widths, expand_ratio_stage)
        self.expand.permute_channels(order, "out")
        self.expand_bn.permute_channels(order)
        self.depthwise.permute_channels(order)
        self.depthwise_bn.permute_channels(order)
        if self.spec.use_se:
            self.se.permute_channels(order)
        self.project.permute_channels(order, "in")
        return order

    def get_config(self):
        spec = dataclasses.asdict(self.spec)
        spec["kernel_sizes"], spec["expand_ratios"] = list(spec["kernel_sizes"]), list(spec["expand_ratios"])
        return {**super().get_config(), "spec": spec, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon}
