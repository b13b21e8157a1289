"""The one-hot features of width-elastic (ResNet) archs in the reference's ``ResNetArchEncoder``
layout (ofa/nas/accuracy_predictor/arch_encoder.py), so its OFA-ResNet50D accuracy predictor reads
our archs::

    [ one-hot r (len(resolutions)) |
      one-hot stem: [skipped, runs] (2) |
      one-hot w, entry 0 .. n_widths-1 (len(width_mult_list) each) |
      one-hot e, block slot 0 .. n_blocks-1 (len(expand_ratio_list) each; zero when skipped) ]

Arch dicts in, features out, and back; the search's index arrays (`ofa_tf.nas.encoding.ArchBatch`)
do not carry ``w`` yet, so this encoder works on arch dicts.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ofa_tf.arch.space import SearchSpace


class ResNetArchEncoder:
    """Features of one width-elastic space (``space.width_mult_list`` and a skippable stem)."""

    name = "resnet_onehot"

    def __init__(self, space: SearchSpace):
        if not (space.width_mult_list and space.skippable_stem):
            raise ValueError("ResNetArchEncoder needs a space with width_mult_list and a skippable stem "
                             f"(family {space.family!r} has none)")
        self.space = space
        self.n_r, self.n_w, self.n_e = len(space.resolutions), len(space.width_mult_list), len(space.expand_ratio_list)
        self.stem_offset = self.n_r
        self.w_offset = self.stem_offset + 2
        self.e_offset = self.w_offset + space.n_widths * self.n_w
        self.n_dim = self.e_offset + space.n_blocks * self.n_e

    def encode(self, archs: Sequence[Mapping]) -> np.ndarray:
        """(N, n_dim) float32 features of validated arch dicts (``r`` required)."""
        space = self.space
        features = np.zeros((len(archs), self.n_dim), np.float32)
        for row, given in enumerate(archs):
            arch = space.arch(given, require_resolution=True)
            features[row, space.resolutions.index(arch.resolution)] = 1.0
            features[row, self.stem_offset + int(not space.stem_skipped(arch.d))] = 1.0
            for entry, index in enumerate(arch.w):
                features[row, self.w_offset + entry * self.n_w + index] = 1.0
            for slot in arch.active_slots:
                features[row, self.e_offset + slot * self.n_e + space.expand_ratio_list.index(arch.e[slot])] = 1.0
        return features

    def arch2feature(self, arch: Mapping) -> np.ndarray:
        """One arch dict -> its feature vector (the reference's method name)."""
        return self.encode([arch])[0]

    def feature2arch(self, feature: np.ndarray) -> dict:
        """The inverse of `arch2feature`; skipped slots come back as the first expand ratio.
        Raises ValueError when ``feature`` is not an encoding of this space's archs."""
        space, feature = self.space, np.asarray(feature)
        if feature.shape != (self.n_dim,):
            raise ValueError(f"feature has shape {feature.shape}; this space encodes to ({self.n_dim},)")
        one_hot = lambda part: part.sum() == 1 and set(np.unique(part)) <= {0, 1}  # noqa: E731
        r_part, stem_part = feature[: self.n_r], feature[self.stem_offset: self.w_offset]
        w_part = feature[self.w_offset: self.e_offset].reshape(space.n_widths, self.n_w)
        e_part = feature[self.e_offset:].reshape(space.n_blocks, self.n_e)
        if not (one_hot(r_part) and one_hot(stem_part) and all(one_hot(p) for p in w_part)):
            raise ValueError("the resolution, the stem and every width entry need exactly one bit each")
        active = e_part.sum(1) == 1
        depths = [space.stem_depths[int(stem_part.argmax())]]
        for s in range(space.n_stages):
            slots = active[list(space.stage_slots(s))]
            length = int(slots.sum())
            if not slots[:length].all():
                raise ValueError(f"stage {s}: its active block slots must come first (no gaps)")
            depths.append(length - space.stages[s].base_depth)
        e = [space.expand_ratio_list[int(p.argmax())] if on else space.expand_ratio_list[0]
             for p, on in zip(e_part, active)]
        arch = {"d": depths, "e": e, "w": [int(p.argmax()) for p in w_part],
                "r": [space.resolutions[int(r_part.argmax())]]}
        return space.validate(arch, require_resolution=True)
