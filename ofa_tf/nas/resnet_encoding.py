"""The one-hot features of width-elastic (ResNet) archs in the reference's ``ResNetArchEncoder``
layout (ofa/nas/accuracy_predictor/arch_encoder.py), so its OFA-ResNet50D accuracy predictor reads
our archs::

    [ one-hot r (len(resolutions)) |
      one-hot stem: [skipped, runs] (2) |
      one-hot w, entry 0 .. n_widths-1 (len(width_mult_list) each) |
      one-hot e, block slot 0 .. n_blocks-1 (len(expand_ratio_list) each; zero when skipped) ]

Like the MBConv encoders it turns the search's index arrays (`ofa_tf.nas.encoding.ArchBatch`) into
features, so accuracy predictors of ResNet spaces train and predict as the others do.
"""

from __future__ import annotations

import numpy as np

from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.encoding import ArchCodec, register_encoder


@register_encoder
class ResNetArchEncoder(ArchCodec):
    """Features of one width-elastic space (``space.width_mult_list`` and a skippable stem)."""

    name = "resnet_onehot"

    def __init__(self, space: SearchSpace):
        if not (space.width_mult_list and space.skippable_stem):
            raise ValueError("ResNetArchEncoder needs a space with width_mult_list and a skippable stem "
                             f"(family {space.family!r} has none)")
        super().__init__(space)
        self.n_r, self.n_w = self.n_res, len(space.width_mult_list)
        self.stem_offset = self.n_r
        self.w_offset = self.stem_offset + 2
        self.e_offset = self.w_offset + space.n_widths * self.n_w
        self.n_dim = self.e_offset + space.n_blocks * self.n_e

    def _feature_terms(self) -> list:
        """The one-hot bits in the reference's layout (module docstring)."""
        slots = np.arange(self.n_blocks)[:, None]
        return ([(np.arange(self.n_r), [self.r_column]),
                 (self.stem_offset + self.stem_runs_at, [self.stem_column])]
                + [(self.w_offset + entry * self.n_w + np.arange(self.n_w), [self.w_columns[entry]])
                   for entry in range(self.n_widths)]
                + self._slot_bits(self.e_offset + slots * self.n_e + np.arange(self.n_e), self.n_blocks))

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
