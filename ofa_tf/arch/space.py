"""The OFA search space and its arch dicts.

An arch dict uses the reference's format so that archs move freely between this
library and mit-han-lab/once-for-all::

    {"ks": [20 ints], "e": [20 numbers], "d": [5 ints], "r": [224]}

``ks`` and ``e`` hold one value per block slot (stage-major, ``max_depth`` slots
per elastic stage, as many as its depth for a fixed-depth stage), ``d`` one depth per
stage and ``r`` the input resolution. Values for slots beyond a stage's depth are
carried but do not change the network. (OFA-ProxylessNAS: 5 x 4 + 1 = 21 slots, 6 depths,
the last always 1.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from ofa_tf.arch.stages import (MOBILENET_V3_STAGES, PROXYLESS_STAGES, PROXYLESS_TINY_STAGES,
                                TINY_STAGES, StageSpec)
from ofa_tf.arch.value import ARCH_KEYS, Arch

# Network families with a layout here and a supernet in ofa_tf/networks/ (see its registry).
FAMILIES = ("mobilenet_v3", "proxyless")


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

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("ks_list", _as_number_tuple("ks_list", self.ks_list, int))
        set_("expand_ratio_list", _as_number_tuple("expand_ratio_list", self.expand_ratio_list, float))
        set_("expand_ratio_list", tuple(int(e) if float(e).is_integer() else float(e)
                                        for e in self.expand_ratio_list))
        set_("depth_list", _as_number_tuple("depth_list", self.depth_list, int))
        set_("resolutions", _as_number_tuple("resolutions", self.resolutions, int))
        set_("stages", tuple(s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages))
        if any(k % 2 == 0 or k < 1 for k in self.ks_list):
            raise ValueError(f"SearchSpace.ks_list must hold odd positive sizes, got {self.ks_list}")
        if any(e <= 0 for e in self.expand_ratio_list):
            raise ValueError(f"SearchSpace.expand_ratio_list must be positive, got {self.expand_ratio_list}")
        if self.depth_list[0] < 1:
            raise ValueError(f"SearchSpace.depth_list must be >= 1, got {self.depth_list}")
        if any(r < 8 for r in self.resolutions):
            raise ValueError(f"SearchSpace.resolutions must be >= 8 px, got {self.resolutions}")
        if not self.stages:
            raise ValueError("SearchSpace.stages must not be empty")
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

    @property
    def n_blocks(self) -> int:
        """Number of elastic block slots (the length of ``ks`` and ``e``)."""
        return sum(max(self.stage_depths(s)) for s in range(self.n_stages))

    def count(self, include_resolution: bool = False) -> int:
        """Number of distinct sub-networks (blocks past a stage's depth don't count)."""
        per_block = len(self.ks_list) * len(self.expand_ratio_list)
        total = math.prod(sum(per_block ** d for d in self.stage_depths(s)) for s in range(self.n_stages))
        return total * len(self.resolutions) if include_resolution else total

    # ------------------------------------------------------------------ archs
    @property
    def default_resolution(self) -> int:
        """The resolution of an arch given without ``r``: the largest (the supernet's own)."""
        return max(self.resolutions)

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
            return Arch(self, arch.ks, arch.e, arch.d, self.check_resolution(image_size))
        values = self.validate(arch, require_resolution=require_resolution and image_size is None)
        resolution = self.check_resolution(image_size) if image_size is not None else \
            values.get("r", [self.default_resolution])[0]
        return Arch(self, values["ks"], values["e"], values["d"], resolution)

    def validate(self, arch: Mapping, require_resolution: bool = False) -> dict:
        """Return a normalized copy of ``arch``; raise one ValueError naming the bad field."""
        if isinstance(arch, Arch) and (arch.space is self or arch.space == self):
            return arch.to_dict()
        if not isinstance(arch, Mapping):
            raise ValueError(f"arch must be a dict with keys {ARCH_KEYS}, got {type(arch).__name__}")
        unknown = [k for k in arch if k not in ARCH_KEYS]
        if unknown:
            raise ValueError(f"arch has unknown key {unknown[0]!r}; allowed keys are {ARCH_KEYS}")
        for key in ("ks", "e", "d") + (("r",) if require_resolution else ()):
            if key not in arch:
                raise ValueError(f"arch is missing {key!r}")
        out = {
            "ks": self._check_list(arch, "ks", self.ks_list, self.n_blocks, "one per block slot: "
                                   f"{self.n_stages} stages x {self.max_depth}"),
            "e": self._check_list(arch, "e", self.expand_ratio_list, self.n_blocks, "one per block slot: "
                                  f"{self.n_stages} stages x {self.max_depth}"),
            "d": self._check_list(arch, "d", [self.stage_depths(s) for s in range(self.n_stages)],
                                  self.n_stages, "one per stage"),
        }
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
                 "d": [self.stage_depths(s) for s in range(self.n_stages)]}
        return {key: [None if v is None else self._choice(key, i, v, lists[key][i]) for i, v in enumerate(wide[key])]
                for key in lists}

    def sample(self, rng: np.random.Generator | int | None = None) -> dict:
        """A uniformly random arch (per-block ks and e, per-stage d, one r)."""
        rng = np.random.default_rng(rng)
        pick = lambda choices, n: [choices[i] for i in rng.integers(0, len(choices), n)]  # noqa: E731
        return {"ks": pick(self.ks_list, self.n_blocks),
                "e": pick(self.expand_ratio_list, self.n_blocks),
                "d": self.fixed_depths(pick(self.depth_list, self.n_stages)),
                "r": pick(self.resolutions, 1)}

    def fixed_depths(self, depths: Sequence) -> list:
        """``depths`` (one per stage) with each fixed-depth stage's entry set to its depth, as the
        reference clamps them; elastic stages' entries are kept."""
        return [d if self.stages[s].depth is None else self.stages[s].depth for s, d in enumerate(depths)]

    def largest(self, resolution: int | None = None) -> dict:
        return self.uniform(max(self.ks_list), max(self.expand_ratio_list), max(self.depth_list),
                            resolution or max(self.resolutions))

    def smallest(self, resolution: int | None = None) -> dict:
        return self.uniform(min(self.ks_list), min(self.expand_ratio_list), min(self.depth_list),
                            resolution or min(self.resolutions))

    def uniform(self, ks, e, d, r=None) -> dict:
        """An arch with the same choice everywhere (validated)."""
        arch = {"ks": [ks] * self.n_blocks, "e": [e] * self.n_blocks,
                "d": self.fixed_depths([d] * self.n_stages)}
        if r is not None:
            arch["r"] = [r]
        return self.validate(arch)

    def expand(self, ks=None, e=None, d=None) -> dict:
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
        depths = widen(d, self.n_stages, "d")
        if isinstance(d, numbers.Real):
            depths = self.fixed_depths(depths)
        return {"ks": widen(ks, self.n_blocks, "ks"), "e": widen(e, self.n_blocks, "e"), "d": depths}

    def stage_slots(self, stage: int) -> range:
        """Indices into ``ks``/``e`` of the block slots of one stage."""
        start = sum(max(self.stage_depths(s)) for s in range(stage))
        return range(start, start + max(self.stage_depths(stage)))

    def active_slots(self, arch: Mapping) -> list[int]:
        """Indices of the block slots that the arch runs."""
        return [i for s in range(self.n_stages) for i in self.stage_slots(s)[: arch["d"][s]]]

    # ------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ks_list"], d["expand_ratio_list"] = list(self.ks_list), list(self.expand_ratio_list)
        d["depth_list"], d["resolutions"] = list(self.depth_list), list(self.resolutions)
        # An elastic stage's depth (None) is left out, so spaces without fixed stages keep their JSON.
        d["stages"] = [{k: v for k, v in dataclasses.asdict(s).items() if k != "depth" or v is not None}
                       for s in self.stages]
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
           "proxyless_w1.3": lambda: SearchSpace.proxyless(1.3)}


def arch_from_json(text: str, space: SearchSpace, require_resolution: bool = False) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"arch is not valid JSON: {err}") from None
    return space.validate(data, require_resolution=require_resolution)
