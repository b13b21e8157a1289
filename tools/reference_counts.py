"""Print MACs and params of a preset's subnets next to the reference's own counters.

    python tools/reference_counts.py --space proxyless_w1.3

For the largest, smallest and middle subnet at 224 / 192 / 128 px and 5 random subnets, the
table holds our exact count (`ofa_tf.arch.complexity`), the reference's ``count_net_flops`` and
``count_parameters`` on ``get_active_subnet()`` of its supernet (installed ``ofa`` package, 1000
classes), and whether they agree. ``count_net_flops`` adds per-layer float32 counts in float32, so
at 1e9 MACs it can be a few ulps (64 MACs each) off the exact integer; the ``match`` column
compares it with our per-layer counts added the same way.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def float32_total(counts) -> float:
    total = np.float32(0)
    for _, macs, _ in counts:
        total = np.float32(total + np.float32(macs))
    return float(total)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="proxyless_w1.3", help="a search space preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from ofa_tf.arch.complexity import layer_counts
    from ofa_tf.arch.layout import build_layout
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.interop.reference_mapping import REFERENCE_CLASSES, REFERENCE_SPACES
    from ofa_tf.interop.reference_package import import_reference

    try:
        space = SearchSpace.preset(args.space)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if space.width_mult_list:
        print(f"error: --space={args.space} has elastic widths; this tool compares the MBConv spaces "
              "(tests/test_resnet.py compares OFA-ResNet50D's counts)", file=sys.stderr)
        return 2
    as_reference = REFERENCE_SPACES[space.family](space.width_mult, space.ks_list, space.expand_ratio_list,
                                                  space.depth_list, space.resolutions)
    if space != as_reference:
        print(f"error: --space={args.space} is not a space the reference builds (its stage table or head "
              "differs from the reference's at that width)", file=sys.stderr)
        return 2
    networks = import_reference("ofa.imagenet_classification.elastic_nn.networks")
    utils = import_reference("ofa.utils")
    ref = getattr(networks, REFERENCE_CLASSES[space.family])(
        n_classes=1000, width_mult=space.width_mult, ks_list=list(space.ks_list),
        expand_ratio_list=list(space.expand_ratio_list), depth_list=list(space.depth_list))
    layout = build_layout(space)
    middle = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    rng = np.random.default_rng(args.seed)
    cases = [(name, arch, r) for name, arch in (
        ("largest", space.largest()), ("smallest", space.smallest()),
        ("middle", space.uniform(middle(space.ks_list), middle(space.expand_ratio_list), middle(space.depth_list))))
        for r in (224, 192, 128)]
    cases += [(f"random {i + 1}", arch, arch["r"][0]) for i, arch in enumerate(space.sample(rng) for _ in range(5))]
    print("| subnet | resolution | MACs (ours, exact) | count_net_flops | params (ours) | count_parameters | match |")
    print("|---|---|---|---|---|---|---|")
    for name, arch, r in cases:
        ref.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        subnet = ref.get_active_subnet()
        counts = layer_counts(layout, arch, r)
        macs, params = sum(c[1] for c in counts), sum(c[2] for c in counts)
        flops, ref_params = utils.count_net_flops(subnet, (1, 3, r, r)), utils.count_parameters(subnet)
        match = float32_total(counts) == flops and params == ref_params
        print(f"| {name} | {r} | {macs:,} | {int(flops):,} | {params:,} | {ref_params:,} | {'yes' if match else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
