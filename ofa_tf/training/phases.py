"""The progressive-shrinking schedule: which choices each phase opens, and its defaults.

Defaults are the reference's ImageNet schedule (the table in
docs/search_space_and_training.md); the trainer scales epochs and learning rates by flags.
A space gets the phases of the dimensions it makes elastic: the kernel phase when it has
several kernel sizes, the width phases when it has several width multipliers (OFA-ResNet50D;
the reference trains only OFA-MobileNetV3, so their recipe is the expand phases').
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from ofa_tf.arch.space import SearchSpace

# Every phase name, in training order; a space runs those of `progressive_shrinking_phases`.
PHASE_NAMES = ("teacher", "kernel", "depth1", "depth2", "expand1", "expand2", "width1", "width2")


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    ks_list: tuple
    expand_ratio_list: tuple
    depth_list: tuple
    dynamic_batch_size: int     # subnets sampled (and gradients summed) per step
    epochs: int
    lr: float                   # base learning rate per 64-image batch (per GPU in the reference)
    warmup_epochs: int
    use_kd: bool                # distil from the teacher (every phase after the teacher)
    sort_channels: int | None   # expand_ratio_stage for sort_channels() before the phase, or None
    width_list: tuple = ()      # the arch's ``w`` values sampled: indices into width_mult_list

    @property
    def is_elastic(self) -> bool:
        return max(len(self.ks_list), len(self.expand_ratio_list), len(self.depth_list),
                   len(self.width_list)) > 1

    def largest_arch(self, space: SearchSpace) -> dict:
        """The phase's largest subnet (no ``r``): what a phase without sampling trains."""
        return space.uniform(max(self.ks_list), max(self.expand_ratio_list), max(self.depth_list),
                             w=max(self.width_list) if self.width_list else None)


def progressive_shrinking_phases(space: SearchSpace, overrides: Mapping[str, Phase] | None = None) -> dict:
    """Phase name -> Phase, in training order, for ``space``'s choice lists; ``overrides``
    replaces phases by name (each must be named as the phase it replaces)."""
    ks, es, ds = space.ks_list, space.expand_ratio_list, space.depth_list
    ws = tuple(range(len(space.width_mult_list)))    # () without elastic width
    k_max, e_max, d_max, w_max = (max(ks),), (max(es),), (max(ds),), ws[-1:]
    phases = [
        # The reference starts from a released full network instead; we train it with the
        # recipe of the long phases.
        Phase("teacher", k_max, e_max, d_max, 1, 120, 3e-2, 5, False, None, w_max),
        Phase("kernel", ks, e_max, d_max, 1, 120, 3e-2, 5, True, None, w_max),
        Phase("depth1", ks, e_max, ds[-2:], 2, 25, 2.5e-3, 0, True, None, w_max),
        Phase("depth2", ks, e_max, ds, 2, 120, 7.5e-3, 5, True, None, w_max),
        Phase("expand1", ks, es[-2:], ds, 4, 25, 2.5e-3, 0, True, 0, w_max),
        Phase("expand2", ks, es, ds, 4, 120, 7.5e-3, 5, True, 1, w_max),
        # Middle channels sorted once more, every expand group kept: the smaller widths take
        # each block's most important middle channels first.
        Phase("width1", ks, es, ds, 4, 25, 2.5e-3, 0, True, len(es) - 1, ws[-2:]),
        Phase("width2", ks, es, ds, 4, 120, 7.5e-3, 5, True, None, ws),
    ]
    opened = {"kernel": len(ks) > 1, "width1": len(ws) > 1, "width2": len(ws) > 1}
    table = {p.name: p for p in phases if opened.get(p.name, True)}
    for name, phase in (overrides or {}).items():
        if name not in table or phase.name != name:
            raise ValueError(f"phase override {name!r} -> {phase.name!r}: an override must replace one of "
                             f"{list(table)} under its own name")
        table[name] = phase
    return table


def phase_validation_archs(space: SearchSpace, ks_list, expand_ratio_list, depth_list,
                           resolutions, width_list=()) -> dict:
    """The smallest, a middle and the largest subnet of a phase's choices, as arch dicts.

    The middle one takes the middle element of each sorted choice list (resolution included);
    ``width_list``: the phase's ``w`` values, for a space with elastic width.
    """
    def arch(pick):
        return space.uniform(pick(ks_list), pick(expand_ratio_list), pick(depth_list), pick(resolutions),
                             pick(width_list) if width_list else None)

    return {"smallest": arch(min), "middle": arch(lambda v: sorted(v)[len(v) // 2]),
            "largest": arch(max)}
