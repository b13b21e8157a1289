"""Arch dicts as index arrays (whole populations at once) and the reference's one-hot features.

The search handles populations as :class:`ArchBatch` (choice indices into the space's lists),
so sampling, mutation, costs and predictions are numpy operations over all archs together.
The feature vector is the reference's ``MobileNetArchEncoder`` layout (ofa/nas/accuracy_predictor/
arch_encoder.py), so a predictor's input means the same thing in both libraries::

    [ one-hot r (len(resolutions)) |
      one-hot ks, block slot 0 .. n_blocks-1 (len(ks_list) each; all zero when the slot is skipped) |
      one-hot e,  block slot 0 .. n_blocks-1 (len(expand_ratio_list) each; zero when skipped) ]
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from ofa_tf.arch.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class ArchBatch:
    """N archs as choice indices: ``ks``/``e`` (N, n_blocks), ``d`` (N, n_stages), ``r`` (N,)."""

    ks: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray

    def __len__(self) -> int:
        return len(self.r)

    def take(self, rows) -> "ArchBatch":
        """The archs at ``rows`` (an index array or boolean mask)."""
        return ArchBatch(self.ks[rows], self.e[rows], self.d[rows], self.r[rows])

    @staticmethod
    def concatenate(batches: Sequence["ArchBatch"]) -> "ArchBatch":
        return ArchBatch(*(np.concatenate([getattr(b, f) for b in batches])
                           for f in ("ks", "e", "d", "r")))

    def with_rows(self, rows, other: "ArchBatch") -> "ArchBatch":
        """A copy with the archs at ``rows`` replaced by ``other`` (same length as ``rows``)."""
        out = {f: getattr(self, f).copy() for f in ("ks", "e", "d", "r")}
        for f in out:
            out[f][rows] = getattr(other, f)
        return ArchBatch(**out)


class MobileNetArchEncoder:
    """Converts between arch dicts, :class:`ArchBatch` and feature vectors for one space."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.n_res, self.n_ks, self.n_e = len(space.resolutions), len(space.ks_list), len(space.expand_ratio_list)
        self.n_blocks, self.n_stages = space.n_blocks, space.n_stages
        self.ks_offset = self.n_res
        self.e_offset = self.n_res + self.n_blocks * self.n_ks
        self.n_dim = self.e_offset + self.n_blocks * self.n_e
        # slot -> its stage and its position in the stage (depth needed to run it)
        self.slot_stage = np.repeat(np.arange(self.n_stages), space.max_depth)
        self.slot_position = np.tile(np.arange(space.max_depth), self.n_stages)
        self._values = {"ks": np.array(space.ks_list), "e": np.array(space.expand_ratio_list),
                        "d": np.array(space.depth_list), "r": np.array(space.resolutions)}
        self._lists = {"ks": space.ks_list, "e": space.expand_ratio_list, "d": space.depth_list,
                       "r": space.resolutions}

    # ------------------------------------------------------------ dicts <-> batch
    def to_batch(self, archs: Sequence[Mapping]) -> ArchBatch:
        """Validated arch dicts (``r`` required) as one :class:`ArchBatch`."""
        if isinstance(archs, Mapping):
            archs = [archs]
        if not len(archs):
            raise ValueError("no archs given")
        rows = [self.space.validate(a, require_resolution=True) for a in archs]
        columns = {key: np.array([[self._lists[key].index(v) for v in row[key]] for row in rows], np.int64)
                   for key in ("ks", "e", "d", "r")}
        return ArchBatch(columns["ks"], columns["e"], columns["d"], columns["r"][:, 0])

    def to_archs(self, batch: ArchBatch) -> list[dict]:
        """Arch dicts in the reference's format (plain Python numbers)."""
        values = {key: self._values[key][getattr(batch, key)].tolist() for key in ("ks", "e", "d", "r")}
        return [{"ks": values["ks"][i], "e": values["e"][i], "d": values["d"][i], "r": [values["r"][i]]}
                for i in range(len(batch))]

    def active_mask(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_blocks) bool: which block slots each arch runs."""
        depth = self._values["d"][batch.d]                              # (N, n_stages)
        return self.slot_position[None, :] < depth[:, self.slot_stage]

    # ------------------------------------------------------------ features
    def encode(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_dim) float32 one-hot features in the reference's layout (module docstring)."""
        n = len(batch)
        features = np.zeros((n, self.n_dim), np.float32)
        rows = np.arange(n)
        features[rows, batch.r] = 1.0
        active = self.active_mask(batch)
        slots = np.arange(self.n_blocks)[None, :]
        row_grid = np.broadcast_to(rows[:, None], active.shape)
        features[row_grid[active], (self.ks_offset + slots * self.n_ks + batch.ks)[active]] = 1.0
        features[row_grid[active], (self.e_offset + slots * self.n_e + batch.e)[active]] = 1.0
        return features

    def decode(self, features: np.ndarray) -> ArchBatch:
        """The inverse of :meth:`encode`; skipped slots come back as the first choice (index 0).

        Raises ValueError when a row is not a valid encoding (e.g. a gap inside a stage)."""
        features = np.atleast_2d(np.asarray(features))
        if features.shape[1] != self.n_dim:
            raise ValueError(f"features have {features.shape[1]} columns; this space encodes to {self.n_dim}")
        r_part = features[:, : self.n_res]
        ks_part = features[:, self.ks_offset: self.e_offset].reshape(-1, self.n_blocks, self.n_ks)
        e_part = features[:, self.e_offset:].reshape(-1, self.n_blocks, self.n_e)
        if not np.all(r_part.sum(1) == 1):
            raise ValueError("every feature row needs exactly one resolution bit")
        active = ks_part.sum(2) == 1
        if not np.array_equal(active, e_part.sum(2) == 1):
            raise ValueError("a block slot has a kernel size bit but no expand ratio bit (or the reverse)")
        per_stage = active.reshape(-1, self.n_stages, self.space.max_depth)
        depth = per_stage.sum(2)
        prefix = np.arange(self.space.max_depth)[None, None, :] < depth[:, :, None]
        if not np.array_equal(per_stage, prefix):
            raise ValueError("active block slots of a stage must come first (no gaps)")
        d_ids = np.searchsorted(self._values["d"], depth)
        if np.any(d_ids >= len(self._values["d"])) or np.any(self._values["d"][np.minimum(
                d_ids, len(self._values["d"]) - 1)] != depth):
            raise ValueError(f"a stage depth is not in the space's depth_list {list(self.space.depth_list)}")
        ks = np.where(active, ks_part.argmax(2), 0)
        e = np.where(active, e_part.argmax(2), 0)
        return ArchBatch(ks.astype(np.int64), e.astype(np.int64), d_ids.astype(np.int64),
                         r_part.argmax(1).astype(np.int64))

    def arch2feature(self, arch: Mapping) -> np.ndarray:
        """One arch dict -> its feature vector (the reference's method name)."""
        return self.encode(self.to_batch([arch]))[0]

    def feature2arch(self, feature: np.ndarray) -> dict:
        """One feature vector -> an arch dict (skipped slots hold the first choice)."""
        return self.to_archs(self.decode(feature))[0]


# Family (SearchSpace.family) -> its arch encoder; a family whose archs have other fields
# (e.g. ResNet's per-stage width) registers its own.
ARCH_ENCODERS = {"mobilenet_v3": MobileNetArchEncoder}


def arch_encoder(space: SearchSpace):
    """The arch encoder of ``space``'s family."""
    if space.family not in ARCH_ENCODERS:
        raise ValueError(f"no arch encoder for family {space.family!r}; known: {sorted(ARCH_ENCODERS)}")
    return ARCH_ENCODERS[space.family](space)
