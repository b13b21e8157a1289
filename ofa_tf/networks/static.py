"""Build a plain Keras model for one arch from the shared layout.

Only standard layers are used (ZeroPadding2D, Conv2D, DepthwiseConv2D,
BatchNormalization, Activation, GlobalAveragePooling2D, Multiply, Add,
Dropout, Dense; MaxPooling2D and AveragePooling2D for bottleneck networks), so the TFLite graph has no slicing or control flow, with a
fixed batch or without one. ``keras_module`` may be ``keras`` or ``tf_keras`` (quantization-aware
training needs the latter); both expose the same layer names. Activations are
passed to ``tf_keras`` as functions rather than names: tf_keras has no
``hard_swish``, and its ``hard_sigmoid`` is a different curve (0.2x + 0.5).
"""

from __future__ import annotations

from typing import Mapping

import keras

from ofa_tf.arch.layout import RESNET_PARTS, ActiveBlock, ActiveBottleneck, ConvSpec, Layout, ResNetLayout, ResNetPart
from ofa_tf.layers import activations


class _Builder:
    def __init__(self, keras_module, bn_momentum, bn_epsilon):
        self.layers = keras_module.layers
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        self.by_name = keras_module is keras

    def act(self, x, kind, name):
        function = activations.KERAS_NAMES[kind] if self.by_name else activations.function(kind)
        return self.layers.Activation(function, name=name)(x)

    def bn(self, x, name):
        return self.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)(x)

    def padding(self, x, kernel_size, stride, name):
        """Symmetric k // 2 padding as the reference pads; 'same' equals it at stride 1."""
        if stride == 1 or kernel_size == 1:
            return x, "same"
        pad = kernel_size // 2
        return self.layers.ZeroPadding2D(((pad, pad), (pad, pad)), name=f"{name}_pad")(x), "valid"

    def conv(self, x, spec: ConvSpec, activate: bool = True):
        """Conv (symmetric padding), its BN, and (with ``activate``) its activation."""
        x, padding = self.padding(x, spec.kernel_size, spec.stride, spec.name)
        x = self.layers.Conv2D(spec.out_channels, spec.kernel_size, strides=spec.stride, padding=padding,
                               use_bias=spec.use_bias, name=spec.name)(x)
        if spec.use_bn:
            x = self.bn(x, f"{spec.name}_bn")
        return self.act(x, spec.act, f"{spec.name}_act") if activate else x

    def bottleneck(self, inputs, block: ActiveBottleneck):
        """conv1, conv2 (stride), conv3 without activation, plus the input or the average-pooled
        1x1-conv shortcut, then the activation."""
        L, p = self.layers, block.spec.name
        convs = block.convs()
        x = inputs
        for spec, _ in convs[:2]:
            x = self.conv(x, spec)
        x = self.conv(x, convs[2][0], activate=False)
        shortcut = inputs
        if block.spec.downsample:
            stride = block.spec.stride
            if stride > 1:   # ceil mode: "same" leaves the bottom / right padding out of the average
                shortcut = L.AveragePooling2D(stride, stride, padding="same", name=f"{p}_pool")(shortcut)
            shortcut = self.conv(shortcut, convs[3][0], activate=False)
        x = L.Add(name=f"{p}_add")([x, shortcut])
        return self.act(x, block.spec.act, f"{p}_act")

    def max_pool(self, x, layout: ResNetLayout):
        """The stem's max pool, padded by k // 2 on every side: its input follows a ReLU, so zero
        padding equals the reference's -inf padding."""
        k, s, L = layout.pool_kernel_size, layout.pool_stride, self.layers
        x = L.ZeroPadding2D(k // 2, name="max_pool_pad")(x)
        return L.MaxPooling2D(k, s, padding="valid", name="max_pool")(x)

    def mbconv(self, inputs, block: ActiveBlock):
        spec, p, L = block.spec, block.spec.name, self.layers
        x = inputs
        if spec.has_expand:
            x = L.Conv2D(block.mid_channels, 1, use_bias=False, name=f"{p}_expand")(x)
            x = self.act(self.bn(x, f"{p}_expand_bn"), spec.act, f"{p}_expand_act")
        x, padding = self.padding(x, block.kernel_size, spec.stride, f"{p}_depthwise")
        x = L.DepthwiseConv2D(block.kernel_size, strides=spec.stride, padding=padding, use_bias=False,
                              name=f"{p}_depthwise")(x)
        x = self.act(self.bn(x, f"{p}_depthwise_bn"), spec.act, f"{p}_depthwise_act")
        if spec.use_se:
            gate = L.GlobalAveragePooling2D(keepdims=True, name=f"{p}_se_pool")(x)
            gate = L.Conv2D(block.se_channels, 1, name=f"{p}_se_reduce")(gate)
            gate = self.act(gate, "relu", f"{p}_se_reduce_act")
            gate = L.Conv2D(block.mid_channels, 1, name=f"{p}_se_expand")(gate)
            gate = self.act(gate, "h_sigmoid", f"{p}_se_expand_act")
            x = L.Multiply(name=f"{p}_se_mul")([x, gate])
        x = L.Conv2D(spec.out_channels, 1, use_bias=False, name=f"{p}_project")(x)
        x = self.bn(x, f"{p}_project_bn")
        if spec.residual:
            x = L.Add(name=f"{p}_add")([inputs, x])
        return x

    def global_pool(self, x):
        return self.layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)

    def classifier(self, x, layout: Layout):
        """[B, 1, 1, C] → logits. The 1x1 map is squeezed by a global pool (one MEAN op) rather
        than Flatten, whose reshape to (batch, C) needs SHAPE / STRIDED_SLICE / PACK ops in a
        graph with a free batch dimension."""
        L = self.layers
        x = L.GlobalAveragePooling2D(name="squeeze")(x)
        x = L.Dropout(layout.dropout_rate, name="dropout")(x)
        return L.Dense(layout.n_classes, name="logits")(x)


def _check_batch_size(batch_size):
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")


def build_static_model(layout: Layout, arch: Mapping, image_size: int, keras_module=keras,
                       bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, name: str = "ofa_subnet",
                       batch_size: int | None = None):
    """An untrained Keras model of ``arch`` (an arch dict or `Arch` of the layout's space).

    ``batch_size`` fixes the batch dimension (1 for phone export); the graph is the same
    without it.
    """
    arch = layout.space.arch(arch)
    _check_batch_size(batch_size)
    b = _Builder(keras_module, bn_momentum, bn_epsilon)
    inputs = keras_module.Input((image_size, image_size, 3), batch_size=batch_size, name="image")
    x = b.conv(inputs, layout.stem)
    for block in layout.active_blocks(arch, image_size):
        x = b.mbconv(x, block)
    for spec in layout.pre_pool_convs:
        x = b.conv(x, spec)
    x = b.global_pool(x)
    for spec in layout.post_pool_convs:
        x = b.conv(x, spec)
    x = b.classifier(x, layout)
    return keras_module.Model(inputs, x, name=name)


def build_resnet_static_model(layout: ResNetLayout, arch: Mapping, image_size: int, keras_module=keras,
                              bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, name: str = "ofa_subnet",
                              batch_size: int | None = None):
    """`build_static_model` for a bottleneck layout: the stem convs ``arch`` runs (the residual
    one adds its input), the max pool, the bottlenecks, the global pool and the classifier."""
    arch = layout.space.arch(arch)
    _check_batch_size(batch_size)
    b = _Builder(keras_module, bn_momentum, bn_epsilon)
    inputs = keras_module.Input((image_size, image_size, 3), batch_size=batch_size, name="image")
    x = inputs
    for spec, _, residual in layout.active_stem(arch, image_size):
        y = b.conv(x, spec)
        x = b.layers.Add(name=f"{spec.name}_add")([x, y]) if residual else y
    x = b.max_pool(x, layout)
    for block in layout.active_blocks(arch, image_size):
        x = b.bottleneck(x, block)
    x = b.classifier(b.global_pool(x), layout)
    return keras_module.Model(inputs, x, name=name)


def build_resnet_op_model(layout: ResNetLayout, op, input_size: int, batch_size: int = 1, keras_module=keras):
    """`build_op_model` for a bottleneck layout, with the layers `build_resnet_static_model` uses:
    ``op`` is one of ``layout.active_ops``, an :class:`ActiveBottleneck` (its own input size is
    used) or a :class:`ResNetPart` on an ``input_size`` map (a stem conv with its add when
    residual, the max pool, or the global pool and the classifier)."""
    b = _Builder(keras_module, 0.9, 1e-5)
    if isinstance(op, ActiveBottleneck):
        inputs = keras_module.Input((op.input_size, op.input_size, op.in_channels), batch_size=batch_size,
                                    name="input")
        return keras_module.Model(inputs, b.bottleneck(inputs, op), name=f"op_{op.spec.name}")
    if not isinstance(op, ResNetPart) or op.kind not in RESNET_PARTS:
        raise ValueError(f"op must be an ActiveBottleneck or a ResNetPart of a kind in {RESNET_PARTS}, got {op!r}")
    inputs = keras_module.Input((input_size, input_size, op.channels), batch_size=batch_size, name="input")
    if op.kind == "stem_conv":
        x = b.conv(inputs, op.conv)
        x = b.layers.Add(name=f"{op.conv.name}_add")([inputs, x]) if op.residual else x
        return keras_module.Model(inputs, x, name=f"op_{op.conv.name}")
    x = b.max_pool(inputs, layout) if op.kind == "max_pool" else b.classifier(b.global_pool(inputs), layout)
    return keras_module.Model(inputs, x, name=f"op_{op.kind}")


# The parts of the network a latency lookup table times one by one (besides the blocks).
HEAD_OPS = ("stem", "final_expand", "global_pool", "feature_mix", "classifier")


def build_op_model(layout: Layout, op, input_size: int, batch_size: int = 1, keras_module=keras):
    """A Keras model of one op of the network, with the layers ``build_static_model`` uses.

    ``op`` is an :class:`ActiveBlock` (its own ``input_size`` is used) or one of ``HEAD_OPS``;
    ``input_size`` is the op's spatial input size (see ``ofa_tf.nas.latency_table.head_ops``; a
    ``classifier`` on a larger map pools it first).
    Latency lookup tables time these models one by one.
    """
    b = _Builder(keras_module, 0.9, 1e-5)
    if isinstance(op, ActiveBlock):
        channels, input_size = op.spec.in_channels, op.input_size
    elif op in HEAD_OPS:
        channels = {"stem": layout.stem.in_channels,
                    "final_expand": layout.final_expand and layout.final_expand.in_channels,
                    "global_pool": layout.pre_pool_convs and layout.pre_pool_convs[-1].out_channels,
                    "feature_mix": layout.feature_mix.in_channels,
                    "classifier": layout.n_features}[op]
        if not channels:
            raise ValueError(f"the layout's head has no {op!r}")
    else:
        raise ValueError(f"op must be an ActiveBlock or one of {HEAD_OPS}, got {op!r}")
    inputs = keras_module.Input((input_size, input_size, channels), batch_size=batch_size, name="input")
    if isinstance(op, ActiveBlock):
        x = b.mbconv(inputs, op)
    elif op == "global_pool":
        x = b.global_pool(inputs)
    elif op == "classifier":
        x = b.classifier(inputs, layout)
    else:
        x = b.conv(inputs, getattr(layout, op))
    name = op.spec.name if isinstance(op, ActiveBlock) else op
    return keras_module.Model(inputs, x, name=f"op_{name}")
