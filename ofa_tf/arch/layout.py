"""The one description of a network's layout, per family.

The elastic supernet, the static subnet builder, the MACs counter and the
latency table all walk these specs, so the architecture is written down once.
`build_layout` picks the family's builder by ``space.family`` (`LAYOUT_BUILDERS`).
Layer names follow keras.applications' MobileNetV3 (``conv``, ``conv_bn``,
``expanded_conv_{i}_expand`` ... ``conv_1``, ``conv_2``, ``logits``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from ofa_tf.arch.space import SearchSpace

CHANNEL_DIVISOR = 8


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without losing more than 10 %."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def conv_output_size(size: int, kernel_size: int, stride: int) -> int:
    """Spatial size after a conv padded symmetrically by ``kernel_size // 2``."""
    return (size + 2 * (kernel_size // 2) - kernel_size) // stride + 1


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A fixed (non-elastic) convolution of the stem or head."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    act: str
    use_bn: bool = True
    use_bias: bool = False


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """An MBConv block slot and the choices it can take."""

    name: str
    index: int            # 0 is the fixed first block; 1.. are the elastic slots
    slot: int | None      # index into arch["ks"] / arch["e"]; None for the first block
    in_channels: int
    out_channels: int
    stride: int
    act: str
    use_se: bool
    kernel_sizes: tuple
    expand_ratios: tuple
    shortcut: bool = True  # adds its input when the shapes allow (ProxylessNAS's first block never does)

    @property
    def has_expand(self) -> bool:
        """The first block (expand ratio 1) has no 1x1 expansion conv."""
        return self.expand_ratios != (1,)

    @property
    def residual(self) -> bool:
        return self.shortcut and self.stride == 1 and self.in_channels == self.out_channels

    @property
    def max_kernel_size(self) -> int:
        return max(self.kernel_sizes)

    def mid_channels(self, expand_ratio) -> int:
        if not self.has_expand:
            return self.in_channels
        return make_divisible(round(self.in_channels * expand_ratio))

    @property
    def max_mid_channels(self) -> int:
        return max(self.mid_channels(e) for e in self.expand_ratios)

    @staticmethod
    def se_channels(mid_channels: int) -> int:
        return make_divisible(mid_channels // 4)

    @property
    def max_se_channels(self) -> int:
        return self.se_channels(self.max_mid_channels)


@dataclasses.dataclass(frozen=True)
class ActiveBlock:
    """A block slot with its choice made, at a known input size."""

    spec: BlockSpec
    kernel_size: int
    expand_ratio: float
    input_size: int

    @property
    def mid_channels(self) -> int:
        return self.spec.mid_channels(self.expand_ratio)

    @property
    def se_channels(self) -> int:
        return self.spec.se_channels(self.mid_channels)

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.kernel_size, self.spec.stride)


@dataclasses.dataclass(frozen=True)
class LatencyKeyFormat:
    """How a family's latency lookup tables spell a block's key (``ofa_tf.nas.latency_table``):
    ``expand`` is the block's middle width (``"channels"``, the reference's MBv3LatencyTable) or
    its expand ratio (``"ratio"``, ProxylessNASLatencyTable); ``flags`` appends the
    ``-se:<0|1>-hs:<0|1>`` fields of MBv3LatencyTable."""

    expand: str = "channels"
    flags: bool = True

    def __post_init__(self):
        if self.expand not in ("channels", "ratio"):
            raise ValueError(f"LatencyKeyFormat.expand must be 'channels' or 'ratio', got {self.expand!r}")


@dataclasses.dataclass(frozen=True)
class Layout:
    """The network of a space: stem, fixed first block, block slots per stage, and the head:
    ``final_expand`` (a 1x1 conv on the last feature map, or None), the global pool, then
    ``feature_mix`` (a 1x1 conv on the pooled map; with ``feature_mix_pooled`` False it runs
    before the pool instead, as ProxylessNAS's), then the classifier."""

    space: SearchSpace
    n_classes: int
    dropout_rate: float
    stem: ConvSpec
    first_block: BlockSpec
    stages: tuple          # tuple of tuples of BlockSpec, one per slot of the stage
    final_expand: ConvSpec | None
    feature_mix: ConvSpec
    feature_mix_pooled: bool = True
    latency_keys: LatencyKeyFormat = LatencyKeyFormat()

    @property
    def pre_pool_convs(self) -> tuple:
        """The head's convs on the last feature map, in order."""
        convs = () if self.final_expand is None else (self.final_expand,)
        return convs if self.feature_mix_pooled else convs + (self.feature_mix,)

    @property
    def post_pool_convs(self) -> tuple:
        """The head's convs on the pooled 1x1 map, in order."""
        return (self.feature_mix,) if self.feature_mix_pooled else ()

    @property
    def head_convs(self) -> tuple:
        return self.pre_pool_convs + self.post_pool_convs

    @property
    def n_features(self) -> int:
        """Width of the classifier's input (the last head conv's output)."""
        return self.head_convs[-1].out_channels

    @property
    def blocks(self) -> tuple:
        """All block slots in order, first block included."""
        return (self.first_block,) + tuple(b for stage in self.stages for b in stage)

    def active_blocks(self, arch: Mapping, image_size: int | None = None) -> list:
        """The blocks an arch runs, with their choices and input sizes (at ``image_size``;
        default: the arch's resolution, see `SearchSpace.arch`)."""
        if image_size is None:
            image_size = self.space.arch(arch).resolution
        size = conv_output_size(image_size, self.stem.kernel_size, self.stem.stride)
        first = self.first_block
        out = [ActiveBlock(first, first.kernel_sizes[0], 1, size)]
        size = out[-1].output_size
        for s, stage in enumerate(self.stages):
            for spec in stage[: arch["d"][s]]:
                block = ActiveBlock(spec, arch["ks"][spec.slot], arch["e"][spec.slot], size)
                out.append(block)
                size = block.output_size
        return out

    def head_input_size(self, arch: Mapping, image_size: int) -> int:
        return self.active_blocks(arch, image_size)[-1].output_size


def build_layout(space: SearchSpace, n_classes: int = 1000, dropout_rate: float = 0.1) -> Layout:
    """The layout of ``space`` (its family's builder) with an ``n_classes`` classifier."""
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}")
    if space.family not in LAYOUT_BUILDERS:
        raise ValueError(f"no layout for family {space.family!r}; known: {sorted(LAYOUT_BUILDERS)}")
    return LAYOUT_BUILDERS[space.family](space, n_classes, float(dropout_rate))


def _stage_blocks(space: SearchSpace, in_channels: int) -> tuple:
    """The block slots of every stage (``space.stage_slots``), numbered after the first block;
    returns them and the last stage's width."""
    stages, channels, index = [], in_channels, 1
    for s, stage in enumerate(space.stages):
        width, blocks = make_divisible(stage.width * space.width_mult), []
        for j, slot in enumerate(space.stage_slots(s)):
            blocks.append(BlockSpec(
                name=f"expanded_conv_{index}", index=index, slot=slot,
                in_channels=channels, out_channels=width, stride=stage.stride if j == 0 else 1,
                act=stage.act, use_se=stage.use_se, kernel_sizes=space.ks_list,
                expand_ratios=space.expand_ratio_list))
            channels, index = width, index + 1
        stages.append(tuple(blocks))
    return tuple(stages), channels


def mobilenet_v3_layout(space: SearchSpace, n_classes: int, dropout_rate: float) -> Layout:
    """OFA-MobileNetV3: h_swish stem, a fixed relu first block, the space's stages, a final
    expand conv and a feature-mix conv (no BN) around the global pool."""
    w = space.width_mult
    stem_width = make_divisible(space.stem_width * w)
    first_width = make_divisible(space.first_block_width * w)
    stem = ConvSpec("conv", 3, stem_width, 3, 2, "h_swish")
    first = BlockSpec("expanded_conv_0", 0, None, stem_width, first_width, 1, "relu", False, (3,), (1,))
    stages, channels = _stage_blocks(space, first_width)
    final_width = make_divisible(space.final_expand_width * w)
    mix_width = make_divisible(space.feature_mix_width * w)
    return Layout(
        space=space, n_classes=n_classes, dropout_rate=dropout_rate, stem=stem,
        first_block=first, stages=stages,
        final_expand=ConvSpec("conv_1", channels, final_width, 1, 1, "h_swish"),
        feature_mix=ConvSpec("conv_2", final_width, mix_width, 1, 1, "h_swish", use_bn=False))


def proxyless_layout(space: SearchSpace, n_classes: int, dropout_rate: float) -> Layout:
    """OFA-ProxylessNAS: a ReLU6 stem, a fixed ReLU6 first block (expand 1, 3x3), the space's
    stages, and a feature-mix conv with BN and ReLU6 before the global pool (no final expand)."""
    if space.final_expand_width:
        raise ValueError("a ProxylessNAS space has no final expand conv: final_expand_width must be 0, "
                         f"got {space.final_expand_width}")
    w = space.width_mult
    stem_width = make_divisible(space.stem_width * w)
    first_width = make_divisible(space.first_block_width * w)
    stem = ConvSpec("conv", 3, stem_width, 3, 2, "relu6")
    first = BlockSpec("expanded_conv_0", 0, None, stem_width, first_width, 1, "relu6", False, (3,), (1,),
                      shortcut=False)
    stages, channels = _stage_blocks(space, first_width)
    mix = ConvSpec("feature_mix", channels, make_divisible(space.feature_mix_width * w), 1, 1, "relu6")
    return Layout(space=space, n_classes=n_classes, dropout_rate=dropout_rate, stem=stem,
                  first_block=first, stages=stages, final_expand=None, feature_mix=mix,
                  feature_mix_pooled=False, latency_keys=LatencyKeyFormat(expand="ratio", flags=False))


# Family name (SearchSpace.family) -> layout builder(space, n_classes, dropout_rate).
LAYOUT_BUILDERS = {"mobilenet_v3": mobilenet_v3_layout, "proxyless": proxyless_layout}
