"""Arch dicts as index arrays (whole populations at once) and the reference's feature layouts.

The search handles populations as :class:`ArchBatch` (choice indices into the space's lists),
one int array of genes per population. A feature layout is a set of one-hot bits, each a table
lookup on a few genes (:attr:`ArchCodec.feature_terms`), which numpy and the compiled search read
alike.
An accuracy predictor's input is one of two feature layouts of the reference, so a predictor
means the same thing in both libraries; each has a name, saved with the predictor
(:func:`arch_encoder` builds it back):

``onehot``: ``MobileNetArchEncoder`` (ofa/nas/accuracy_predictor/arch_encoder.py), what our
predictors are trained on::

    [ one-hot r (len(resolutions)) |
      one-hot ks, block slot 0 .. n_blocks-1 (len(ks_list) each; all zero when the slot is skipped) |
      one-hot e,  block slot 0 .. n_blocks-1 (len(expand_ratio_list) each; zero when skipped) ]

``ofa_tutorial``: the tutorial's pretrained predictor (ofa/tutorial/accuracy_predictor.py,
``spec2feats``), 128 features for OFA-MobileNetV3's 20 block slots whatever the space's lists::

    [ one-hot ks in (3, 5, 7), 20 slots (60; zero when skipped) |
      one-hot e in (3, 4, 6), 20 slots (60; zero when skipped) |
      one-hot resolution bin (r - 112) // 16, 8 bins (112-239 px) ]
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np

from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.gather_terms import GatherTerms


class ArchBatch:
    """N archs as choice indices, all in one int array ``genes`` of columns
    ``[ks (n_blocks) | e (n_blocks) | d (n_depths) | w (n_widths) | r]``: ``ks``/``e`` per block
    slot, ``d`` a skippable stem's entry then one per stage, ``w`` width indices ((N, 0) without
    elastic width), ``r`` the resolution index. The named fields are views of those columns, so
    taking, mutating or crossing archs is one numpy operation on ``genes``. A space with one kernel
    size has ``ks`` all 0."""

    __slots__ = ("genes", "n_blocks", "n_depths", "n_widths")

    def __init__(self, ks, e, d, r, w=None):
        ks, d, r = np.asarray(ks), np.asarray(d), np.asarray(r)
        w = np.zeros((len(r), 0), np.int64) if w is None else np.asarray(w).reshape(len(r), -1)
        genes = np.concatenate([ks, np.asarray(e), d, w, r[:, None]], axis=1).astype(np.int64)
        self.genes, self.n_blocks, self.n_depths, self.n_widths = genes, ks.shape[1], d.shape[1], w.shape[1]

    @classmethod
    def from_genes(cls, genes: np.ndarray, n_blocks: int, n_depths: int, n_widths: int = 0) -> "ArchBatch":
        batch = object.__new__(cls)
        batch.genes, batch.n_blocks, batch.n_depths, batch.n_widths = genes, n_blocks, n_depths, n_widths
        return batch

    @property
    def layout(self) -> tuple:
        """``(n_blocks, n_depths, n_widths)``: what :meth:`from_genes` needs besides the genes."""
        return self.n_blocks, self.n_depths, self.n_widths

    @property
    def ks(self) -> np.ndarray:
        return self.genes[:, : self.n_blocks]

    @property
    def e(self) -> np.ndarray:
        return self.genes[:, self.n_blocks: 2 * self.n_blocks]

    @property
    def d(self) -> np.ndarray:
        start = 2 * self.n_blocks
        return self.genes[:, start: start + self.n_depths]

    @property
    def w(self) -> np.ndarray:
        start = 2 * self.n_blocks + self.n_depths
        return self.genes[:, start: start + self.n_widths]

    @property
    def r(self) -> np.ndarray:
        return self.genes[:, -1]

    def __len__(self) -> int:
        return len(self.genes)

    def like(self, genes: np.ndarray) -> "ArchBatch":
        """Archs of the same space from other ``genes`` rows."""
        return ArchBatch.from_genes(genes, *self.layout)

    def take(self, rows) -> "ArchBatch":
        """The archs at ``rows`` (an index array or boolean mask)."""
        return self.like(self.genes[rows])

    @staticmethod
    def concatenate(batches: Sequence["ArchBatch"]) -> "ArchBatch":
        return batches[0].like(np.concatenate([b.genes for b in batches]))

    def with_rows(self, rows, other: "ArchBatch") -> "ArchBatch":
        """A copy with the archs at ``rows`` replaced by ``other`` (same length as ``rows``)."""
        genes = self.genes.copy()
        genes[rows] = other.genes
        return self.like(genes)


class ArchCodec:
    """Converts between arch dicts and :class:`ArchBatch` for one space. A feature encoder
    subclasses it with a feature layout: ``name``, ``n_dim`` and ``_feature_terms()``."""

    name = ""
    n_dim = 0

    def _feature_terms(self) -> list:
        """A feature layout's one-hot bits as ``(table, gene columns)`` terms
        (`ofa_tf.nas.gather_terms.GatherTerms.build`): each term's table gives the column of its
        bit, -1 for none (a skipped slot)."""
        raise NotImplementedError(f"{type(self).__name__} defines no feature layout")

    def _slot_bits(self, columns: np.ndarray, first_gene: int) -> list:
        """Terms for one bit per block slot: slot i's bit is ``columns[i, choice]`` where gene
        ``first_gene + i`` is the choice, none where its stage's depth skips the slot."""
        return [(np.where(self.slot_runs[i][None, :], np.asarray(columns[i])[:, None], -1),
                 [first_gene + i, self.depth_columns[i]]) for i in range(self.n_blocks)]

    @functools.cached_property
    def feature_terms(self) -> GatherTerms:
        """The features as terms, which the search kernel reads too."""
        return GatherTerms.build(self._feature_terms(), np.int32)

    def encode(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_dim) float32 features: the terms' bits."""
        columns = self.feature_terms.values(batch.genes)          # (T, N)
        features = np.zeros((len(batch), self.n_dim), np.float32)
        on = columns >= 0
        features[np.broadcast_to(np.arange(len(batch)), columns.shape)[on], columns[on]] = 1.0
        return features

    def __init__(self, space: SearchSpace):
        self.space = space
        self.n_res, self.n_ks, self.n_e = len(space.resolutions), len(space.ks_list), len(space.expand_ratio_list)
        self.n_blocks, self.n_stages = space.n_blocks, space.n_stages
        self.n_depths, self.n_widths = space.n_depths, space.n_widths
        # slot -> its stage and its position in the stage (blocks needed to run it)
        self.slot_stage = np.concatenate([[s] * len(space.stage_slots(s)) for s in range(self.n_stages)])
        self.slot_position = np.concatenate([np.arange(len(space.stage_slots(s))) for s in range(self.n_stages)])
        # A depth index j means depth_list[j]; in a fixed-depth stage every index means its depth,
        # and a skippable stem's entry means what a uniform arch of that depth gives it (skip or
        # run), so sampling and mutating indices needs no knowledge of which entries are special.
        self.depth_values = np.array([space.uniform(space.ks_list[0], space.expand_ratio_list[0], d,
                                                    w=0 if space.n_widths else None)["d"]
                                      for d in space.depth_list]).T       # (n_depths, len(depth_list))
        self.stage_offset = self.n_depths - self.n_stages
        self.base_depths = np.array([stage.base_depth for stage in space.stages])
        # Whether slot i runs at its stage's depth index j (a gather instead of a chain of small
        # array operations), flat at i * n_depth_choices + j.
        n_choices = len(space.depth_list)
        stage_depths = self.depth_values[self.stage_offset + self.slot_stage]          # (n_blocks, n_choices)
        runs = self.slot_position[:, None] < self.base_depths[self.slot_stage][:, None] + stage_depths
        self.slot_runs = runs                                                            # (n_blocks, n_choices)
        self._runs = runs.ravel()
        self.depth_columns = 2 * self.n_blocks + self.stage_offset + self.slot_stage    # genes column
        self.w_columns = 2 * self.n_blocks + self.n_depths + np.arange(self.n_widths)
        self.r_column = 2 * self.n_blocks + self.n_depths + self.n_widths
        self.stem_column = 2 * self.n_blocks   # the first depth entry: a skippable stem's
        # A skippable stem's depth index -> 1 where its residual conv runs (``stem_runs``).
        self.stem_runs_at = (self.depth_values[0] == max(space.stem_depths)).astype(np.int64) \
            if space.skippable_stem else None
        self._runs_base = n_choices * np.arange(self.n_blocks)
        self._values = {"ks": np.array(space.ks_list), "e": np.array(space.expand_ratio_list),
                        "r": np.array(space.resolutions)}
        self._lists = {"ks": space.ks_list, "e": space.expand_ratio_list, "r": space.resolutions}

    # ------------------------------------------------------------ dicts <-> batch
    def to_batch(self, archs: Sequence[Mapping]) -> ArchBatch:
        """Validated arch dicts (``r`` required) as one :class:`ArchBatch`."""
        if isinstance(archs, Mapping):
            archs = [archs]
        if not len(archs):
            raise ValueError("no archs given")
        rows = [self.space.validate(a, require_resolution=True) for a in archs]
        columns = {key: np.array([[self._lists[key].index(v) for v in row[key]] for row in rows], np.int64)
                   for key in ("e", "r")}
        columns["ks"] = (np.array([[self._lists["ks"].index(v) for v in row["ks"]] for row in rows], np.int64)
                         if "ks" in self.space.arch_keys else np.zeros((len(rows), self.n_blocks), np.int64))
        columns["d"] = np.array([[list(self.depth_values[i]).index(v) for i, v in enumerate(row["d"])]
                                 for row in rows], np.int64)
        columns["w"] = np.array([row.get("w", []) for row in rows], np.int64).reshape(len(rows), self.n_widths)
        return ArchBatch(columns["ks"], columns["e"], columns["d"], columns["r"][:, 0], columns["w"])

    def to_archs(self, batch: ArchBatch) -> list[dict]:
        """Arch dicts in the reference's format (plain Python numbers)."""
        values = {key: self._values[key][getattr(batch, key)].tolist() for key in ("ks", "e", "r")}
        values["d"] = self.depths(batch).tolist()
        values["w"] = batch.w.tolist()
        return [{key: [values["r"][i]] if key == "r" else values[key][i] for key in self.space.arch_keys}
                for i in range(len(batch))]

    def depths(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_depths) int: each arch's ``d`` (a skippable stem's entry, then the stages')."""
        return self.depth_values[np.arange(self.n_depths)[None, :], batch.d]

    def stem_runs(self, batch: ArchBatch) -> np.ndarray:
        """(N,) int64: 1 where a skippable stem's residual conv runs (``d[0]`` is the larger of
        ``space.stem_depths``), else 0; also the index into ``space.stem_depths``."""
        return self.stem_runs_at[batch.d[:, 0]]

    def stage_lengths(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_stages) int: the blocks each stage runs."""
        return self.base_depths[None, :] + self.depths(batch)[:, self.stage_offset:]

    def active_mask(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_blocks) bool: which block slots each arch runs."""
        return self._runs.take(batch.genes[:, self.depth_columns] + self._runs_base)

    def arch2feature(self, arch: Mapping) -> np.ndarray:
        """One arch dict -> its feature vector (the reference's method name)."""
        return self.encode(self.to_batch([arch]))[0]


class MobileNetArchEncoder(ArchCodec):
    """The ``onehot`` features (module docstring), and back."""

    name = "onehot"

    def __init__(self, space: SearchSpace):
        super().__init__(space)
        self.ks_offset = self.n_res
        self.e_offset = self.n_res + self.n_blocks * self.n_ks
        self.n_dim = self.e_offset + self.n_blocks * self.n_e

    def _feature_terms(self) -> list:
        """The one-hot bits in the reference's layout (module docstring)."""
        slots = np.arange(self.n_blocks)[:, None]
        return ([(np.arange(self.n_res), [self.r_column])]
                + self._slot_bits(self.ks_offset + slots * self.n_ks + np.arange(self.n_ks), 0)
                + self._slot_bits(self.e_offset + slots * self.n_e + np.arange(self.n_e), self.n_blocks))

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
        starts = np.array([self.space.stage_slots(s).start for s in range(self.n_stages)])
        depth = np.add.reduceat(active.astype(np.int64), starts, axis=1)      # (N, n_stages)
        if not np.array_equal(active, self.slot_position[None, :] < depth[:, self.slot_stage]):
            raise ValueError("active block slots of a stage must come first (no gaps)")
        matches = self.depth_values[None, :, :] == depth[:, :, None]         # (N, n_stages, n_depths)
        if not matches.any(axis=2).all():
            raise ValueError(f"a stage depth is not in the space's depth_list {list(self.space.depth_list)}")
        d_ids = matches.argmax(axis=2)
        ks = np.where(active, ks_part.argmax(2), 0)
        e = np.where(active, e_part.argmax(2), 0)
        return ArchBatch(ks.astype(np.int64), e.astype(np.int64), d_ids.astype(np.int64),
                         r_part.argmax(1).astype(np.int64))

    def feature2arch(self, feature: np.ndarray) -> dict:
        """One feature vector -> an arch dict (skipped slots hold the first choice)."""
        return self.to_archs(self.decode(feature))[0]


class TutorialArchEncoder(ArchCodec):
    """The ``ofa_tutorial`` features (module docstring) of the tutorial's pretrained predictor.
    They keep a 16-px bin of the resolution, so there is no way back to an arch."""

    name = "ofa_tutorial"
    KS, E, N_SLOTS = (3, 5, 7), (3, 4, 6), 20
    R_START, R_STEP, N_R_BINS = 112, 16, 8

    def __init__(self, space: SearchSpace):
        super().__init__(space)
        problems = []
        if (space.n_stages, space.max_depth) != (5, 4):
            problems.append(f"it has {space.n_stages} stages of up to {space.max_depth} blocks, the tutorial's "
                            "features 5 stages of up to 4")
        for what, values, known in (("kernel sizes", space.ks_list, self.KS),
                                    ("expand ratios", space.expand_ratio_list, self.E)):
            if not set(values) <= set(known):
                problems.append(f"{what} {sorted(set(values) - set(known))} are not among the tutorial's {list(known)}")
        r_end = self.R_START + self.R_STEP * self.N_R_BINS
        outside = [r for r in space.resolutions if not self.R_START <= r < r_end]
        if outside:
            problems.append(f"resolutions {outside} are outside the tutorial's bins ({self.R_START}-{r_end - 1} px)")
        if problems:
            raise ValueError("the tutorial predictor's features cannot encode this search space: "
                             + "; ".join(problems))
        self.n_dim = 2 * self.N_SLOTS * len(self.KS) + self.N_R_BINS
        self._ks_column = np.array([self.KS.index(k) for k in space.ks_list])
        self._e_column = np.array([self.E.index(e) for e in space.expand_ratio_list])
        self._r_column = (np.array(space.resolutions) - self.R_START) // self.R_STEP
        # each slot's feature column for each kernel / expand choice, and each resolution's
        per_slot, slots = len(self.KS), np.arange(self.n_blocks)[:, None]
        self._ks_feature = slots * per_slot + self._ks_column[None, :]
        self._e_feature = self.N_SLOTS * per_slot + slots * per_slot + self._e_column[None, :]
        self._r_feature = 2 * self.N_SLOTS * per_slot + self._r_column

    def _feature_terms(self) -> list:
        """The bits ``spec2feats`` sets."""
        return (self._slot_bits(self._ks_feature, 0) + self._slot_bits(self._e_feature, self.n_blocks)
                + [(self._r_feature, [self.r_column])])


ENCODERS = {encoder.name: encoder for encoder in (MobileNetArchEncoder, TutorialArchEncoder)}


def register_encoder(encoder: type) -> type:
    """Make a feature encoder (an `ArchCodec` subclass) known by its ``name``."""
    ENCODERS[encoder.name] = encoder
    return encoder


# Family (SearchSpace.family) -> the name of its own feature encoding (registered in ENCODERS).
FAMILY_ENCODINGS = {"mobilenet_v3": MobileNetArchEncoder.name, "proxyless": MobileNetArchEncoder.name,
                    "resnet": "resnet_onehot"}


def arch_encoder(space: SearchSpace, name: str | None = None) -> ArchCodec:
    """The feature encoder called ``name`` for ``space``, by default its family's own
    (a ValueError when it cannot serve the space)."""
    if name is None:
        if space.family not in FAMILY_ENCODINGS:
            raise ValueError(f"no arch encoder for family {space.family!r}; known: {sorted(FAMILY_ENCODINGS)}")
        name = FAMILY_ENCODINGS[space.family]
    if name not in ENCODERS:
        raise ValueError(f"unknown arch feature encoding {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name](space)


# The ResNet features live in their own module, which registers them (it imports this one).
import ofa_tf.nas.resnet_encoding  # noqa: E402,F401
