"""The progressive-shrinking schedule: which choices each phase opens, and its defaults.

Defaults are the reference's ImageNet schedule (the table in
docs/search_space_and_training.md); the trainer scales epochs and learning rates by flags.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from ofa_tf.arch.space import SearchSpace

PHASE_NAMES = ("teacher", "kernel", "depth1", "depth2", "expand1", "expand2")


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

    @property
    def is_elastic(self) -> bool:
        return max(len(self.ks_list), len(self.expand_ratio_list), len(self.depth_list)) > 1


def progressive_shrinking_phases(space: SearchSpace, overrides: Mapping[str, Phase] | None = None) -> dict:
    """Phase name -> Phase, in training order, for ``space``'s choice lists; ``overrides``
    replaces phases by name (each must be named as the phase it replaces)."""
    ks, es, ds = space.ks_list, space.expand_ratio_list, space.depth_list
    k_max, e_max, d_max = (max(ks),), (max(es),), (max(ds),)
    phases = [
        # The reference starts from a released full network instead; we train it with the
        # recipe of the long phases.
        Phase("teacher", k_max, e_max, d_max, 1, 120, 3e-2, 5, False, None),
        Phase("kernel", ks, e_max, d_max, 1, 120, 3e-2, 5, True, None),
        Phase("depth1", ks, e_max, ds[-2:], 2, 25, 2.5e-3, 0, True, None),
        Phase("depth2", ks, e_max, ds, 2, 120, 7.5e-3, 5, True, None),
        Phase("expand1", ks, es[-2:], ds, 4, 25, 2.5e-3, 0, True, 0),
        Phase("expand2", ks, es, ds, 4, 120, 7.5e-3, 5, True, 1),
    ]
    table = {p.name: p for p in phases}
    for name, phase in (overrides or {}).items():
        if name not in table or phase.name != name:
            raise ValueError(f"phase override {name!r} -> {phase.name!r}: an override must replace one of "
                             f"{list(PHASE_NAMES)} under its own name")
        table[name] = phase
    return table


def phase_validation_archs(space: SearchSpace, ks_list, expand_ratio_list, depth_list,
                           resolutions) -> dict:
    """The smallest, a middle and the largest subnet of a phase's choices, as arch dicts.

    The middle one takes the middle element of each sorted choice list (resolution included).
    """
    def arch(pick):
        return space.uniform(pick(ks_list), pick(expand_ratio_list), pick(depth_list), pick(resolutions))

    return {"smallest": arch(min), "middle": arch(lambda v: sorted(v)[len(v) // 2]),
            "largest": arch(max)}
