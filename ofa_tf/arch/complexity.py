"""MACs and parameter counts, as the reference counts them.

MACs: multiply-accumulates of convolutions and dense layers only (BN,
activations, pooling, adds and biases excluded; SE convs on the pooled 1x1
map included). Params: trainable weights of the static subnet (conv kernels,
BN gamma/beta, SE biases, classifier weights and bias). ``profile_arch``
needs no model; ``profile_model`` counts a built Keras model layer by layer,
and the two agree on an extracted subnet.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from ofa_tf.arch.layout import ConvSpec, Layout, ResNetLayout, build_layout, conv_output_size
from ofa_tf.arch.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class Profile:
    macs: int
    params: int

    @property
    def mmacs(self) -> float:
        return self.macs / 1e6

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def _conv(spec: ConvSpec, size: int) -> tuple:
    out = conv_output_size(size, spec.kernel_size, spec.stride)
    k2 = spec.kernel_size ** 2
    macs = out * out * k2 * spec.in_channels * spec.out_channels
    params = k2 * spec.in_channels * spec.out_channels + (2 * spec.out_channels if spec.use_bn else 0) + \
        (spec.out_channels if spec.use_bias else 0)
    return macs, params, out


def layer_counts(layout, arch: Mapping, image_size: int | None = None) -> list:
    """``(name, macs, params)`` of every conv / dense layer ``arch`` runs at ``image_size``
    (default: the arch's), in network order (a layer's BN and bias counted with it)."""
    return _COUNTERS[type(layout)](layout, arch, image_size)


def _mbconv_counts(layout: Layout, arch: Mapping, image_size: int | None) -> list:
    arch = layout.space.arch(arch)
    image_size = arch.resolution if image_size is None else image_size
    macs, params, size = _conv(layout.stem, image_size)
    out = [(layout.stem.name, macs, params)]
    for block in layout.active_blocks(arch, image_size):
        spec, mid, k, p = block.spec, block.mid_channels, block.kernel_size, block.spec.name
        if spec.has_expand:
            out.append((f"{p}_expand", block.input_size ** 2 * spec.in_channels * mid,
                        spec.in_channels * mid + 2 * mid))
        size = block.output_size
        out.append((f"{p}_depthwise", size * size * k * k * mid, k * k * mid + 2 * mid))
        if spec.use_se:
            se = block.se_channels
            out.append((f"{p}_se_reduce", mid * se, mid * se + se))
            out.append((f"{p}_se_expand", mid * se, mid * se + mid))
        out.append((f"{p}_project", size * size * mid * spec.out_channels,
                    mid * spec.out_channels + 2 * spec.out_channels))
    for spec in layout.pre_pool_convs:
        macs, params, size = _conv(spec, size)
        out.append((spec.name, macs, params))
    for spec in layout.post_pool_convs:   # on the globally pooled 1x1 map
        macs, params, _ = _conv(spec, 1)
        out.append((spec.name, macs, params))
    out.append(_classifier(layout, layout.n_features))
    return out


def _classifier(layout, features: int) -> tuple:
    return ("logits", features * layout.n_classes, features * layout.n_classes + layout.n_classes)


def conv_macs(convs) -> int:
    """MACs of ``(ConvSpec, input size)`` pairs, e.g. `ActiveBottleneck.convs`."""
    return int(sum(_conv(spec, size)[0] for spec, size in convs))


def classifier_macs(layout, features: int) -> int:
    return _classifier(layout, features)[1]


def _bottleneck_counts(layout: ResNetLayout, arch: Mapping, image_size: int | None) -> list:
    """The stem convs, then each bottleneck's convs (pools and adds cost no MACs)."""
    convs = [(conv, size) for conv, size, _ in layout.active_stem(arch, image_size)]
    for block in layout.active_blocks(arch, image_size):
        convs.extend(block.convs())
    out = [(spec.name,) + _conv(spec, size)[:2] for spec, size in convs]
    out.append(_classifier(layout, layout.n_features(arch)))
    return out


# The counter of each layout kind (`ofa_tf.arch.layout.build_layout` returns one of these).
_COUNTERS = {Layout: _mbconv_counts, ResNetLayout: _bottleneck_counts}


def profile_layout(layout, arch: Mapping, image_size: int | None = None) -> Profile:
    """MACs and params of ``arch`` on ``layout`` at ``image_size`` (default: the arch's)."""
    counts = layer_counts(layout, arch, image_size)
    return Profile(int(sum(c[1] for c in counts)), int(sum(c[2] for c in counts)))


def profile_arch(arch: Mapping, space: SearchSpace, n_classes: int = 1000,
                 image_size: int | None = None) -> Profile:
    """MACs and params of ``arch`` at ``image_size`` (default: the arch's resolution)."""
    return profile_layout(build_layout(space, n_classes), arch, image_size)


def profile_model(model) -> Profile:
    """Count a built Keras model (standard layers only) the same way."""
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            per_output = kh * kw * (1 if kind == "DepthwiseConv2D" else c_in // layer.groups)
            macs += h * w * c_out * per_output
        elif kind == "Dense":
            macs += int(np.prod(layer.kernel.shape))
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return Profile(int(macs), int(params))
