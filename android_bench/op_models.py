"""Every distinct op a search space can run, keyed as the latency table keys it.

A block's input size depends only on the resolution and its stage (the kernel size does not
change a stride's output size, and depth only drops blocks after a stage's first), so walking
the uniform archs of every (kernel, expand) choice at full depth visits each op an MBConv space
can produce. A bottleneck (ResNet) space's ops also depend on the widths around them; its
layout's ``cost_cells`` (the walk its latency predictor sums) lists each one. Keys come from
``ofa_tf.nas.latency_table`` (the predictor's own key functions), and each op's Keras model from
the family's ``build_op_model`` (the subnet builder's code).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ofa_tf.arch.layout import ActiveBlock, Layout, ResNetLayout
from ofa_tf.nas.latency_table import block_key, head_ops, resnet_op_key, stem_key
from ofa_tf.networks import family_of


@dataclasses.dataclass(frozen=True)
class TableOp:
    """One lookup-table entry to measure: its key and the op it times."""

    key: str
    op: object          # an ActiveBlock or one of ofa_tf.networks.static.HEAD_OPS; for a ResNetLayout an
    #                     ActiveBottleneck or a ResNetPart
    input_size: int

    def build_model(self, layout: Layout):
        """The op as a Keras model with a batch of 1 (what the phone runs)."""
        return family_of(layout.space).build_op_model(layout, self.op, self.input_size, batch_size=1)


def table_ops(layout: Layout, resolutions: Sequence[int]) -> list[TableOp]:
    """The distinct ops of ``layout``'s space at ``resolutions``, in network order per resolution."""
    space, found = layout.space, {}

    def add(key, op, input_size):
        found.setdefault(key, TableOp(key, op, input_size))

    for r in resolutions:
        space.check_resolution(r)
        if isinstance(layout, ResNetLayout):
            for _, _, op, size in layout.cost_cells(r):
                add(resnet_op_key(layout, op, size), op, size)
            continue
        add(stem_key(layout, r), "stem", r)
        blocks: list[ActiveBlock] = []
        for k in space.ks_list:
            for e in space.expand_ratio_list:
                blocks += layout.active_blocks(space.uniform(k, e, space.max_depth), r)
        for block in sorted(blocks, key=lambda b: b.spec.index):
            add(block_key(block, layout.latency_keys), block, block.input_size)
        for key, op, size in head_ops(layout, blocks[-1].output_size):
            add(key, op, size)
    return list(found.values())
