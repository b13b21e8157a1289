"""Efficiency predictors behind one interface: MACs (analytic) and latency (lookup table).

Both costs are additive over the ops an arch runs, and each op depends only on its block
slot, its (kernel, expand) choice and the input resolution (a block's input size is fixed by
the strides before it). So a predictor is two precomputed tables,

    cost(arch) = fixed[r] + sum over active slots i of per_slot[i, ks_i, e_i, r]

held as `ofa_tf.nas.gather_terms.GatherTerms` (``cost_terms``), which numpy and the search
kernel read alike. The tables come from the existing
code, not from a second formula: MACs by differencing ``ofa_tf.arch.complexity.profile_layout`` on
archs that differ in one slot, latency from the op keys of ``ofa_tf.nas.latency_table``.
With elastic width (OFA-ResNet50D) a block's cost depends on its input width too: the
`BottleneckPredictor` tables are per width as well, filled by one walk over the layout's ops
(MACs or a table lookup per op). `macs_predictor` and `latency_predictor` pick the kind.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

import numpy as np

from ofa_tf.arch.complexity import classifier_macs, conv_macs, profile_layout
from ofa_tf.arch.layout import ActiveBottleneck, build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.encoding import ArchBatch, arch_encoder
from ofa_tf.nas.gather_terms import GatherTerms
from ofa_tf.nas.latency_table import LatencyTable, block_key, head_keys, op_keys, resnet_op_key, stem_key


def check_additive(space: SearchSpace, what: str) -> None:
    """One ValueError unless ``space``'s costs are additive as the per-slot tables hold them:
    with elastic width (OFA-ResNet50D) a block's cost depends on the width of its input too."""
    if space.width_mult_list:
        raise ValueError(f"{what} does not take spaces with elastic width (width_mult_list "
                         f"{list(space.width_mult_list)}): its per-slot tables assume a block's cost "
                         "depends on its own choices only (macs_predictor / latency_predictor pick the "
                         "per-width Bottleneck predictors for such a space)")


class PopulationCost:
    """``predict(archs) -> np.ndarray`` of costs in ``unit``; ``predict_batch`` for populations,
    from ``table_sum`` (the subclass's tables summed over each arch's ops). A NaN sum (an op the
    tables lack) is an error naming what is missing (``raise_missing``)."""

    metric = ""   # name used in constraints, e.g. "mmacs" or "latency_ms"
    unit = ""
    divisor = 1.0  # tables hold cost * divisor (exact integers for MACs)

    cost_terms: GatherTerms   # the tables, as the search kernel reads them too

    def table_sum(self, batch: ArchBatch) -> np.ndarray:
        """The tables summed over each arch's ops (cost x divisor)."""
        return self.cost_terms.total(batch.genes)

    def predict_batch(self, batch: ArchBatch) -> np.ndarray:
        costs = self.table_sum(batch) / self.divisor
        missing = np.flatnonzero(np.isnan(costs))
        if missing.size:
            self.raise_missing(self.encoder.to_archs(batch.take(missing[:1]))[0])
        return costs

    def predict(self, archs: Sequence[Mapping]) -> np.ndarray:
        """Costs of arch dicts (``r`` required), one float per arch."""
        return self.predict_batch(self.encoder.to_batch(archs))

    def get_efficiency(self, arch: Mapping) -> float:
        """One arch's cost (the reference's method name)."""
        return float(self.predict([arch])[0])

    def raise_missing(self, arch: Mapping):
        raise ValueError(f"cannot predict {self.metric} of {arch}")


class EfficiencyPredictor(PopulationCost):
    """The MBConv spaces' predictor: subclasses fill ``fixed`` (n_res,) and ``per_slot``
    (n_blocks, n_ks, n_e, n_res); entries that cannot be predicted are NaN, and
    :meth:`supported_resolutions` excludes their resolution.
    """

    def __init__(self, space: SearchSpace, fixed: np.ndarray, per_slot: np.ndarray):
        self.space = space
        self.encoder = arch_encoder(space)
        self.fixed, self.per_slot = fixed, per_slot
        # Each slot's table by (kernel, expand, its stage's depth index, resolution), 0 where that
        # depth skips the slot.
        by_depth = np.where(self.encoder.slot_runs[:, None, None, :, None], per_slot[:, :, :, None, :], 0)
        encoder, r = self.encoder, self.encoder.r_column
        self.cost_terms = GatherTerms.build(
            [(fixed, [r])] + [(by_depth[i], [i, encoder.n_blocks + i, encoder.depth_columns[i], r])
                              for i in range(space.n_blocks)], np.result_type(fixed, per_slot))

    # ------------------------------------------------------------ search support
    def supported_resolutions(self) -> tuple:
        """Resolutions at which every arch can be predicted."""
        complete = np.isfinite(self.fixed) & np.isfinite(self.per_slot).all(axis=(0, 1, 2))
        return tuple(r for r, ok in zip(self.space.resolutions, complete) if ok)

    def cheapest(self, resolutions: Sequence[int] | None = None) -> tuple[dict, float]:
        """The arch of lowest cost (exact, from the tables) and that cost."""
        resolutions = self.supported_resolutions() if resolutions is None else tuple(resolutions)
        if not resolutions:
            raise ValueError(f"no resolution has a complete {self.metric} table")
        space = self.space
        flat = self.per_slot.reshape(space.n_blocks, -1, self.per_slot.shape[-1])
        best_choice = flat.argmin(axis=1)                                    # (n_blocks, n_res)
        best_slot = flat.min(axis=1)                                         # (n_blocks, n_res)
        best_depth = np.zeros((space.n_stages, best_slot.shape[1]), np.int64)
        stages_total = np.zeros(best_slot.shape[1], best_slot.dtype)
        for s in range(space.n_stages):
            slots = space.stage_slots(s)
            # (n_depths, n_res): the stage's cost at each depth index with its cheapest choices
            prefix = np.cumsum(best_slot[slots.start:slots.stop], axis=0)[self.encoder.depth_values[s] - 1]
            best_depth[s] = prefix.argmin(axis=0)
            stages_total = stages_total + prefix.min(axis=0)
        totals = self.fixed + stages_total
        allowed = [space.resolutions.index(r) for r in resolutions]
        ri = allowed[int(np.argmin(totals[allowed]))]
        ks_ids, e_ids = np.unravel_index(best_choice[:, ri], self.per_slot.shape[1:3])
        batch = ArchBatch(ks_ids[None], e_ids[None], best_depth[:, ri][None], np.array([ri]))
        return self.encoder.to_archs(batch)[0], float(totals[ri] / self.divisor)


class MACsPredictor(EfficiencyPredictor):
    """MACs in millions, exactly as ``ofa_tf.arch.complexity.profile_arch`` counts them."""

    metric, unit, divisor = "mmacs", "MMACs", 1e6

    def __init__(self, space: SearchSpace, n_classes: int = 1000):
        check_additive(space, f"the {self.metric} predictor")
        self.n_classes = n_classes
        super().__init__(space, *_macs_tables(space, n_classes))

    def predict_macs(self, batch: ArchBatch) -> np.ndarray:
        """Exact integer MACs of a population."""
        return self.table_sum(batch)


def _macs_tables(space: SearchSpace, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables by differencing ``profile_layout``: a slot's cost is the MACs an arch gains when
    that slot is switched on (or, for a stage's first slot, switched from the first choice).

    Profiling runs on the same layout with every depth 1..max allowed, so each slot can be
    switched on alone; a fixed-depth stage's slots are always on, and cost what their choice adds
    to the first choice's."""
    relaxed = dataclasses.replace(space, depth_list=tuple(range(1, space.max_depth + 1)))
    layout = build_layout(relaxed, n_classes)
    ks_list, e_list = space.ks_list, space.expand_ratio_list
    fixed = np.zeros(len(space.resolutions), np.int64)
    per_slot = np.zeros((space.n_blocks, len(ks_list), len(e_list), len(space.resolutions)), np.int64)
    shallow = relaxed.uniform(ks_list[0], e_list[0], 1)
    for ri, r in enumerate(space.resolutions):
        def macs(arch, size=r):
            return profile_layout(layout, arch, size).macs

        fixed[ri] = macs(shallow)
        for slot in range(space.n_blocks):
            stage = next(s for s in range(space.n_stages) if slot in space.stage_slots(s))
            position = slot - space.stage_slots(stage).start
            elastic = space.stages[stage].depth is None
            before = {**shallow, "d": list(shallow["d"])}
            if elastic:
                before["d"][stage] = max(position, 1)
            reference = macs(before)
            for ki, k in enumerate(ks_list):
                for ei, e in enumerate(e_list):
                    after = {"ks": list(before["ks"]), "e": list(before["e"]), "d": list(before["d"])}
                    if elastic:
                        after["d"][stage] = position + 1
                    after["ks"][slot], after["e"][slot] = k, e
                    per_slot[slot, ki, ei, ri] = macs(after) - reference
    return fixed, per_slot


class TableLookup:
    """What both latency predictors do with a lookup table: an op's mean in the table of the
    arch's resolution, NaN (that resolution unsupported) when the table lacks it; the first
    missing key of each resolution is kept for the error and `missing_key`."""

    metric, unit = "latency_ms", "ms"

    def _lookup(self, key: str, resolution: int) -> float:
        if self.table.has(key, resolution):
            return self.table.mean(key, resolution)
        self._first_missing.setdefault(resolution, key)
        return np.nan

    def raise_missing(self, arch: Mapping):
        resolution = arch["r"][0]
        for key in op_keys(self.layout, arch):
            self.table.mean(key, resolution)  # raises, naming the resolution or the first missing key
        super().raise_missing(arch)

    def missing_key(self, resolution: int) -> str | None:
        """The first op key at ``resolution`` that the table lacks (None: complete)."""
        return self._first_missing.get(resolution)


class LatencyPredictor(TableLookup, EfficiencyPredictor):
    """Latency in ms: the sum of a lookup table's means over the ops an arch runs, from the
    table of the arch's resolution (resolutions without a complete table are unsupported)."""

    def __init__(self, table: LatencyTable, space: SearchSpace, n_classes: int = 1000):
        check_additive(space, f"the {self.metric} predictor")
        self.table, self.n_classes, self.space, self._first_missing = table, n_classes, space, {}
        self.layout = build_layout(space, n_classes)
        super().__init__(space, *self._tables())

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        space, layout = self.space, self.layout
        fixed = np.full(len(space.resolutions), np.nan)
        per_slot = np.full((space.n_blocks, len(space.ks_list), len(space.expand_ratio_list),
                            len(space.resolutions)), np.nan)
        for ri, r in enumerate(space.resolutions):
            for ki, k in enumerate(space.ks_list):
                for ei, e in enumerate(space.expand_ratio_list):
                    blocks = layout.active_blocks(space.uniform(k, e, space.max_depth), r)
                    for block in blocks[1:]:
                        per_slot[block.spec.slot, ki, ei, ri] = self._lookup(block_key(block, layout.latency_keys), r)
            keys = [stem_key(layout, r), block_key(blocks[0], layout.latency_keys)] + head_keys(layout, blocks[-1].output_size)
            fixed[ri] = sum(self._lookup(key, r) for key in keys)
        return fixed, per_slot


class BottleneckPredictor(PopulationCost):
    """A cost of a bottleneck (OFA-ResNet50D) space for whole populations: with elastic width a
    block's cost depends on its input width as well as its own, so its table is per (input width,
    output width, expand ratio, resolution)::

        cost(arch) = stem[w0, w1, stem runs, r] + classifier[w_last, r]
                     + sum over active slots i of per_slot[i, w_in(i), w_out(i), e_i, r]

    (``stem`` holds the stem convs and the max pool). The tables are filled by one walk over
    ``layout.cost_cells``; a subclass says only what one op costs (`op_cost`). A NaN cell (an
    op the subclass cannot cost) makes its resolution unsupported."""

    dtype = np.float64

    def __init__(self, space: SearchSpace, n_classes: int = 1000):
        self.space, self.n_classes = space, n_classes
        self.encoder = arch_encoder(space)
        layout = self.layout = build_layout(space, n_classes)
        n_w, n_e, n_r = len(space.width_mult_list), len(space.expand_ratio_list), len(space.resolutions)
        specs = layout.blocks
        self._in_entry = np.array([spec.in_entry for spec in specs])
        self._out_entry = np.array([spec.out_entry for spec in specs])
        tables = {"stem": np.zeros((n_w, n_w, len(space.stem_depths), n_r), self.dtype),
                  "per_slot": np.zeros((space.n_blocks, n_w, n_w, n_e, n_r), self.dtype),
                  "classifier": np.zeros((n_w, n_r), self.dtype)}
        for ri, r in enumerate(space.resolutions):
            for table, index, op, size in layout.cost_cells(r):
                tables[table][index + (ri,)] += self.op_cost(op, size, r)
        self.stem, self.per_slot, self.classifier = tables["stem"], tables["per_slot"], tables["classifier"]
        self._slots = np.arange(space.n_blocks)[None, :]
        encoder, r = self.encoder, self.encoder.r_column
        w = encoder.w_columns
        # The stem by its depth index (whether the residual conv runs), each slot by its stage's
        # depth index too (0 where it is skipped).
        by_depth = np.where(encoder.slot_runs[:, None, None, None, :, None],
                            self.per_slot[:, :, :, :, None, :], 0)
        self.cost_terms = GatherTerms.build(
            [(self.stem[:, :, encoder.stem_runs_at], [w[0], w[1], encoder.stem_column, r]),
             (self.classifier, [w[self._out_entry[-1]], r])]
            + [(by_depth[i], [w[self._in_entry[i]], w[self._out_entry[i]], space.n_blocks + i,
                              encoder.depth_columns[i], r]) for i in range(space.n_blocks)], self.dtype)

    def op_cost(self, op, input_size: int, resolution: int):
        """The cost of one op of ``layout.active_ops`` in a net of input ``resolution``."""
        raise NotImplementedError

    def supported_resolutions(self) -> tuple:
        """Resolutions at which every arch can be predicted."""
        complete = (np.isfinite(self.stem).all(axis=(0, 1, 2)) & np.isfinite(self.classifier).all(axis=0)
                    & np.isfinite(self.per_slot).all(axis=(0, 1, 2, 3)))
        return tuple(r for r, ok in zip(self.space.resolutions, complete) if ok)

    def cheapest(self, resolutions: Sequence[int] | None = None) -> tuple[dict, float]:
        """The arch of lowest cost (exact, from the tables) and that cost: for every combination
        of width indices, each slot's cheapest expand ratio, each stage's cheapest depth and the
        cheaper stem."""
        resolutions = self.supported_resolutions() if resolutions is None else tuple(resolutions)
        if not resolutions:
            raise ValueError(f"no resolution has a complete {self.metric} table")
        space, encoder = self.space, self.encoder
        ris = np.array([space.resolutions.index(r) for r in resolutions])
        widths = np.array(list(itertools.product(range(len(space.width_mult_list)), repeat=space.n_widths)))
        per_slot = self.per_slot[..., ris]                                   # (n_blocks, n_w, n_w, n_e, R)
        best_e = per_slot.argmin(axis=3)
        slot_cost = per_slot.min(axis=3)[self._slots, widths[:, self._in_entry], widths[:, self._out_entry]]
        stem = self.stem[widths[:, 0], widths[:, 1]][..., ris]              # (n_combos, runs, R)
        totals = self.classifier[widths[:, self._out_entry[-1]]][:, ris] + stem.min(axis=1)
        depth_ids = []
        for s in range(space.n_stages):
            slots = space.stage_slots(s)
            cost = slot_cost[:, slots.start: slots.stop]                    # (n_combos, stage slots, R)
            prefix = np.concatenate([np.zeros_like(cost[:, :1]), np.cumsum(cost, axis=1)], axis=1)
            lengths = encoder.base_depths[s] + encoder.depth_values[encoder.stage_offset + s]
            options = prefix[:, lengths]                                    # (n_combos, n_depth ids, R)
            depth_ids.append(options.argmin(axis=1))
            totals = totals + options.min(axis=1)
        c, ri = np.unravel_index(np.argmin(totals), totals.shape)
        stem_value = space.stem_depths[int(stem.argmin(axis=1)[c, ri])]
        stem_id = int(np.flatnonzero(encoder.depth_values[0] == stem_value)[0])
        e_ids = best_e[self._slots[0], widths[c, self._in_entry], widths[c, self._out_entry], ri]
        d_ids = [stem_id] + [int(ids[c, ri]) for ids in depth_ids]
        batch = ArchBatch(np.zeros((1, space.n_blocks), np.int64), e_ids[None], np.array([d_ids]),
                          np.array([ris[ri]]), widths[c][None])
        return self.encoder.to_archs(batch)[0], float(totals[c, ri] / self.divisor)


class BottleneckMACsPredictor(BottleneckPredictor):
    """MACs in millions of a bottleneck space, exactly as `profile_arch` counts them (convs and
    the classifier; the pools cost none), in exact integer tables."""

    metric, unit, divisor = "mmacs", "MMACs", 1e6
    dtype = np.int64

    def op_cost(self, op, input_size: int, resolution: int) -> int:
        if isinstance(op, ActiveBottleneck):
            return conv_macs(op.convs())
        if op.kind == "stem_conv":
            return conv_macs([(op.conv, input_size)])
        return classifier_macs(self.layout, op.channels) if op.kind == "classifier" else 0

    def predict_macs(self, batch: ArchBatch) -> np.ndarray:
        """Exact integer MACs of a population."""
        return self.table_sum(batch)


class BottleneckLatencyPredictor(TableLookup, BottleneckPredictor):
    """Latency in ms of a bottleneck space: the sum of a lookup table's means over the ops an
    arch runs (`ofa_tf.nas.latency_table.op_keys`), from the table of the arch's resolution."""

    def __init__(self, table: LatencyTable, space: SearchSpace, n_classes: int = 1000):
        self.table, self._first_missing = table, {}
        super().__init__(space, n_classes)

    def op_cost(self, op, input_size: int, resolution: int) -> float:
        return self._lookup(resnet_op_key(self.layout, op, input_size), resolution)


def macs_predictor(space: SearchSpace, n_classes: int = 1000):
    """The MACs predictor of ``space``: the per-slot tables, or per width too with elastic width."""
    return (BottleneckMACsPredictor if space.width_mult_list else MACsPredictor)(space, n_classes)


def latency_predictor(table: LatencyTable, space: SearchSpace, n_classes: int = 1000):
    """The latency predictor of ``space`` on ``table``: per slot, or per width too with elastic width."""
    return (BottleneckLatencyPredictor if space.width_mult_list else LatencyPredictor)(table, space, n_classes)
