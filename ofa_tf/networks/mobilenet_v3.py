"""OFA-MobileNetV3: the elastic supernet with the reference's API."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from ofa_tf.arch.layout import ConvSpec
from ofa_tf.arch.space import SearchSpace
from ofa_tf.layers import activations
from ofa_tf.layers.common import choice_numpy, choice_variable, he_fan_out, reads_choices_now
from ofa_tf.layers.elastic_norm import ElasticBatchNormalization
from ofa_tf.layers.mbconv import ElasticMBConv
from ofa_tf.networks.registry import Family, register_family
from ofa_tf.networks.static import build_op_model, build_static_model
from ofa_tf.networks.supernet_api import SupernetAPI


@keras.saving.register_keras_serializable("ofa_tf")
class OFAMobileNetV3(SupernetAPI, keras.Model):
    """Elastic MobileNetV3 supernet (kernel 3/5/7, expand 3/4/6, depth 2/3/4 by default).

    The active subnet is held in variables (per block: kernel size and expand
    ratio; per stage: depth), so one traced train step serves every subnet
    and a small subnet costs less than a large one. Skipped blocks run under
    ``tf.cond`` and cost nothing.

    Pass ``space`` (a :class:`SearchSpace`) for spaces other than the
    reference's, e.g. ``SearchSpace.tiny()`` for tests. Everything is built from the space's
    layout, so a family of MBConv networks with another stem, stage table or head subclasses
    this class with its own ``default_space`` and defaults (see ``proxyless.py``).
    """

    default_space = staticmethod(SearchSpace.mobilenet_v3)
    default_width_mult = 1.0

    def __init__(self, n_classes=1000, width_mult=None, ks_list=None, expand_ratio_list=None,
                 depth_list=None, dropout_rate=0.1, bn_momentum=0.9, bn_epsilon=1e-5, space=None,
                 seed=None, name="ofa_mobilenet_v3", **kwargs):
        super().__init__(name=name, **kwargs)
        if space is None:
            space = self.default_space(self.default_width_mult if width_mult is None else width_mult,
                                       ks_list or (3, 5, 7), expand_ratio_list or (3, 4, 6),
                                       depth_list or (2, 3, 4))
        elif isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        elif not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace or its dict, got {type(space).__name__}")
        elif any(a is not None for a in (width_mult, ks_list, expand_ratio_list, depth_list)):
            raise ValueError("pass either space= or width_mult/ks_list/expand_ratio_list/depth_list, not both")
        self._hold_space(space, n_classes, dropout_rate, bn_momentum, bn_epsilon, seed)

        layout = self.layout
        self.stem_conv, self.stem_bn = self._conv_layers(layout.stem)
        self.first_block = ElasticMBConv(layout.first_block, bn_momentum, bn_epsilon)
        self.stage_blocks = [[ElasticMBConv(spec, bn_momentum, bn_epsilon) for spec in stage]
                             for stage in layout.stages]
        if layout.final_expand is not None:
            self.final_expand_conv, self.final_expand_bn = self._conv_layers(layout.final_expand)
        self.feature_mix_conv, feature_mix_bn = self._conv_layers(layout.feature_mix)
        if feature_mix_bn is not None:
            self.feature_mix_bn = feature_mix_bn
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout")
        fan_in = layout.n_features
        self.classifier = keras.layers.Dense(
            n_classes, name="logits",
            kernel_initializer=keras.initializers.RandomUniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
        self.build((None, None, None, 3))

    def _conv_layers(self, spec: ConvSpec):
        conv = keras.layers.Conv2D(spec.out_channels, spec.kernel_size, strides=spec.stride, padding="valid",
                                   use_bias=spec.use_bias, name=spec.name,
                                   kernel_initializer=he_fan_out(spec.kernel_size, spec.out_channels))
        bn = (ElasticBatchNormalization(spec.out_channels, self.bn_momentum, self.bn_epsilon,
                                        name=f"{spec.name}_bn") if spec.use_bn else None)
        return conv, bn

    def head_layers(self, spec: ConvSpec):
        """The (conv, BN or None) pair of one of the layout's head convs."""
        role = "final_expand" if spec is self.layout.final_expand else "feature_mix"
        return getattr(self, f"{role}_conv"), getattr(self, f"{role}_bn", None)

    @property
    def blocks(self):
        """Every block slot in order, the fixed first block included (as in OFA)."""
        return [self.first_block] + [b for stage in self.stage_blocks for b in stage]

    def build(self, input_shape=None):
        layout = self.layout
        self.stem_conv.build((None, None, None, 3))
        self.stem_bn.build()
        for block in self.blocks:
            block.build()
        for spec in layout.head_convs:
            conv, bn = self.head_layers(spec)
            conv.build((None, None, None, spec.in_channels))
            if bn is not None:
                bn.build()
        self.classifier.build((None, layout.n_features))
        self.active_depth = choice_variable(self, "active_depth", self.space.max_depth, "int32",
                                            shape=(self.space.n_stages,))

    # ----------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        pad = self.layout.stem.kernel_size // 2
        x = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        x = activations.apply(self.stem_bn(self.stem_conv(x), training=training), self.layout.stem.act)
        x = self.first_block(x, training=training)
        eager = reads_choices_now()
        depths = choice_numpy(self.active_depth) if eager else self.active_depth
        for s, stage in enumerate(self.stage_blocks):
            min_depth = min(self.space.stage_depths(s))
            for j, block in enumerate(stage):
                if j < min_depth:
                    x = block(x, training=training)
                elif eager:
                    if j < depths[s]:
                        x = block(x, training=training)
                else:
                    x = tf.cond(j < depths[s], lambda b=block, x=x: b(x, training=training),
                                lambda x=x: tf.identity(x))
        for spec in self.layout.pre_pool_convs:
            x = self._head_conv(spec, x, training)
        x = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        for spec in self.layout.post_pool_convs:
            x = self._head_conv(spec, x, training)
        x = tf.reshape(x, (-1, self.layout.n_features))
        return self.classifier(self.dropout(x, training=training))

    def _head_conv(self, spec: ConvSpec, x, training):
        conv, bn = self.head_layers(spec)
        x = conv(x)
        return activations.apply(x if bn is None else bn(x, training=training), spec.act)

    # ----------------------------------------------------- OFA's subnet API
    def set_active_subnet(self, ks=None, e=None, d=None, r=None, **kwargs):
        """Activate a subnet. Each argument is an int for all slots, a list
        (per block slot for ``ks``/``e``, per stage for ``d``) or None to keep it."""
        if kwargs:
            raise ValueError(f"set_active_subnet got unknown argument(s) {sorted(kwargs)}; "
                             "expected ks, e, d, r")
        wide = self.space.check_partial(self.space.expand(ks, e, d))
        if r is not None:
            self.active_resolution = self.space.validate({**self.space.smallest(), "r": r})["r"][0]
        for block in self.blocks[1:]:
            block.set_active(wide["ks"][block.spec.slot], wide["e"][block.spec.slot])
        if any(v is not None for v in wide["d"]):
            current = self.active_depth.numpy()
            self.active_depth.assign([c if v is None else v for c, v in zip(current, wide["d"])])

    def assign_active_subnet(self, ks, e, d):
        """Activate a subnet given as tensors (``ks``, ``e``: one value per block slot;
        ``d``: one per stage), e.g. sampled inside a compiled train step. Values are
        not checked here: sample them from the space's lists."""
        ks, e = tf.cast(ks, tf.int32), tf.cast(e, tf.float32)
        for block in self.blocks[1:]:
            block.active_kernel_size.assign(ks[block.spec.slot])
            block.active_expand_ratio.assign(e[block.spec.slot])
        self.active_depth.assign(tf.cast(d, tf.int32))

    def get_active_arch(self) -> dict:
        """The active subnet as an arch dict, read from the variables."""
        choices = [b.active_choice() for b in self.blocks[1:]]
        # A fixed-depth stage runs its blocks whatever a sampled tensor assigned to its depth.
        depths = self.space.fixed_depths([int(d) for d in self.active_depth.numpy()])
        return {"ks": [k for k, _ in choices], "e": [e for _, e in choices],
                "d": depths, "r": [self.active_resolution]}

    def active_weights(self, arch) -> dict:
        """Weights of the static subnet for ``arch``, keyed by static layer name."""
        layout = self.layout
        arch = self.space.arch(arch)
        out = {"conv": self.stem_conv.get_weights(),
               "conv_bn": self.stem_bn.active_weights(layout.stem.out_channels)}
        out.update(self.first_block.active_weights())
        for s, stage in enumerate(self.stage_blocks):
            for block in stage[: arch["d"][s]]:
                slot = block.spec.slot
                out.update(block.active_weights(arch["ks"][slot], arch["e"][slot]))
        for spec in layout.head_convs:
            conv, bn = self.head_layers(spec)
            out[spec.name] = conv.get_weights()
            if bn is not None:
                out[f"{spec.name}_bn"] = bn.active_weights(spec.out_channels)
        out["logits"] = self.classifier.get_weights()
        return out

    @property
    def elastic_blocks(self):
        """The blocks whose middle channels `sort_channels` reorders."""
        return self.blocks[1:]


register_family(Family("mobilenet_v3", OFAMobileNetV3, build_static_model, build_op_model))
