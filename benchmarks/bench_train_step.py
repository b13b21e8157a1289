"""Throughput of the progressive-shrinking train step (`OFATrainer`, as `model.fit` runs it).

Full OFA-MBv3 w1.0 space (``--spaces`` adds e.g. resnet50d), 1000 classes, batch 32, 2 threads,
the reference's optimizer:
  * images/s for the largest subnet @224 and the smallest @128 of each space, and the same for
    the PyTorch reference's own train step on its own supernet class measured in the same run,
    taking turns with ours (``--no_reference`` skips it; it needs torch and the ``ofa`` package);
  * per space, the smallest/largest step-time ratio next to their MACs ratio;
  * the trace count of the train function over a run of mixed subnets and resolutions
    (kernel/expand/depth sampled per step, resolution 128-224 sampled per batch).
The fixed-subnet variants take turns (``--block`` steps each, ``--rounds`` rounds) so that
machine drift hits all alike; each block starts with one step that is not counted, ours and the
reference's alike (a ``fit`` call's start-up lands on its first batch, 60-190 ms for the
smallest MBv3 subnet, and both sides' first step after a switch runs on the other variant's
caches); a step is one step of ``model.fit``, timed by a callback.
``--op_profile`` adds, per float32 subnet, where its step's time goes by op group
(`op_profile`): the convolution and batch-norm kernels against slicing and the update, and per
space the kernels-only smallest/largest ratio, the best step-time ratio these kernels allow.
``--precisions`` adds the same two subnets trained under other Keras mixed-precision policies
(one supernet per policy), ``--jit`` the float32 ones with the forward and backward pass
XLA-compiled (`OFATrainer(jit_compile=True)`; its compile time is reported apart). Each row's
ratio is against float32 without XLA, measured in the same run.

    python benchmarks/bench_train_step.py [--batch 32] [--rounds 4] [--block 3] [--mixed_steps 50]
    python benchmarks/bench_train_step.py --precisions float32,mixed_bfloat16 --jit --mixed_steps 0
    python benchmarks/bench_train_step.py --spaces mbv3_w1.0,resnet50d --mixed_steps 0 --op_profile
"""

import argparse
import dataclasses
import json
import os
import statistics
import time

from ofa_tf.allocator import active_allocator, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before TensorFlow loads; OFA_TF_ALLOCATOR=system opts out
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ofa_tf.interop.reference_package import import_reference  # noqa: E402
from op_profile import GROUPS, grouped, op_times  # noqa: E402
from ofa_tf.arch.complexity import profile_arch  # noqa: E402
from ofa_tf.arch.space import SearchSpace  # noqa: E402
from ofa_tf.networks import family_of  # noqa: E402
from ofa_tf.training import OFATrainer, Phase, ReferenceSGD, progressive_shrinking_phases  # noqa: E402
from ofa_tf.training.config import PRECISIONS  # noqa: E402
from ofa_tf.training.precision import dtype_policy, optimizer_for  # noqa: E402

SUBNETS = {"largest @224": ("largest", 224), "smallest @128": ("smallest", 128)}
# The reference's supernet class of each family, with the released choice lists.
REFERENCE_CLASSES = {"mobilenet_v3": "OFAMobileNetV3", "resnet": "OFAResNets"}


class ReferenceTrainStep:
    """The reference's train step on one subnet, as ``progressive_shrinking.train_one_epoch``
    runs it with KD off and one subnet per step: ``set_active_subnet``, ``zero_grad``, forward,
    label-smoothed cross entropy (0.1), backward, ``optimizer.step()``. The ``ofa`` package's
    torch ``OFAMobileNetV3`` (CPU) and its ``build_optimizer`` (SGD, Nesterov momentum 0.9, weight
    decay 3e-5 except BN parameters and biases), as our step's `ReferenceSGD` settings. The batch
    arrives at the subnet's resolution (no resize, which our step does)."""

    def __init__(self, net, arch, size, batch, seed=0):
        import torch
        utils = import_reference("ofa.utils")
        self.torch, self.net = torch, net
        self.arch = {key: value for key, value in arch.items() if key != "r"}
        keys = ["bn", "bias"]
        groups = [list(net.get_parameters(keys, mode="exclude")), list(net.get_parameters(keys, mode="include"))]
        self.optimizer = utils.build_optimizer(groups, "sgd", {"momentum": 0.9, "nesterov": True}, 0.01, 3e-5,
                                               "bn#bias")
        self.criterion = utils.cross_entropy_with_label_smoothing
        rng = np.random.default_rng(seed)
        self.images = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
        self.labels = torch.from_numpy(rng.integers(0, 1000, batch).astype(np.int64))

    def run(self, steps):
        times = []
        self.net.train()
        for _ in range(steps):
            start = time.perf_counter()
            self.net.set_active_subnet(**self.arch)
            self.net.zero_grad()
            loss = self.criterion(self.net(self.images), self.labels, label_smoothing=0.1)
            loss.backward()
            self.optimizer.step()
            times.append(time.perf_counter() - start)
        return times


def reference_supernet(space: SearchSpace):
    """The reference's torch supernet of ``space`` (1000 classes, no dropout)."""
    import torch
    torch.manual_seed(0)
    networks = import_reference("ofa.imagenet_classification.elastic_nn.networks")
    supernet_class = getattr(networks, REFERENCE_CLASSES[space.family])
    lists = {"depth_list": list(space.depth_list), "expand_ratio_list": list(space.expand_ratio_list)}
    if space.family == "resnet":   # elastic widths, fixed kernel
        lists["width_mult_list"] = list(space.width_mult_list)
    else:
        lists.update(width_mult=space.width_mult, ks_list=list(space.ks_list))
    return supernet_class(n_classes=1000, dropout_rate=0, **lists)


def fixed_phase(name, space, corner):
    """A one-subnet phase (nothing sampled) training ``space``'s largest or smallest subnet
    through the real train step."""
    pick = max if corner == "largest" else min
    width = (len(space.width_mult_list) - 1 if corner == "largest" else 0,) if space.width_mult_list else ()
    return Phase(name, (pick(space.ks_list),), (pick(space.expand_ratio_list),), (pick(space.depth_list),),
                 1, 1, 0.01, 0, False, None, width)


def trainer_for(net, phase, resolutions, seed=0, precision="float32", jit=False):
    trainer = OFATrainer(net, phase, kd_ratio=0.0, resolutions=resolutions, seed=seed, jit_compile=jit)
    optimizer = ReferenceSGD(0.01, momentum=0.9, nesterov=True, l2_decay=3e-5)
    trainer.compile(optimizer=optimizer_for(optimizer, precision), jit_compile=False)
    return trainer


class StepTimer(keras.callbacks.Callback):
    """Wall time of each train step as `fit` runs it."""

    def __init__(self):
        super().__init__()
        self.times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def run_steps(trainer, data, steps):
    """``steps`` steps through ``model.fit`` (as training runs them); returns their times."""
    timer = StepTimer()
    trainer.fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return timer.times


def batches(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 1000, batch).astype(np.int32)
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def run_mixed(net, args):
    """Mixed subnets and resolutions: the full space sampled every step, one subnet per step.
    Returns (seconds, distinct subnets seen, traces of the train step)."""
    space = net.space
    full = list(progressive_shrinking_phases(space).values())[-1]   # every choice open
    mixed_phase = dataclasses.replace(full, name="mixed", dynamic_batch_size=1, use_kd=False, sort_channels=None)
    mixed = trainer_for(net, mixed_phase, space.resolutions, seed=1)
    data = batches(args.batch, max(space.resolutions))
    seen = set()

    class RecordArch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.add(json.dumps(net.get_active_arch(), sort_keys=True))

    start = time.perf_counter()
    mixed.fit(data, epochs=1, steps_per_epoch=args.mixed_steps, callbacks=[RecordArch()], verbose=0,
              shuffle=False)
    return time.perf_counter() - start, len(seen), mixed.trace_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    parser.add_argument("--mixed_steps", type=int, default=50, help="steps over the whole first space (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spaces", default="mbv3_w1.0",
                        help="comma-separated presets (supernets with 1000 classes), e.g. mbv3_w1.0,resnet50d")
    parser.add_argument("--precisions", default="float32",
                        help=f"comma-separated, from {','.join(PRECISIONS)}; float32 always runs")
    parser.add_argument("--jit", action="store_true", help="also the float32 subnets with XLA")
    parser.add_argument("--op_profile", action="store_true",
                        help="also profile each float32 subnet's step by op group (TensorFlow profiler)")
    parser.add_argument("--no_reference", action="store_true",
                        help="skip the PyTorch reference's train step (needs torch and the ofa package)")
    args = parser.parse_args()
    precisions = ["float32"] + [p for p in args.precisions.split(",") if p and p != "float32"]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        parser.error(f"--precisions: {bad} not among {list(PRECISIONS)}")
    try:
        spaces = {name: SearchSpace.preset(name) for name in args.spaces.split(",") if name}
    except ValueError as err:
        parser.error(f"--spaces: {err}")
    if not spaces:
        parser.error("--spaces names no preset")
    if not args.no_reference:
        unsupported = [n for n, sp in spaces.items() if sp.family not in REFERENCE_CLASSES]
        if unsupported:
            parser.error(f"--spaces {unsupported}: no reference supernet class here; pass --no_reference")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if not args.no_reference:
        import torch
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)

    modes = [(p, False) for p in precisions] + ([("float32", True)] if args.jit else [])
    runs = {}        # (space, subnet, precision, jit) -> (net, trainer, data, arch)
    reference = {}   # (space, subnet) -> ReferenceTrainStep
    mmacs = {}       # (space, subnet) -> MMACs at its resolution
    mixed_net = None
    for space_name, space in spaces.items():
        nets = {}
        for precision in precisions:
            with dtype_policy(precision):
                nets[precision] = family_of(space).supernet_class(space=space, n_classes=1000)
        mixed_net = mixed_net or nets["float32"]
        torch_net = None if args.no_reference else reference_supernet(space)
        if torch_net is not None:
            theirs = sum(p.numel() for p in torch_net.parameters())
            ours = sum(int(np.prod(v.shape)) for v in nets["float32"].trainable_weights)
            if theirs != ours:   # e.g. a tiny preset: the reference's class has the released widths
                parser.error(f"--spaces {space_name}: the reference's {type(torch_net).__name__} has {theirs:,} "
                             f"parameters, ours {ours:,}; pass --no_reference")
        for name, (corner, size) in SUBNETS.items():
            phase = fixed_phase(name.split()[0], space, corner)
            arch = phase.largest_arch(space)
            mmacs[space_name, name] = profile_arch({**arch, "r": [size]}, space, n_classes=1000).mmacs
            for precision, jit in modes:
                trainer = trainer_for(nets[precision], phase, (size,), precision=precision, jit=jit)
                runs[space_name, name, precision, jit] = (nets[precision], trainer, batches(args.batch, size), arch)
            if torch_net is not None:
                reference[space_name, name] = ReferenceTrainStep(torch_net, arch, size, args.batch)
    times = {key: [] for key in runs}
    reference_times = {key: [] for key in reference}
    first = {}   # the first step of each variant: trace (and XLA compile)
    for r in range(args.warmup + args.rounds):
        for key, step in reference.items():
            steps = step.run(args.block + 1)
            print(f"  round {r}: {key[0]} {key[1]} reference (torch): "
                  + " ".join(f"{t * 1000:.0f}" for t in steps) + " ms", flush=True)
            if r >= args.warmup:
                reference_times[key].extend(steps[1:])
        for key, (variant_net, trainer, data, arch) in runs.items():
            variant_net.set_active_subnet(**arch)
            steps = run_steps(trainer, data, args.block + 1)
            first.setdefault(key, steps[0])
            print(f"  round {r}: {key[0]} {key[1]} {key[2]}{' xla' if key[3] else ''}: "
                  + " ".join(f"{t * 1000:.0f}" for t in steps) + " ms", flush=True)
            if r >= args.warmup:
                times[key].extend(steps[1:])

    profiles = {}   # (space, subnet) -> {op group: ms per step}
    if args.op_profile:
        for (space_name, name, precision, jit), (variant_net, trainer, data, arch) in runs.items():
            if precision == "float32" and not jit:
                variant_net.set_active_subnet(**arch)
                profiles[space_name, name] = grouped(op_times(lambda: run_steps(trainer, data, 1), args.block))

    mixed = run_mixed(mixed_net, args) if args.mixed_steps else None
    traces = {" ".join(map(str, key[:3])) + (" xla" if key[3] else ""): run[1].trace_count
              for key, run in runs.items()}

    print(f"1000 classes, batch {args.batch}, {args.threads} threads, {args.rounds} rounds x {args.block} steps "
          f"(+1 uncounted a block), "
          f"allocator: {active_allocator()}, load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  {'space':<10s} {'subnet':<14s} {'precision':<15s} {'xla':<4s} {'median ms':>10s} {'img/s':>7s} "
          f"{'vs float32':>10s} {'first step s':>12s} {'reference img/s':>16s} {'ratio':>6s}")
    for (space_name, name, precision, jit), t in times.items():
        med = statistics.median(t)
        base = statistics.median(times[space_name, name, "float32", False])
        ips = args.batch / med
        line = (f"  {space_name:<10s} {name:<14s} {precision:<15s} {'yes' if jit else 'no':<4s} {med * 1000:10.1f} "
                f"{ips:7.1f} {base / med:9.2f}x {first[space_name, name, precision, jit]:12.1f}")
        if (space_name, name) in reference_times:
            ref = args.batch / statistics.median(reference_times[space_name, name])
            line += f" {ref:16.1f} {ips / ref:5.2f}x"
        print(line)
    for (space_name, name), t in reference_times.items():
        med = statistics.median(t)
        print(f"  {space_name:<10s} {name:<14s} {'torch reference':<15s} {'':<4s} {med * 1000:10.1f} "
              f"{args.batch / med:7.1f}")
    for space_name in spaces:
        small, large = (statistics.median(times[space_name, n, "float32", False])
                        for n in ("smallest @128", "largest @224"))
        macs_ratio = mmacs[space_name, "smallest @128"] / mmacs[space_name, "largest @224"]
        print(f"  {space_name}: MMACs largest@224 {mmacs[space_name, 'largest @224']:.1f}, smallest@128 "
              f"{mmacs[space_name, 'smallest @128']:.1f}; step time smallest/largest {small / large:.3f} against "
              f"MACs ratio {macs_ratio:.3f} ({small / large / macs_ratio:.2f}x it)")
    if profiles:
        groups = [group for group, _ in GROUPS]
        print("  op time per step (ms, summed over the compute threads), float32:")
        print(f"  {'space':<10s} {'subnet':<14s} " + " ".join(f"{g[:24]:>24s}" for g in groups) + f" {'total':>8s}")
        for (space_name, name), by_group in profiles.items():
            print(f"  {space_name:<10s} {name:<14s} " + " ".join(f"{by_group[g]:24.1f}" for g in groups)
                  + f" {sum(by_group.values()):8.1f}")
        for space_name in spaces:
            kernels = {n: sum(profiles[space_name, n][g] for g in ("convolutions and matmuls", "batch norm"))
                       for n in ("smallest @128", "largest @224")}
            macs_ratio = mmacs[space_name, "smallest @128"] / mmacs[space_name, "largest @224"]
            ratio = kernels["smallest @128"] / kernels["largest @224"]
            print(f"  {space_name}: convolution + batch-norm op time smallest/largest {ratio:.3f} against MACs "
                  f"ratio {macs_ratio:.3f} ({ratio / macs_ratio:.2f}x it): the step-time ratio with nothing "
                  f"but these kernels")
    if mixed is not None:
        mixed_s, n_seen, mixed_traces = mixed
        print(f"  mixed subnets/resolutions ({next(iter(spaces))}): {args.mixed_steps} steps in {mixed_s:.0f}s (fit), "
              f"{n_seen} distinct subnets, train step traced {mixed_traces} time(s)")
    print(f"  fixed-subnet trainers traced: {traces}")


if __name__ == "__main__":
    main()
