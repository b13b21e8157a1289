"""The stage tables of the search spaces' presets, and what a stage is."""

from __future__ import annotations

import dataclasses

ACTIVATIONS = ("relu", "relu6", "h_swish")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage: its base output width (before the width multiplier), the stride of its
    first block, its activation, whether blocks use SE, and its depth: ``None`` for an elastic
    stage (the space's ``depth_list``), a number for a stage that always runs that many blocks
    (whose kernel sizes and expand ratios stay elastic, as ProxylessNAS's last stage).
    ``base_depth`` blocks always run before the elastic ones: the arch's depth counts the extra
    blocks over it (OFA-ResNet50D's ``d`` in {0, 1, 2} over its base 2/2/4/2)."""

    width: int
    stride: int
    act: str
    use_se: bool
    depth: int | None = None
    base_depth: int = 0

    def __post_init__(self):
        if isinstance(self.base_depth, bool) or not isinstance(self.base_depth, int) or self.base_depth < 0:
            raise ValueError(f"StageSpec.base_depth must be an int >= 0, got {self.base_depth!r}")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int)
                                       or self.depth < 1):
            raise ValueError(f"StageSpec.depth must be None or a positive int, got {self.depth!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"StageSpec.act must be one of {ACTIVATIONS}, got {self.act!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"StageSpec.stride must be 1 or 2, got {self.stride!r}")
        if self.width <= 0:
            raise ValueError(f"StageSpec.width must be positive, got {self.width!r}")


MOBILENET_V3_STAGES = (
    StageSpec(24, 2, "relu", False),
    StageSpec(40, 2, "relu", True),
    StageSpec(80, 2, "h_swish", False),
    StageSpec(112, 1, "h_swish", True),
    StageSpec(160, 2, "h_swish", True),
)

# A narrow, shallow space with the same kinds of blocks (SE / no SE, relu /
# h_swish, a stride-1 stage) for tests and CPU demos at 32-64 px.
TINY_STAGES = (
    StageSpec(16, 2, "relu", False),
    StageSpec(24, 2, "relu", True),
    StageSpec(32, 1, "h_swish", False),
    StageSpec(40, 2, "h_swish", True),
)

# OFA-ProxylessNAS (the reference's OFAProxylessNASNets): ReLU6 everywhere, no SE, and a last
# stage of one block whose kernel size and expand ratio are elastic but whose depth is not.
PROXYLESS_STAGES = (
    StageSpec(24, 2, "relu6", False),
    StageSpec(40, 2, "relu6", False),
    StageSpec(80, 2, "relu6", False),
    StageSpec(96, 1, "relu6", False),
    StageSpec(192, 2, "relu6", False),
    StageSpec(320, 1, "relu6", False, depth=1),
)

# The same kinds of stages, narrow and few, for tests at 32-64 px.
PROXYLESS_TINY_STAGES = (
    StageSpec(16, 2, "relu6", False),
    StageSpec(24, 2, "relu6", False),
    StageSpec(32, 2, "relu6", False),
    StageSpec(40, 1, "relu6", False, depth=1),
)

# OFA-ResNet50D (the reference's OFAResNets): four bottleneck stages of base depth 2/2/4/2 whose
# widths are the bottlenecks' output widths (the width multipliers scale them).
RESNET50D_STAGES = (
    StageSpec(256, 1, "relu", False, base_depth=2),
    StageSpec(512, 2, "relu", False, base_depth=2),
    StageSpec(1024, 2, "relu", False, base_depth=4),
    StageSpec(2048, 2, "relu", False, base_depth=2),
)

# The same structure, narrow and shallow, for tests at 32-64 px.
RESNET_TINY_STAGES = (
    StageSpec(32, 1, "relu", False, base_depth=1),
    StageSpec(48, 2, "relu", False, base_depth=1),
    StageSpec(64, 2, "relu", False, base_depth=1),
    StageSpec(96, 2, "relu", False, base_depth=1),
)
