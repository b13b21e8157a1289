"""A tour of the supernet: build it, sample subnets, print their MACs and params,
and check that an extracted subnet computes what the supernet computes.

    python -m ofa_tf.demo [--space=mbv3_w1.0] [--n=8] [--seed=0]

The main job is training (python -m ofa_tf.train); this tour needs no data and no training.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.arch.complexity import profile_arch  # noqa: E402
from ofa_tf.arch.space import PRESETS, SearchSpace  # noqa: E402
from ofa_tf.networks import family_of  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none)."""
    from ofa_tf import cli_flags

    cli_flags.define_seed_flag("Seed of the subnet sampler.")
    flags.DEFINE_enum("space", "mbv3_w1.0", list(PRESETS), "Search space preset.")
    flags.DEFINE_integer("n", 8, "Number of random subnets to sample.", lower_bound=0)
    flags.DEFINE_integer("n_classes", 1000, "Classifier width.", lower_bound=1)


def describe(arch, space) -> str:
    slots = space.active_slots(arch)
    ks = "".join(str(arch["ks"][i]) for i in slots)
    e = "".join(str(arch["e"][i]) for i in slots)
    return f"r={arch['r'][0]:<3d} d={''.join(map(str, arch['d']))} ks={ks:<20s} e={e:<20s}"


def main(argv):
    del argv
    space = SearchSpace.preset(FLAGS.space)
    print(f"search space {FLAGS.space}: {space.count():.3e} subnets "
          f"({space.count(include_resolution=True):.3e} with {len(space.resolutions)} resolutions)")
    net = family_of(space).supernet_class(n_classes=FLAGS.n_classes, space=space, seed=FLAGS.seed)
    print(f"supernet: {net.count_params() / 1e6:.2f} M weights")
    rng = np.random.default_rng(FLAGS.seed)
    rows = [("largest", space.largest()), ("smallest", space.smallest())]
    rows += [(f"sample {i}", space.sample(rng)) for i in range(FLAGS.n)]
    print(f"{'':10s} {'arch':<70s} {'MMACs':>8s} {'Mparams':>8s}")
    for name, arch in rows:
        p = profile_arch(arch, space, n_classes=FLAGS.n_classes)
        print(f"{name:10s} {describe(arch, space):<70s} {p.mmacs:8.1f} {p.mparams:8.2f}")
    arch = rows[-1][1]
    net.set_active_subnet(**arch)
    size = arch["r"][0]
    sub = net.get_active_subnet(image_size=size)
    x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    delta = np.abs(sub(x, training=False).numpy() - net(x, training=False).numpy()).max()
    print(f"extracted '{rows[-1][0]}' as a plain Keras model with {len(sub.layers)} layers; "
          f"max |logit difference| vs the supernet: {delta:.1e}")
    return 0 if delta <= 1e-4 else 1


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
