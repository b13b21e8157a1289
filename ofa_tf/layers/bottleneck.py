"""The elastic bottleneck block: 1x1 -> k x k (stride) -> 1x1, plus the input or a ResNet-D
shortcut (average pool, 1x1 conv, BN), then ReLU."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.arch.layout import BottleneckSpec
from ofa_tf.layers import activations
from ofa_tf.layers.common import (checked_choice, choice_numpy, choice_variable, importance_order,
                                  nearest_choice, reads_choices_now)
from ofa_tf.layers.elastic_conv import ElasticConv2D
from ofa_tf.layers.elastic_norm import ElasticBatchNormalization


def shortcut_pool(x, stride: int):
    """The ResNet-D shortcut's average pool (kernel = stride, ceil mode): TF's "SAME" pads the
    bottom / right only and leaves the padding out of the average, as torch's ceil mode does."""
    return x if stride == 1 else tf.nn.avg_pool2d(x, stride, stride, "SAME")


@keras.saving.register_keras_serializable("ofa_tf")
class ElasticBottleneck(keras.layers.Layer):
    """One bottleneck slot of a width-elastic supernet, holding its active output width (an
    index into the spec's width list) and expand ratio in variables read inside ``call``, so one
    compiled function serves every choice. Its input width is the input's. Sub-layer names equal
    the static subnet's layer names."""

    ROLES = ("conv1", "conv2", "conv3", "downsample")

    def __init__(self, spec, bn_momentum=0.9, bn_epsilon=1e-5, **kwargs):
        spec = spec if isinstance(spec, BottleneckSpec) else BottleneckSpec(**{
            **spec, **{k: tuple(spec[k]) for k in ("in_widths", "out_widths", "expand_ratios")}})
        kwargs.setdefault("name", spec.name)
        super().__init__(**kwargs)
        self.spec = spec
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        p, mid, c_in, c_out = spec.name, spec.max_mid_channels, max(spec.in_widths), max(spec.out_widths)
        shapes = {"conv1": (c_in, mid, 1, 1), "conv2": (mid, mid, spec.kernel_size, spec.stride),
                  "conv3": (mid, c_out, 1, 1), "downsample": (c_in, c_out, 1, 1)}
        self.convs, self.norms = {}, {}
        for role in self.roles:
            i, o, k, s = shapes[role]
            self.convs[role] = ElasticConv2D(i, o, k, s, name=f"{p}_{role}")
            self.norms[role] = ElasticBatchNormalization(o, bn_momentum, bn_epsilon, name=f"{p}_{role}_bn")
            setattr(self, role, self.convs[role])
            setattr(self, f"{role}_bn", self.norms[role])

    @property
    def roles(self) -> tuple:
        return self.ROLES if self.spec.downsample else self.ROLES[:3]

    def build(self, input_shape=None):
        for role in self.roles:
            self.convs[role].build()
            self.norms[role].build()
        self.active_width = choice_variable(self, "active_width", len(self.spec.out_widths) - 1, "int32")
        self.active_expand_ratio = choice_variable(self, "active_expand_ratio", max(self.spec.expand_ratios),
                                                   "float32")

    # ------------------------------------------------------------ active choice
    def set_active(self, width=None, expand_ratio=None):
        """``width``: an index into the spec's output widths; ``expand_ratio``: one of its ratios."""
        if width is not None:
            self.active_width.assign(int(checked_choice(self.name, "width index", width,
                                                        tuple(range(len(self.spec.out_widths))))))
        if expand_ratio is not None:
            self.active_expand_ratio.assign(float(checked_choice(self.name, "expand ratio", expand_ratio,
                                                                 self.spec.expand_ratios)))

    def active_choice(self):
        """(width index, expand ratio) as Python numbers, the ratio as in the space."""
        return (int(choice_numpy(self.active_width)),
                nearest_choice(self.active_expand_ratio, self.spec.expand_ratios))

    def _active_widths(self):
        """(output channels, middle channels): ints eagerly (and under `static_choices`), tensors
        in a graph."""
        spec = self.spec
        if reads_choices_now():
            w, e = self.active_choice()
            return spec.out_widths[w], spec.mid_channels(spec.out_widths[w], e)
        ratios = tf.constant([float(e) for e in spec.expand_ratios], tf.float32)
        e_index = tf.argmin(tf.abs(ratios - tf.cast(self.active_expand_ratio, tf.float32)), output_type=tf.int32)
        mids = [[spec.mid_channels(out, e) for e in spec.expand_ratios] for out in spec.out_widths]
        w = tf.cast(self.active_width, tf.int32)
        return (tf.gather(tf.constant(spec.out_widths, tf.int32), w),
                tf.gather_nd(tf.constant(mids, tf.int32), tf.stack([w, e_index])))

    # ------------------------------------------------------------------ forward
    def call(self, inputs, training=None):
        act, (out, mid) = self.spec.act, self._active_widths()
        x = activations.apply(self.conv1_bn(self.conv1(inputs, out_channels=mid), training=training), act)
        x = activations.apply(self.conv2_bn(self.conv2(x, out_channels=mid), training=training), act)
        x = self.conv3_bn(self.conv3(x, out_channels=out), training=training)
        if self.spec.downsample:
            shortcut = shortcut_pool(inputs, self.spec.stride)
            shortcut = self.downsample_bn(self.downsample(shortcut, out_channels=out), training=training)
        else:
            shortcut = inputs
        return activations.apply(x + shortcut, act)

    # ------------------------------------------------------------- extraction
    def active_weights(self, in_channels, width=None, expand_ratio=None):
        """Weights of the static block for a choice (default: the active one) on an input of
        ``in_channels``, keyed by the static layer names."""
        active_w, active_e = self.active_choice()
        spec = self.spec
        out = spec.out_widths[active_w if width is None else width]
        mid = spec.mid_channels(out, active_e if expand_ratio is None else expand_ratio)
        sizes = {"conv1": (in_channels, mid), "conv2": (mid, mid), "conv3": (mid, out),
                 "downsample": (in_channels, out)}
        weights = {}
        for role in self.roles:
            weights[self.convs[role].name] = self.convs[role].active_weights(*sizes[role])
            weights[self.norms[role].name] = self.norms[role].active_weights(sizes[role][1])
        return weights

    def sort_channels(self, expand_ratio_stage=0):
        """Reorder the middle channels by importance, as the reference's
        ``re_organize_middle_weights``: conv2's outputs by the L1 norm of conv3's weights on them,
        then conv1's outputs by the L1 norm of (the reordered) conv2's weights on them, descending.
        With ``expand_ratio_stage`` = n > 0, channels inside the widths of the n+1 largest expand
        ratios keep their group. The block's outputs do not change."""
        widths = [self.spec.mid_channels(max(self.spec.out_widths), e)
                  for e in sorted(self.spec.expand_ratios, reverse=True)]
        orders = []
        for consumer, producer in (("conv3", "conv2"), ("conv2", "conv1")):
            importance = np.abs(self.convs[consumer].kernel.numpy()).sum(axis=(0, 1, 3))
            order = importance_order(importance, widths, expand_ratio_stage)
            self.convs[consumer].permute_channels(order, "in")
            self.norms[producer].permute_channels(order)
            self.convs[producer].permute_channels(order, "out")
            orders.append(order)
        return orders

    def get_config(self):
        spec = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.spec).items()}
        return {**super().get_config(), "spec": spec, "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon}
