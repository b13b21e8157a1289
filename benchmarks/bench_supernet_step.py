"""Train-step time of elastic subnets vs each other and vs the extracted static model.

Measured side by side in one process on the full OFA-MBv3 w1.0 space, batch 32:
  * smallest subnet @128 / largest subnet @224 (target <= 0.1): a small subnet must cost less;
  * supernet at max @224 / extracted static model @224 (target <= 1.15): elasticity must be cheap.
A train step is forward + gradient + one update of the reference's optimizer
(SGD, Nesterov momentum 0.9, L2 3e-5 except BN and biases). Variants take turns
round by round (so drift in machine load hits all alike); each turn runs ``--block``
steps of one variant. "steady" is the median over the steps after the first of a
turn; "after switch" is the median of first steps, which pay for the change of
subnet (caches and allocator warmed by the other variant).

    python benchmarks/bench_supernet_step.py [--batch 32] [--rounds 5] [--block 3] [--threads 2]
"""

import argparse
import os
import statistics
import time

from ofa_tf.allocator import active_allocator, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before TensorFlow loads; OFA_TF_ALLOCATOR=system opts out
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ofa_tf.arch.complexity import profile_arch  # noqa: E402
from ofa_tf.networks import OFAMobileNetV3  # noqa: E402
from ofa_tf.training import ReferenceSGD  # noqa: E402


def make_step(model, update=True):
    """A compiled step; with ``update=False`` it stops after the gradient (all
    gradients are reduced into the output so none of them is pruned away)."""
    optimizer = ReferenceSGD(0.01, momentum=0.9, nesterov=True, l2_decay=3e-5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        if update:
            optimizer.apply(grads, model.trainable_variables)
            return loss
        return loss + 0.0 * tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])

    return lambda x, y: float(step(x, y)), step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=3, help="steps per turn (>= 2)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # four step functions from one def trip TF's retracing warning
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    net = OFAMobileNetV3(n_classes=1000, width_mult=1.0)
    space = net.space
    largest, smallest = space.largest(224), space.smallest(128)
    net.set_active_subnet(**largest)
    static = net.get_active_subnet(image_size=224)
    super_step, super_fn = make_step(net)
    static_step, _ = make_step(static)
    super_grad, _ = make_step(net, update=False)
    static_grad, _ = make_step(static, update=False)
    rng = np.random.default_rng(0)
    data = {r: (rng.uniform(-1, 1, (args.batch, r, r, 3)).astype(np.float32),
                rng.integers(0, 1000, args.batch)) for r in (128, 224)}
    big, small = (lambda: net.set_active_subnet(**largest)), (lambda: net.set_active_subnet(**smallest))
    variants = {
        "supernet largest @224": (lambda: super_step(*data[224]), big),
        "supernet smallest @128": (lambda: super_step(*data[128]), small),
        "static largest @224": (lambda: static_step(*data[224]), None),
        "fwd+grad supernet largest @224": (lambda: super_grad(*data[224]), big),
        "fwd+grad supernet smallest @128": (lambda: super_grad(*data[128]), small),
        "fwd+grad static largest @224": (lambda: static_grad(*data[224]), None),
    }
    if args.block < 2:
        parser.error("--block must be >= 2")
    steady = {name: [] for name in variants}
    switch = {name: [] for name in variants}
    for r in range(args.warmup + args.rounds):
        for name, (run, activate) in variants.items():
            if activate:
                activate()
            for i in range(args.block):
                start = time.perf_counter()
                run()
                if r >= args.warmup:
                    (switch if i == 0 else steady)[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in steady.items()}
    med_switch = {name: statistics.median(t) for name, t in switch.items()}
    macs = {"largest": profile_arch(largest, space).macs, "smallest": profile_arch(smallest, space).macs}
    print(f"OFA-MBv3 w1.0, batch {args.batch}, {args.threads} threads, {args.rounds} rounds x "
          f"{args.block} steps, allocator: {active_allocator()}")
    print(f"  {'variant':<32s} {'steady ms':>10s} {'img/s':>7s} {'after switch ms':>16s}")
    for name, value in med.items():
        print(f"  {name:<32s} {value * 1000:10.1f} {args.batch / value:7.1f} {med_switch[name] * 1000:16.1f}")
    print(f"  MACs ratio smallest@128 / largest@224: {macs['smallest'] / macs['largest']:.3f}")
    for prefix, what in (("", "train step (fwd + grad + update)"), ("fwd+grad ", "fwd + grad")):
        for label, table in (("steady", med), ("after switch", med_switch)):
            ratio_small = table[prefix + "supernet smallest @128"] / table[prefix + "supernet largest @224"]
            ratio_static = table[prefix + "supernet largest @224"] / table[prefix + "static largest @224"]
            print(f"  {what}, {label}: smallest@128 / largest@224 = {ratio_small:.3f} (target <= 0.1), "
                  f"supernet max / static = {ratio_static:.3f} (target <= 1.15)")
    print(f"  supernet train-step traces: {super_fn.experimental_get_tracing_count()}")


if __name__ == "__main__":
    main()
