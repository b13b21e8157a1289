"""The architecture core every family plugs into, without Keras: the search space, the validated
arch value, the layout description that supernet, static builder, counters and latency tables
walk, and MACs / params."""

from ofa_tf.arch.complexity import Profile, profile_arch
from ofa_tf.arch.layout import Layout, build_layout, make_divisible
from ofa_tf.arch.space import PRESETS, SearchSpace, StageSpec
from ofa_tf.arch.value import Arch, arch_to_json

__all__ = ["Arch", "Layout", "PRESETS", "Profile", "SearchSpace", "StageSpec", "arch_to_json",
           "build_layout", "make_divisible", "profile_arch"]
