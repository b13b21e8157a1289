"""The OFA search space and its arch dicts.

An arch dict uses the reference's format so that archs move freely between this
library and mit-han-lab/once-for-all::

    {"ks": [20 ints], "e": [20 numbers], "d": [5 ints], "r": [224]}

``ks`` and ``e`` hold one value per block slot (stage-major, ``max_depth`` slots
per elastic stage, as many as its depth for a fixed-depth stage), ``d`` one depth per
stage and ``r`` the input resolution. Values for slots beyond a stage's depth are
carried but do not change the network. (OFA-ProxylessNAS: 5 x 4 + 1 = 21 slots, 6 depths,
the last always 1.)

A space with elastic width (``width_mult_list``, OFA-ResNet50D) has the reference's ResNet arch
dict instead, without ``ks`` (its kernel is fixed)::

    {"d": [5 ints], "e": [18 numbers], "w": [6 ints], "r": [224]}

``d[0]`` is the stem's (its residual conv runs iff it is the largest depth; the space offers the
smallest and the largest), then one per stage, counting blocks over the stage's base depth;
``w`` holds indices into ``width_mult_list``: the stem's first two convs, the stem's last conv,
then one per stage.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from ofa_tf.arch.stages import (MOBILENET_V3_STAGES, PROXYLESS_STAGES, PROXYLESS_TINY_STAGES,
                                RESNET50D_STAGES, RESNET_TINY_STAGES, TINY_STAGES, StageSpec)
from ofa_tf.arch.value import Arch

# Network families with a layout here and a supernet in ofa_tf/networks/ (see its registry).
FAMILIES = ("mobilenet_v3", "proxyless", "resnet")

# The arch dict's keys: MBConv spaces, and spaces with elastic width (the reference's ResNet form).
MBCONV_ARCH_KEYS = ("ks", "e", "d", "r")
WIDTH_ARCH_KEYS = ("d", "e", "w", "r")

# Entries of ``w`` before the stages' own: the stem's first two convs (one width), then its last conv.
STEM_WIDTH_ENTRIES = 2


def _as_number_tuple(name: str, values: Any, kind: type) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"SearchSpace.{name} must be a non-empty list, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"SearchSpace.{name} must hold numbers, got {v!r}")
        if kind is int:
            if v != int(v):
                raise ValueError(f"SearchSpace.{name} must hold integers, got {v!r}")
            v = int(v)
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"SearchSpace.{name} has repeated values: {values!r}")
    return tuple(sorted(out))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Everything that fixes the supernet's shape and the set of its subnets.

    Two supernets with equal spaces have identical weights layouts, so a
    checkpoint, a latency table or an accuracy dataset is tied to a space.
    ``final_expand_width`` 0 means the family's head has no final expand conv
    (ProxylessNAS: its feature mix conv runs before the global pool).
    """

    ks_list: tuple = (3, 5, 7)
    expand_ratio_list: tuple = (3, 4, 6)
    depth_list: tuple = (2, 3, 4)
    resolutions: tuple = tuple(range(128, 225, 4))
    width_mult: float = 1.0
    stages: tuple = MOBILENET_V3_STAGES
    stem_width: int = 16
    first_block_width: int = 16
    final_expand_width: int = 960
    feature_mix_width: int = 1280
    family: str = "mobilenet_v3"
    width_mult_list: tuple = ()
    skippable_stem: bool = False

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("ks_list", _as_number_tuple("ks_list", self.ks_list, int))
        set_("expand_ratio_list", _as_number_tuple("expand_ratio_list", self.expand_ratio_list, float))
        set_("expand_ratio_list", tuple(int(e) if float(e).is_integer() else float(e)
                                        for e in self.expand_ratio_list))
        set_("depth_list", _as_number_tuple("depth_list", self.depth_list, int))
        set_("resolutions", _as_number_tuple("resolutions", self.resolutions, int))
        set_("stages", tuple(s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages))
        set_("width_mult_list", () if not self.width_mult_list and not isinstance(self.width_mult_list, str)
             else _as_number_tuple("width_mult_list", self.width_mult_list, float))
        if any(w <= 0 for w in self.width_mult_list):
            raise ValueError(f"SearchSpace.width_mult_list must be positive, got {self.width_mult_list}")
        if self.width_mult_list and len(self.ks_list) != 1:
            raise ValueError("a space with elastic width has a fixed kernel: ks_list must hold one size, "
                             f"got {self.ks_list}")
        if not isinstance(self.skippable_stem, bool):
            raise ValueError(f"SearchSpace.skippable_stem must be a bool, got {self.skippable_stem!r}")
        if any(k % 2 == 0 or k < 1 for k in self.ks_list):
            raise ValueError(f"SearchSpace.ks_list must hold odd positive sizes, got {self.ks_list}")
        if any(e <= 0 for e in self.expand_ratio_list):
            raise ValueError(f"SearchSpace.expand_ratio_list must be positive, got {self.expand_ratio_list}")
        if self.depth_list[0] < 0:
            raise ValueError(f"SearchSpace.depth_list must be >= 0, got {self.depth_list}")
        if not self.stages:
            raise ValueError("SearchSpace.stages must not be empty")
        for s, stage in enumerate(self.stages):
            if stage.base_depth + (self.depth_list[0] if stage.depth is None else stage.depth) < 1:
                raise ValueError(f"stage {s} could run no block: depth_list {self.depth_list} over "
                                 f"base_depth {stage.base_depth}; its depths must be >= 1")
        if any(r < 8 for r in self.resolutions):
            raise ValueError(f"SearchSpace.resolutions must be >= 8 px, got {self.resolutions}")
        if not (isinstance(self.width_mult, numbers.Real) and self.width_mult > 0):
            raise ValueError(f"SearchSpace.width_mult must be positive, got {self.width_mult!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"SearchSpace.family {self.family!r} is not supported (one of {FAMILIES})")

    # ----------------------------------------------------------------- presets
    @classmethod
    def mobilenet_v3(cls, width_mult: float = 1.0, ks_list=(3, 5, 7),
                     expand_ratio_list=(3, 4, 6), depth_list=(2, 3, 4),
                     resolutions=None) -> "SearchSpace":
        """OFA-MobileNetV3 as in the reference; w1.2 trains at 160-224 px."""
        if resolutions is None:
            low = 160 if width_mult >= 1.2 else 128
            resolutions = tuple(range(low, 225, 4))
        return cls(ks_list=ks_list, expand_ratio_list=expand_ratio_list,
                   depth_list=depth_list, resolutions=resolutions, width_mult=width_mult)

    @classmethod
    def tiny(cls) -> "SearchSpace":
        """Reduced space for tests and CPU demos: 4 narrow stages of up to 3 blocks, 32-64 px."""
        return cls(depth_list=(1, 2, 3), resolutions=(32, 40, 48, 56, 64), stages=TINY_STAGES,
                   stem_width=8, first_block_width=8, final_expand_width=96,
                   feature_mix_width=128)

    @classmethod
    def proxyless(cls, width_mult: float = 1.3, ks_list=(3, 5, 7), expand_ratio_list=(3, 4, 6),
                  depth_list=(2, 3, 4), resolutions=None) -> "SearchSpace":
        """OFA-ProxylessNAS as the reference's ``OFAProxylessNASNets`` (released at w1.3, trained at
        128-224 px): a 32-wide ReLU6 stem, a fixed 16-wide first block, six stages, the last of
        one block, and a 1280-wide feature mix conv before the global pool."""
        return cls(ks_list=ks_list, expand_ratio_list=expand_ratio_list, depth_list=depth_list,
                   resolutions=tuple(range(128, 225, 4)) if resolutions is None else resolutions,
                   width_mult=width_mult, stages=PROXYLESS_STAGES, stem_width=32,
                   first_block_width=16, final_expand_width=0, feature_mix_width=1280,
                   family="proxyless")

    @classmethod
    def proxyless_tiny(cls) -> "SearchSpace":
        """ProxylessNAS's kinds of blocks in a space as small as `tiny`, for tests at 32-64 px."""
        return cls(depth_list=(1, 2, 3), resolutions=(32, 40, 48, 56, 64),
                   stages=PROXYLESS_TINY_STAGES, stem_width=8, first_block_width=8,
                   final_expand_width=0, feature_mix_width=128, family="proxyless")

    @classmethod
    def resnet50d(cls, depth_list=(0, 1, 2), expand_ratio_list=(0.2, 0.25, 0.35),
                  width_mult_list=(0.65, 0.8, 1.0), resolutions=None) -> "SearchSpace":
        """OFA-ResNet50D as the reference's ``OFAResNets``: a ResNet-D stem (64-wide; its residual
        conv skippable), four bottleneck stages of 2/2/4/2 blocks plus ``d`` in {0, 1, 2} each,
        middle widths 0.2/0.25/0.35 of the output width and width multipliers 0.65/0.8/1.0;
        trained at 128-224 px."""
        return cls(ks_list=(3,), expand_ratio_list=expand_ratio_list, depth_list=depth_list,
                   resolutions=tuple(range(128, 225, 4)) if resolutions is None else resolutions,
                   stages=RESNET50D_STAGES, stem_width=64, first_block_width=0, final_expand_width=0,
                   feature_mix_width=0, family="resnet", width_mult_list=width_mult_list,
                   skippable_stem=True)

    @classmethod
    def resnet_tiny(cls) -> "SearchSpace":
        """ResNet50D's structure with few channels and blocks, for tests at 32-64 px."""
        return cls(ks_list=(3,), expand_ratio_list=(0.2, 0.25, 0.35), depth_list=(0, 1, 2),
                   resolutions=(32, 40, 48, 56, 64), stages=RESNET_TINY_STAGES, stem_width=48,
                   first_block_width=0, final_expand_width=0, feature_mix_width=0, family="resnet",
                   width_mult_list=(0.65, 0.8, 1.0), skippable_stem=True)

    @classmethod
    def preset(cls, name: str) -> "SearchSpace":
        """The space of a preset name (`PRESETS`), as the CLIs' ``--space`` takes it."""
        if name not in PRESETS:
            raise ValueError(f"unknown search space preset {name!r}; choose from {sorted(PRESETS)}")
        return PRESETS[name]()

    # -------------------------------------------------------------- structure
    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    def stage_depths(self, stage: int) -> tuple:
        """The depths stage ``stage`` can take: the space's ``depth_list``, or its fixed depth."""
        fixed = self.stages[stage].depth
        return self.depth_list if fixed is None else (fixed,)

    def stage_length(self, stage: int, depth: int) -> int:
        """How many blocks stage ``stage`` runs at depth ``depth`` (over its base depth)."""
        return self.stages[stage].base_depth + int(depth)

    @property
    def arch_keys(self) -> tuple:
        """The keys of this space's arch dicts (`MBCONV_ARCH_KEYS` or `WIDTH_ARCH_KEYS`)."""
        return WIDTH_ARCH_KEYS if self.width_mult_list else MBCONV_ARCH_KEYS

    @property
    def stem_depths(self) -> tuple:
        """The choices of ``d[0]`` when the stem is skippable: skip (smallest) or run (largest)."""
        return (min(self.depth_list), max(self.depth_list)) if self.skippable_stem else ()

    @property
    def n_depths(self) -> int:
        """Length of ``d``: the stem's entry if it is skippable, then one per stage."""
        return self.n_stages + int(self.skippable_stem)

    def depth_choices(self) -> list:
        """The choices of every entry of ``d``."""
        stem = [self.stem_depths] if self.skippable_stem else []
        return stem + [self.stage_depths(s) for s in range(self.n_stages)]

    def stage_depth(self, depths, stage: int) -> int:
        """Stage ``stage``'s entry of an arch's ``d``."""
        return depths[stage + int(self.skippable_stem)]

    def stem_depth_for(self, depth: int) -> int:
        """The stem's ``d`` entry going with stage depth ``depth`` in a uniform arch or a phase's
        choices: run (the largest) with the largest depth, skip (the smallest) otherwise."""
        return max(self.depth_list) if depth == max(self.depth_list) else min(self.depth_list)

    def stem_depth_choices(self, depth_list) -> tuple:
        """The stem's choices when the stages' depths come from ``depth_list`` (a skippable stem)."""
        return tuple(sorted({self.stem_depth_for(d) for d in depth_list}))

    def stem_skipped(self, depths) -> bool:
        """Whether an arch's ``d`` skips the stem's residual conv (a skippable stem only)."""
        return self.skippable_stem and depths[0] != max(self.depth_list)

    @property
    def n_widths(self) -> int:
        """Length of ``w``: the stem's convs then one per stage; 0 without elastic width."""
        return STEM_WIDTH_ENTRIES + self.n_stages if self.width_mult_list else 0

    @property
    def n_blocks(self) -> int:
        """Number of elastic block slots (the length of ``ks`` and ``e``)."""
        return sum(len(self.stage_slots(s)) for s in range(self.n_stages))

    def count(self, include_resolution: bool = False) -> int:
        """Number of distinct sub-networks (blocks past a stage's depth don't count)."""
        per_block = len(self.ks_list) * len(self.expand_ratio_list)
        total = math.prod(sum(per_block ** self.stage_length(s, d) for d in self.stage_depths(s))
                          for s in range(self.n_stages))
        total *= max(1, len(self.stem_depths)) * len(self.width_mult_list or (1,)) ** self.n_widths
        return total * len(self.resolutions) if include_resolution else total

    # ------------------------------------------------------------------ archs
    @property
    def default_resolution(self) -> int:
        """The resolution of an arch given without ``r``: the largest (the supernet's own)."""
        return max(self.resolutions)

    def with_resolutions(self, resolutions) -> "SearchSpace":
        """This space at other input resolutions (the weights do not depend on them): e.g. the
        8 resolutions the reference's OFA-ResNet50D accuracy predictor one-hots."""
        return dataclasses.replace(self, resolutions=resolutions)

    def check_resolution(self, resolution) -> int:
        """``resolution`` if it is one of the space's; one ValueError naming it otherwise."""
        if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) \
                or resolution not in self.resolutions:
            raise ValueError(f"resolution {resolution!r} is not in the space's resolutions "
                             f"{list(self.resolutions)}")
        return int(resolution)

    def arch(self, arch: Mapping, image_size: int | None = None, require_resolution: bool = False) -> Arch:
        """``arch`` (an arch dict or an `Arch`) as an `Arch` of this space, validated once.

        The resolution is ``image_size`` if given, else ``arch["r"]``, else
        `default_resolution` (unless ``require_resolution``); it must be one of the space's
        resolutions. An `Arch` of this space comes back as it is (or with the new resolution),
        without checking it again.
        """
        if isinstance(arch, Arch) and (arch.space is self or arch.space == self):
            if image_size is None or image_size == arch.resolution:
                return arch
            return Arch(self, arch.ks, arch.e, arch.d, self.check_resolution(image_size), arch.w)
        values = self.validate(arch, require_resolution=require_resolution and image_size is None)
        resolution = self.check_resolution(image_size) if image_size is not None else \
            values.get("r", [self.default_resolution])[0]
        return Arch(self, values.get("ks", ()), values["e"], values["d"], resolution, values.get("w", ()))

    def validate(self, arch: Mapping, require_resolution: bool = False) -> dict:
        """Return a normalized copy of ``arch``; raise one ValueError naming the bad field."""
        if isinstance(arch, Arch) and (arch.space is self or arch.space == self):
            return arch.to_dict()
        if not isinstance(arch, Mapping):
            raise ValueError(f"arch must be a dict with keys {self.arch_keys}, got {type(arch).__name__}")
        unknown = [k for k in arch if k not in self.arch_keys]
        if unknown:
            raise ValueError(f"arch has unknown key {unknown[0]!r}; allowed keys are {self.arch_keys}")
        for key in self.arch_keys[:-1] + (("r",) if require_resolution else ()):
            if key not in arch:
                raise ValueError(f"arch is missing {key!r}")
        per_stage = [len(self.stage_slots(s)) for s in range(self.n_stages)]
        slots = "one per block slot: " + (f"{self.n_stages} stages x {per_stage[0]}" if len(set(per_stage)) == 1
                                          else " + ".join(map(str, per_stage)))
        checked = {
            "ks": lambda: self._check_list(arch, "ks", self.ks_list, self.n_blocks, slots),
            "e": lambda: self._check_list(arch, "e", self.expand_ratio_list, self.n_blocks, slots),
            "d": lambda: self._check_list(arch, "d", self.depth_choices(), self.n_depths,
                                          "the stem's, then one per stage" if self.skippable_stem
                                          else "one per stage"),
            "w": lambda: self._check_list(arch, "w", tuple(range(len(self.width_mult_list))), self.n_widths,
                                          "indices into width_mult_list: the stem's convs, then one per stage"),
        }
        out = {key: checked[key]() for key in self.arch_keys[:-1]}
        if "r" in arch and arch["r"] is not None:
            r = arch["r"]
            if isinstance(r, numbers.Integral) and not isinstance(r, bool):
                r = [r]
            out["r"] = self._check_list({"r": r}, "r", self.resolutions, 1, "the input resolution")
        elif require_resolution:
            raise ValueError("arch is missing 'r'")
        return out

    def _check_list(self, arch, key, allowed, length, what) -> list:
        """``allowed``: the choices of every entry, or a list of each entry's choices."""
        values = arch[key]
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            raise ValueError(f"arch[{key!r}] must be a list of {length} numbers, got "
                             f"{type(values).__name__} {values!r}")
        if len(values) != length:
            raise ValueError(f"arch[{key!r}] has {len(values)} values; expected {length} ({what})")
        per_entry = allowed if isinstance(allowed, list) else [allowed] * length
        return [self._choice(key, i, v, per_entry[i]) for i, v in enumerate(values)]

    @staticmethod
    def _choice(key, index, value, allowed):
        """``value`` as the matching entry of ``allowed``; one ValueError naming the field if none."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"arch[{key!r}][{index}] must be a number, got {type(value).__name__} {value!r}")
        match = [a for a in allowed if math.isclose(float(a), float(value), rel_tol=0, abs_tol=1e-9)]
        if not match:
            raise ValueError(f"arch[{key!r}][{index}] = {value!r} is not in the space's choices {list(allowed)}")
        return match[0]

    def check_partial(self, wide: Mapping) -> dict:
        """Check an :meth:`expand`-ed arch whose entries may be ``None`` (keep the current
        choice); returns it with every given value matched to the space's choices."""
        lists = {"ks": [self.ks_list] * self.n_blocks, "e": [self.expand_ratio_list] * self.n_blocks,
                 "d": self.depth_choices(), "w": [tuple(range(len(self.width_mult_list)))] * self.n_widths}
        return {key: [None if v is None else self._choice(key, i, v, lists[key][i]) for i, v in enumerate(wide[key])]
                for key in self.arch_keys[:-1]}

    def sample(self, rng: np.random.Generator | int | None = None) -> dict:
        """A uniformly random arch (per-block ks and e, per-stage d, one r)."""
        rng = np.random.default_rng(rng)
        pick = lambda choices, n: [choices[i] for i in rng.integers(0, len(choices), n)]  # noqa: E731
        if self.width_mult_list:   # the reference's OFAResNets.sample_active_subnet order: e, d, w
            e = pick(self.expand_ratio_list, self.n_blocks)
            d = pick(self.stem_depths, 1) if self.skippable_stem else []
            d = self.fixed_depths(d + pick(self.depth_list, self.n_stages))
            return {"d": d, "e": e, "w": pick(tuple(range(len(self.width_mult_list))), self.n_widths),
                    "r": pick(self.resolutions, 1)}
        return {"ks": pick(self.ks_list, self.n_blocks),
                "e": pick(self.expand_ratio_list, self.n_blocks),
                "d": self.fixed_depths(pick(self.depth_list, self.n_stages)),
                "r": pick(self.resolutions, 1)}

    def fixed_depths(self, depths: Sequence) -> list:
        """``depths`` (a full ``d``) with each fixed-depth stage's entry set to its depth, as the
        reference clamps them; elastic stages' entries (and the stem's) are kept."""
        offset = len(depths) - self.n_stages
        return [d if s < 0 or self.stages[s].depth is None else self.stages[s].depth
                for s, d in enumerate(depths, start=-offset)]

    def largest(self, resolution: int | None = None) -> dict:
        return self.uniform(max(self.ks_list), max(self.expand_ratio_list), max(self.depth_list),
                            resolution or max(self.resolutions), len(self.width_mult_list) - 1)

    def smallest(self, resolution: int | None = None) -> dict:
        return self.uniform(min(self.ks_list), min(self.expand_ratio_list), min(self.depth_list),
                            resolution or min(self.resolutions), 0)

    def uniform(self, ks, e, d, r=None, w=None) -> dict:
        """An arch with the same choice everywhere (validated); ``w`` (a width index) only in a
        space with elastic width, where ``ks`` is ignored; a skippable stem runs iff ``d`` is the
        largest depth."""
        depths = self.fixed_depths([d] * self.n_depths)
        if self.skippable_stem:
            depths[0] = self.stem_depth_for(d)
        arch = {"ks": [ks] * self.n_blocks, "e": [e] * self.n_blocks, "d": depths, "w": [w] * self.n_widths}
        arch = {key: arch[key] for key in self.arch_keys[:-1]}
        if r is not None:
            arch["r"] = [r]
        return self.validate(arch)

    def expand(self, ks=None, e=None, d=None, w=None) -> dict:
        """Expand OFA-style arguments (an int for all, or a per-block/per-stage list)
        into a full arch dict without ``r``; ``None`` entries are returned as ``None``. One
        depth for all stages leaves fixed-depth stages at their depth."""
        def widen(value, n, key):
            if value is None:
                return [None] * n
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return [value] * n
            if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                if len(value) != n:
                    raise ValueError(f"{key} has {len(value)} values; expected {n}")
                return list(value)
            raise ValueError(f"{key} must be a number or a list of numbers, got {value!r}")
        depths = widen(d, self.n_depths, "d")
        if isinstance(d, numbers.Real):
            depths = self.fixed_depths(depths)
        wide = {"ks": widen(ks, self.n_blocks, "ks"), "e": widen(e, self.n_blocks, "e"), "d": depths,
                "w": widen(w, self.n_widths, "w")}
        return {key: wide[key] for key in self.arch_keys[:-1]}

    def stage_slots(self, stage: int) -> range:
        """Indices into ``ks``/``e`` of the block slots of one stage."""
        start = sum(self.stage_length(s, max(self.stage_depths(s))) for s in range(stage))
        return range(start, start + self.stage_length(stage, max(self.stage_depths(stage))))

    def active_slots(self, arch: Mapping) -> list[int]:
        """Indices of the block slots that the arch runs."""
        return [i for s in range(self.n_stages)
                for i in self.stage_slots(s)[: self.stage_length(s, self.stage_depth(arch["d"], s))]]

    # ------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks_list"], d["expand_ratio_list"] = list(self.ks_list), list(self.expand_ratio_list)
        d["depth_list"], d["resolutions"] = list(self.depth_list), list(self.resolutions)
        # An elastic stage's depth (None) is left out, so spaces without fixed stages keep their JSON.
        d["stages"] = [{k: v for k, v in dataclasses.asdict(s).items()
                        if not (k == "depth" and v is None or k == "base_depth" and v == 0)}
                       for s in self.stages]
        # Fields the MBConv families leave at their defaults are left out too (their JSON stays).
        if self.width_mult_list:
            d["width_mult_list"] = list(self.width_mult_list)
        else:
            del d["width_mult_list"]
        if not self.skippable_stem:
            del d["skippable_stem"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "SearchSpace":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"search space has unknown field {unknown[0]!r}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        return cls.from_dict(json.loads(text))


# The named spaces the CLIs offer (``--space``); a family adds its presets here.
PRESETS = {"tiny": SearchSpace.tiny,
           "mbv3_w1.0": lambda: SearchSpace.mobilenet_v3(1.0),
           "mbv3_w1.2": lambda: SearchSpace.mobilenet_v3(1.2),
           "proxyless_tiny": SearchSpace.proxyless_tiny,
           "proxyless_w1.3": lambda: SearchSpace.proxyless(1.3),
           "resnet_tiny": SearchSpace.resnet_tiny,
           "resnet50d": SearchSpace.resnet50d}


def arch_from_json(text: str, space: SearchSpace, require_resolution: bool = False) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"arch is not valid JSON: {err}") from None
    return space.validate(data, require_resolution=require_resolution)
