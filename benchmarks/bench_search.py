"""Evolutionary search at the reference's budget: ours against the PyTorch reference, same run.

OFA-MBv3 w1.0 space (25 resolutions, 145 features), MACs constraint, population 100 x 500
generations, an accuracy predictor of the reference's size (3 x 400 ReLU, random weights: the
cost does not depend on what it learned). Timed:
  * ours: ``EvolutionFinder`` with ``MACsPredictor`` (the compiled search, its kernels compiled or
    loaded from numba's cache by a one-generation run first, not counted);
  * the reference (installed ``ofa`` package): its ``EvolutionFinder`` with ``Mbv3FLOPsModel``
    on its torch ``OFAMobileNetV3`` and its torch ``AccuracyPredictor``, one arch at a time;
  * one population's forward pass: the compiled one on the feature bits (``predict_batch``, the
    search's), numpy on dense features (``predict_features``), ``model(x)``, ``model.predict(x)``.

    python benchmarks/bench_search.py [--constraint 400] [--generations 500] [--reference_generations 500]
"""

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ofa_tf.arch.complexity import profile_arch  # noqa: E402
from ofa_tf.arch.space import SearchSpace  # noqa: E402
from ofa_tf.interop.reference_package import import_reference  # noqa: E402
from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model  # noqa: E402
from ofa_tf.nas.efficiency import MACsPredictor  # noqa: E402
from ofa_tf.nas.encoding import MobileNetArchEncoder  # noqa: E402
from ofa_tf.nas.evolution import EvolutionFinder  # noqa: E402


def time_ours(space, accuracy, constraint, generations, seed):
    start = time.perf_counter()
    macs = MACsPredictor(space)
    table_seconds = time.perf_counter() - start
    finder = EvolutionFinder(macs, accuracy, max_time_budget=generations)
    EvolutionFinder(macs, accuracy, max_time_budget=1).run_evolution_search(constraint)   # compile / load
    start = time.perf_counter()
    result = finder.run_evolution_search(constraint, seed=seed)
    return time.perf_counter() - start, table_seconds, result


def time_reference(space, constraint, generations, seed, torch_threads):
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    networks = import_reference("ofa.imagenet_classification.elastic_nn.networks")
    encoder_module = import_reference("ofa.nas.accuracy_predictor.arch_encoder")
    predictor_module = import_reference("ofa.nas.accuracy_predictor.acc_predictor")
    efficiency_module = import_reference("ofa.nas.efficiency_predictor")
    evolution_module = import_reference("ofa.nas.search_algorithm.evolution")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    net = networks.OFAMobileNetV3(width_mult=1.0, ks_list=list(space.ks_list),
                                  expand_ratio_list=list(space.expand_ratio_list),
                                  depth_list=list(space.depth_list))
    encoder = encoder_module.MobileNetArchEncoder(
        image_size_list=list(space.resolutions), ks_list=list(space.ks_list),
        expand_list=list(space.expand_ratio_list), depth_list=list(space.depth_list))
    predictor = predictor_module.AccuracyPredictor(encoder, device="cpu")
    finder = evolution_module.EvolutionFinder(efficiency_module.Mbv3FLOPsModel(net), predictor,
                                              max_time_budget=generations)
    start = time.perf_counter()
    with torch.no_grad():
        _, (accuracy, arch, flops) = finder.run_evolution_search(constraint, verbose=False)
    seconds = time.perf_counter() - start
    return seconds, float(flops), arch


def forward_costs(accuracy, batch, repeats):
    from threadpoolctl import threadpool_limits

    out = {}
    features = accuracy.arch_encoder.encode(batch)
    with threadpool_limits(1):
        for name, fn in (("compiled, on the feature bits (predict_batch, the search's)",
                          lambda: accuracy.predict_batch(batch)),
                         ("numpy on dense features, 1 BLAS thread (predict_features)",
                          lambda: accuracy.predict_features(features)),
                         ("Keras model(x)", lambda: accuracy.model(features, training=False)),
                         ("Keras model.predict(x)", lambda: accuracy.model.predict(features, verbose=0))):
            fn()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            out[name] = statistics.median(times)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--constraint", type=float, default=400.0, help="MMACs budget")
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--reference_generations", type=int, default=500, help="0 skips the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()

    space = SearchSpace.mobilenet_v3(1.0)
    encoder = MobileNetArchEncoder(space)
    accuracy = AccuracyPredictor(space, build_accuracy_model(encoder.n_dim, 0.75, seed=args.seed))
    # Random output weights (the default init starts at zero, which would make every arch tie).
    output = accuracy.model.get_layer("output")
    output.kernel.assign(np.random.default_rng(args.seed).normal(0, 0.05, output.kernel.shape))
    accuracy.refresh_weights()

    rows = []
    seconds, table_seconds, result = time_ours(space, accuracy, args.constraint, args.generations, args.seed)
    check = profile_arch(result.arch, space).mmacs
    rows.append(("ofa_tf", seconds, result.efficiency, result.accuracy))
    if args.reference_generations:
        ref_seconds, ref_flops, ref_arch = time_reference(space, args.constraint, args.reference_generations,
                                                          args.seed, args.torch_threads)
        scale = args.generations / args.reference_generations
        rows.append((f"reference (ofa {args.reference_generations} generations)", ref_seconds * scale,
                     ref_flops, float("nan")))

    print(f"\nSearch: OFA-MBv3 w1.0, MMACs <= {args.constraint:g}, population 100 x {args.generations} "
          f"generations, predictor 145-400-400-400-1\n")
    print("| variant | seconds | best arch MMACs | best predicted acc |")
    print("|---|---|---|---|")
    for name, secs, cost, acc in rows:
        print(f"| {name} | {secs:.2f} | {cost:.1f} | {acc:.4f} |")
    print(f"\nMACs tables built once in {table_seconds:.2f} s (not in the search time); best arch checked "
          f"with profile_arch: {check:.3f} MMACs <= {args.constraint:g}")
    if args.reference_generations:
        print(f"ratio reference / ofa_tf: {rows[-1][1] / seconds:.1f}x; "
              f"target ofa_tf <= 4 s: {'met' if seconds <= 4 else 'missed'} ({seconds:.2f} s)")
    batch = EvolutionFinder(MACsPredictor(space), accuracy).random_batch(np.random.default_rng(0), 100)
    print("\n| forward pass of 100 archs | ms (median of 50) |\n|---|---|")
    for name, secs in forward_costs(accuracy, batch, 50).items():
        print(f"| {name} | {1000 * secs:.2f} |")


if __name__ == "__main__":
    main()
