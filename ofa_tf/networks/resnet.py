"""OFA-ResNet50D: the reference's ``OFAResNets`` as an elastic Keras supernet.

Built from the bottleneck layout (`ofa_tf.arch.layout.resnet_layout`): a ResNet-D stem whose
residual conv the arch's ``d[0]`` can skip, a max pool, bottleneck stages whose depth counts
blocks over a base depth, the global pool and the classifier. Besides depth and expand ratio
(of a block's *output* width) the width multiplier is elastic: arch ``w`` picks the output width
of the stem's convs and of each stage, and everything downstream follows it. Arch dicts have the
reference's form ``{"d": [5], "e": [18], "w": [6], "r": [..]}``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ofa_tf.arch.space import STEM_WIDTH_ENTRIES, SearchSpace
from ofa_tf.layers import activations
from ofa_tf.layers.bottleneck import ElasticBottleneck
from ofa_tf.layers.common import choice_numpy, choice_variable, reads_choices_now
from ofa_tf.layers.elastic_conv import ElasticConv2D, ElasticDense
from ofa_tf.layers.elastic_norm import ElasticBatchNormalization
from ofa_tf.networks.registry import Family, register_family
from ofa_tf.networks.static import build_resnet_op_model, build_resnet_static_model
from ofa_tf.networks.supernet_api import SupernetAPI


@keras.saving.register_keras_serializable("ofa_tf")
class OFAResNets(SupernetAPI, keras.Model):
    """Elastic ResNet50D supernet (depth 0/1/2 over 2/2/4/2, expand 0.2/0.25/0.35, width
    0.65/0.8/1.0 by default), with the reference's BN (PyTorch momentum 0.1, eps 1e-5) and no
    dropout by default.

    The active subnet lives in variables (per block: width index and expand ratio; the stem's
    two width indices; per depth entry: the depth), so one traced function serves every subnet;
    skipped blocks run under ``tf.cond``. Pass ``space`` for another width-elastic bottleneck
    space, e.g. ``SearchSpace.resnet_tiny()`` for tests.
    """

    def __init__(self, n_classes=1000, depth_list=None, expand_ratio_list=None, width_mult_list=None,
                 dropout_rate=0.0, bn_momentum=0.9, bn_epsilon=1e-5, space=None, seed=None,
                 name="ofa_resnets", **kwargs):
        super().__init__(name=name, **kwargs)
        lists = {k: v for k, v in (("depth_list", depth_list), ("expand_ratio_list", expand_ratio_list),
                                   ("width_mult_list", width_mult_list)) if v is not None}
        if space is None:
            space = SearchSpace.resnet50d(**lists)
        elif isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        elif not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace or its dict, got {type(space).__name__}")
        elif lists:
            raise ValueError("pass either space= or depth_list/expand_ratio_list/width_mult_list, not both")
        if space.family != "resnet":
            raise ValueError(f"OFAResNets needs a ResNet space, got family {space.family!r}")
        self._hold_space(space, n_classes, dropout_rate, bn_momentum, bn_epsilon, seed)

        layout, channels = self.layout, 3
        self.stem_convs, self.stem_norms = [], []
        for spec in layout.stem:
            self.stem_convs.append(ElasticConv2D(channels, max(spec.out_widths), spec.kernel_size, spec.stride,
                                                 name=spec.name))
            self.stem_norms.append(ElasticBatchNormalization(max(spec.out_widths), bn_momentum, bn_epsilon,
                                                             name=f"{spec.name}_bn"))
            channels = max(spec.out_widths)
        self.stage_blocks = [[ElasticBottleneck(spec, bn_momentum, bn_epsilon) for spec in stage]
                             for stage in layout.stages]
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout")
        self.classifier = ElasticDense(layout.max_features, n_classes, name="logits")
        self.build((None, None, None, 3))

    @property
    def blocks(self):
        return [b for stage in self.stage_blocks for b in stage]

    def build(self, input_shape=None):
        for conv, norm in zip(self.stem_convs, self.stem_norms):
            conv.build()
            norm.build()
        for block in self.blocks:
            block.build()
        self.classifier.build()
        self.active_stem_width = choice_variable(self, "active_stem_width", len(self.space.width_mult_list) - 1,
                                                 "int32", shape=(2,))
        self.active_depth = choice_variable(self, "active_depth", self.space.max_depth, "int32",
                                            shape=(self.space.n_depths,))

    # ----------------------------------------------------------------- forward
    def _stem_width(self, spec):
        if reads_choices_now():
            return spec.out_widths[int(choice_numpy(self.active_stem_width)[spec.width_entry])]
        index = self.active_stem_width[spec.width_entry]
        return tf.gather(tf.constant(spec.out_widths, tf.int32), index)

    def call(self, inputs, training=None):
        eager = reads_choices_now()
        depths = choice_numpy(self.active_depth) if eager else self.active_depth
        x = inputs
        for spec, conv, norm in zip(self.layout.stem, self.stem_convs, self.stem_norms):
            apply = lambda x, spec=spec, conv=conv, norm=norm: activations.apply(  # noqa: E731
                norm(conv(x, out_channels=self._stem_width(spec)), training=training), spec.act)
            if not spec.skippable:
                x = apply(x)
            elif eager:
                x = x if self.space.stem_skipped(depths) else x + apply(x)
            else:
                x = tf.cond(tf.equal(depths[0], self.space.max_depth), lambda x=x: x + apply(x),
                            lambda x=x: tf.identity(x))
        pad = self.layout.pool_kernel_size // 2   # after a ReLU: zero padding equals -inf padding
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        x = tf.nn.max_pool2d(x, self.layout.pool_kernel_size, self.layout.pool_stride, "VALID")
        for s, stage in enumerate(self.stage_blocks):
            min_length = self.space.stage_length(s, min(self.space.stage_depths(s)))
            depth = self.space.stage_depth(depths, s)
            for j, block in enumerate(stage):
                if j < min_length:
                    x = block(x, training=training)
                elif eager:
                    if j < self.space.stage_length(s, depth):
                        x = block(x, training=training)
                else:
                    x = tf.cond(j < self.space.stages[s].base_depth + depth,
                                lambda b=block, x=x: b(x, training=training), lambda x=x: tf.identity(x))
        x = tf.reduce_mean(x, axis=(1, 2))
        return self.classifier(self.dropout(x, training=training))

    # ----------------------------------------------------- OFA's subnet API
    def set_active_subnet(self, d=None, e=None, w=None, r=None, **kwargs):
        """Activate a subnet. Each argument is an int for all entries, a list (``d``: the stem's
        then per stage; ``e``: per block slot; ``w``: width indices, the stem's two then per
        stage) or None to keep it."""
        if kwargs:
            raise ValueError(f"set_active_subnet got unknown argument(s) {sorted(kwargs)}; expected d, e, w, r")
        wide = self.space.check_partial(self.space.expand(e=e, d=d, w=w))
        if r is not None:
            self.active_resolution = self.space.validate({**self.space.smallest(), "r": r})["r"][0]
        for block in self.blocks:
            block.set_active(wide["w"][block.spec.out_entry], wide["e"][block.spec.slot])
        stem = self.active_stem_width.numpy()
        self.active_stem_width.assign([c if v is None else v for c, v in zip(stem, wide["w"][:2])])
        current = self.active_depth.numpy()
        self.active_depth.assign([c if v is None else v for c, v in zip(current, wide["d"])])

    def assign_active_subnet(self, d, e, w):
        """Activate a subnet given as tensors (``d``: the stem's then per stage; ``e``: per block
        slot; ``w``: width indices, the stem's two then per stage), e.g. sampled inside a
        compiled train step. Values are not checked here: sample them from the space's lists."""
        e, w = tf.cast(e, tf.float32), tf.cast(w, tf.int32)
        for block in self.blocks:
            block.active_width.assign(w[block.spec.out_entry])
            block.active_expand_ratio.assign(e[block.spec.slot])
        self.active_stem_width.assign(w[:STEM_WIDTH_ENTRIES])
        self.active_depth.assign(tf.cast(d, tf.int32))

    def get_active_arch(self) -> dict:
        """The active subnet as an arch dict, read from the variables."""
        choices = [b.active_choice() for b in self.blocks]
        stage_widths = [stage[0].active_choice()[0] for stage in self.stage_blocks]
        return {"d": [int(d) for d in self.active_depth.numpy()], "e": [e for _, e in choices],
                "w": [int(v) for v in self.active_stem_width.numpy()] + stage_widths,
                "r": [self.active_resolution]}

    def active_weights(self, arch) -> dict:
        """Weights of the static subnet for ``arch``, keyed by static layer name."""
        arch = self.space.arch(arch)
        out = {}
        by_name = {spec.name: (conv, norm) for spec, conv, norm in zip(self.layout.stem, self.stem_convs,
                                                                        self.stem_norms)}
        for spec, _, _ in self.layout.active_stem(arch):
            conv, norm = by_name[spec.name]
            out[spec.name] = conv.active_weights(spec.in_channels, spec.out_channels)
            out[f"{spec.name}_bn"] = norm.active_weights(spec.out_channels)
        blocks = {b.spec.name: b for b in self.blocks}
        for active in self.layout.active_blocks(arch):
            out.update(blocks[active.spec.name].active_weights(active.in_channels, arch.w[active.spec.out_entry],
                                                               active.expand_ratio))
        out["logits"] = self.classifier.active_weights(self.layout.n_features(arch))
        return out

    @property
    def elastic_blocks(self):
        """The blocks whose middle channels `sort_channels` reorders."""
        return self.blocks


register_family(Family("resnet", OFAResNets, build_resnet_static_model, build_resnet_op_model))
