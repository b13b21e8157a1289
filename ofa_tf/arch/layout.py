"""The one description of a network's layout, per family.

The elastic supernet, the static subnet builder, the MACs counter and the
latency table all walk these specs, so the architecture is written down once.
`build_layout` picks the family's builder by ``space.family`` (`LAYOUT_BUILDERS`).
MBConv layouts (`Layout`) name layers as keras.applications' MobileNetV3 (``conv``, ``conv_bn``,
``expanded_conv_{i}_expand`` ... ``conv_1``, ``conv_2``, ``logits``); the bottleneck layout
(`ResNetLayout`, OFA-ResNet50D) as ``stem_{i}``, ``bottleneck_{i}_conv{1,2,3}``,
``bottleneck_{i}_downsample`` and ``logits``.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping

from ofa_tf.arch.space import STEM_WIDTH_ENTRIES, SearchSpace

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


def build_layout(space: SearchSpace, n_classes: int = 1000, dropout_rate: float = 0.1):
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




# ------------------------------------------------------------------ bottleneck (ResNet) layout
def pooled_size(size: int, stride: int) -> int:
    """Spatial size after the ResNet-D shortcut's average pool (kernel = stride, ceil mode)."""
    return -(-size // stride)


@dataclasses.dataclass(frozen=True)
class WidthConvSpec:
    """A stem conv of a width-elastic network: its output width is ``out_widths[arch["w"][entry]]``.
    A ``skippable`` conv is a residual conv (input added) that the arch's ``d[0]`` can skip."""

    name: str
    out_widths: tuple
    kernel_size: int
    stride: int
    width_entry: int
    act: str = "relu"
    skippable: bool = False


@dataclasses.dataclass(frozen=True)
class BottleneckSpec:
    """A bottleneck block slot: 1x1 -> k x k (stride) -> 1x1, with a shortcut that is the input
    itself, or (when the stride or the width choices differ) an average pool (kernel = stride)
    and a 1x1 conv with BN (ResNet-D). Its input and output widths are chosen per width index."""

    name: str
    index: int
    slot: int               # index into arch["e"]
    stage: int
    in_widths: tuple        # input width for each width index (of the previous conv group)
    out_widths: tuple       # output width for each width index
    in_entry: int           # the entry of arch["w"] that picks the input width
    out_entry: int          # the entry of arch["w"] that picks the output width
    stride: int
    act: str
    expand_ratios: tuple
    kernel_size: int = 3

    @property
    def downsample(self) -> bool:
        """A conv shortcut (the reference's rule: stride 1 and equal width lists keep the input)."""
        return self.stride != 1 or self.in_widths != self.out_widths

    @staticmethod
    def mid_channels(out_channels: int, expand_ratio) -> int:
        """The middle width: a fraction of the block's *output* width."""
        return make_divisible(round(out_channels * expand_ratio))

    @property
    def max_mid_channels(self) -> int:
        return self.mid_channels(max(self.out_widths), max(self.expand_ratios))


@dataclasses.dataclass(frozen=True)
class ActiveBottleneck:
    """A bottleneck slot with its widths and expand ratio chosen, at a known input size."""

    spec: BottleneckSpec
    in_channels: int
    out_channels: int
    expand_ratio: float
    input_size: int

    @property
    def mid_channels(self) -> int:
        return self.spec.mid_channels(self.out_channels, self.expand_ratio)

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.spec.kernel_size, self.spec.stride)

    def convs(self) -> tuple:
        """``(ConvSpec, input size)`` of its convs in order: conv1, conv2, conv3, then the
        shortcut's (on the pooled input) if it has one. conv3 and the shortcut have no activation
        of their own (``act`` names the one applied after the add)."""
        p, s, mid = self.spec.name, self.spec, self.mid_channels
        out = [(ConvSpec(f"{p}_conv1", self.in_channels, mid, 1, 1, s.act), self.input_size),
               (ConvSpec(f"{p}_conv2", mid, mid, s.kernel_size, s.stride, s.act), self.input_size),
               (ConvSpec(f"{p}_conv3", mid, self.out_channels, 1, 1, s.act), self.output_size)]
        if s.downsample:
            out.append((ConvSpec(f"{p}_downsample", self.in_channels, self.out_channels, 1, 1, s.act),
                        pooled_size(self.input_size, s.stride)))
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class ResNetPart:
    """An op of a bottleneck network other than a block, as a latency table times it alone:
    a stem conv (``conv``; ``residual``: its input is added), the stem's max pool, or the
    classifier (the global pool and the dense layer), on ``channels`` input channels."""

    kind: str               # one of RESNET_PARTS
    channels: int
    conv: ConvSpec | None = None
    residual: bool = False


RESNET_PARTS = ("stem_conv", "max_pool", "classifier")


@dataclasses.dataclass(frozen=True)
class ResNetLayout:
    """A width-elastic bottleneck network (OFA-ResNet50D): a stem of convs (ResNet-D: 3x3 s2, a
    skippable residual 3x3, 3x3), a 3x3 s2 max pool, bottleneck stages, the global pool and the
    classifier."""

    space: SearchSpace
    n_classes: int
    dropout_rate: float
    stem: tuple            # WidthConvSpec, in order
    stages: tuple          # tuple of tuples of BottleneckSpec
    pool_kernel_size: int = 3
    pool_stride: int = 2

    @property
    def blocks(self) -> tuple:
        return tuple(b for stage in self.stages for b in stage)

    @property
    def max_features(self) -> int:
        return max(self.stages[-1][-1].out_widths)

    def active_stem(self, arch: Mapping, image_size: int | None = None) -> list:
        """``(ConvSpec, input size, residual)`` of the stem convs ``arch`` runs."""
        arch = self.space.arch(arch)
        size = arch.resolution if image_size is None else image_size
        out, channels = [], 3
        for spec in self.stem:
            width = spec.out_widths[arch.w[spec.width_entry]]
            if spec.skippable and self.space.stem_skipped(arch.d):
                continue
            conv = ConvSpec(spec.name, channels, width, spec.kernel_size, spec.stride, spec.act)
            out.append((conv, size, spec.skippable))
            size, channels = conv_output_size(size, spec.kernel_size, spec.stride), width
        return out

    def pool_input_size(self, arch: Mapping, image_size: int | None = None) -> int:
        conv, size, _ = self.active_stem(arch, image_size)[-1]
        return conv_output_size(size, conv.kernel_size, conv.stride)

    def active_blocks(self, arch: Mapping, image_size: int | None = None) -> list:
        """The bottlenecks ``arch`` runs, with their widths, expand ratios and input sizes."""
        arch = self.space.arch(arch)
        size = conv_output_size(self.pool_input_size(arch, image_size), self.pool_kernel_size, self.pool_stride)
        out = []
        for s, stage in enumerate(self.stages):
            for spec in stage[: self.space.stage_length(s, self.space.stage_depth(arch.d, s))]:
                block = ActiveBottleneck(spec, spec.in_widths[arch.w[spec.in_entry]],
                                         spec.out_widths[arch.w[spec.out_entry]], arch.e[spec.slot], size)
                out.append(block)
                size = block.output_size
        return out

    def active_ops(self, arch: Mapping, image_size: int | None = None) -> list:
        """``(op, input size)`` of every op ``arch`` runs, in order, as latency tables time them:
        `ResNetPart` stem convs and max pool, the `ActiveBottleneck` blocks, the classifier."""
        blocks = self.active_blocks(arch, image_size)
        return self.stem_ops(arch, image_size) + [(block, block.input_size) for block in blocks] + \
            [(ResNetPart("classifier", blocks[-1].out_channels), blocks[-1].output_size)]

    def stem_ops(self, arch: Mapping, image_size: int | None = None) -> list:
        """The first ops of `active_ops`: the stem convs ``arch`` runs and the max pool."""
        stem = self.active_stem(arch, image_size)
        ops = [(ResNetPart("stem_conv", conv.in_channels, conv, residual), size) for conv, size, residual in stem]
        return ops + [(ResNetPart("max_pool", stem[-1][0].out_channels), self.pool_input_size(arch, image_size))]

    def cost_cells(self, image_size: int):
        """Every op the space can run at ``image_size``, each with the cell of the per-width cost
        tables it adds to (what the MACs and latency predictors sum, and a latency table measures),
        as ``(table, index, op, input size)``:

        - ``"stem"``, ``(w[0], w[1], runs)``: the stem convs and the max pool (``runs``: the
          residual conv runs, the index into ``space.stem_depths``);
        - ``"per_slot"``, ``(slot, input width index, output width index, expand index)``: a block
          (both indices equal where the input width follows the same entry of ``w``);
        - ``"classifier"``, ``(last width index,)``: the classifier.

        A block's input size depends on the resolution only, so the largest arch gives it."""
        space = self.space
        n_w = len(space.width_mult_list)
        largest = space.largest(image_size)
        for w0 in range(n_w):
            for w1 in range(n_w):
                for runs, d0 in enumerate(space.stem_depths):
                    arch = {**largest, "d": [d0] + largest["d"][1:],
                            "w": [w0, w1] + largest["w"][STEM_WIDTH_ENTRIES:]}
                    for op, size in self.stem_ops(arch, image_size):
                        yield "stem", (w0, w1, runs), op, size
        blocks = self.active_blocks(largest, image_size)
        for block in blocks:
            spec = block.spec
            # a block after a stage's first takes its input width from the same entry of w
            pairs = ([(wo, wo) for wo in range(n_w)] if spec.in_entry == spec.out_entry
                     else itertools.product(range(n_w), range(n_w)))
            for wi, wo in pairs:
                for ei, e in enumerate(space.expand_ratio_list):
                    op = ActiveBottleneck(spec, spec.in_widths[wi], spec.out_widths[wo], e, block.input_size)
                    yield "per_slot", (spec.slot, wi, wo, ei), op, block.input_size
        for wl, width in enumerate(blocks[-1].spec.out_widths):
            yield "classifier", (wl,), ResNetPart("classifier", width), blocks[-1].output_size

    def n_features(self, arch: Mapping) -> int:
        """Width of the classifier's input for ``arch`` (the last stage's active width)."""
        arch = self.space.arch(arch)
        return self.stages[-1][-1].out_widths[arch.w[self.stages[-1][-1].out_entry]]


def resnet_layout(space: SearchSpace, n_classes: int, dropout_rate: float) -> ResNetLayout:
    """OFA-ResNet50D as the reference's ``OFAResNets``: for each width multiplier m the stem is
    3x3 s2 to make_divisible(make_divisible(stem_width m) // 2), the skippable residual 3x3 at that
    width (both picked by ``w[0]``), 3x3 to make_divisible(stem_width m) (``w[1]``); stage ``s``
    has width make_divisible(width m) (``w[2 + s]``), its first block the stage's stride, and
    base_depth + max(depth_list) bottleneck slots."""
    if not space.width_mult_list or not space.skippable_stem:
        raise ValueError("a ResNet space needs width_mult_list and skippable_stem")
    mults = space.width_mult_list
    stem_out = tuple(make_divisible(space.stem_width * m) for m in mults)
    stem_mid = tuple(make_divisible(c // 2) for c in stem_out)
    stem = (WidthConvSpec("stem_0", stem_mid, 3, 2, 0), WidthConvSpec("stem_1", stem_mid, 3, 1, 0, skippable=True),
            WidthConvSpec("stem_2", stem_out, 3, 1, 1))
    stages, widths, entry, index = [], stem_out, 1, 0
    for s, stage in enumerate(space.stages):
        out_widths, blocks = tuple(make_divisible(stage.width * m) for m in mults), []
        for j, slot in enumerate(space.stage_slots(s)):
            blocks.append(BottleneckSpec(
                name=f"bottleneck_{index}", index=index, slot=slot, stage=s, in_widths=widths,
                out_widths=out_widths, in_entry=entry, out_entry=STEM_WIDTH_ENTRIES + s,
                stride=stage.stride if j == 0 else 1, act=stage.act,
                expand_ratios=space.expand_ratio_list, kernel_size=space.ks_list[0]))
            widths, entry, index = out_widths, STEM_WIDTH_ENTRIES + s, index + 1
        stages.append(tuple(blocks))
    return ResNetLayout(space=space, n_classes=n_classes, dropout_rate=dropout_rate, stem=stem,
                        stages=tuple(stages))


# Family name (SearchSpace.family) -> layout builder(space, n_classes, dropout_rate).
LAYOUT_BUILDERS = {"mobilenet_v3": mobilenet_v3_layout, "proxyless": proxyless_layout,
                   "resnet": resnet_layout}
