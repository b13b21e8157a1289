"""Host LiteRT latency of exported subnets in every post-training precision, side by side.

    python benchmarks/bench_export_latency.py                     # w1.0 space, 3 subnets
    python benchmarks/bench_export_latency.py --space=tiny --resolutions=32,48,64 --num_runs=50

For each subnet (smallest, middle, largest of the space, at increasing resolutions) the static
subnet is converted to float32, float16, dynamic_int8 and int8 (calibrated on the embedded
data, resized), and each file is timed by LiteRT's own benchmark tool
two ways: the LiteRT interpreter with its default XNNPACK delegate (as benchmark_model runs on a
phone's CPU), and LiteRT's shipped tool (`python -m ai_edge_litert.tools.benchmark_litert_model`,
CompiledModel API) in a fresh process; each with warm-up runs, then `--num_runs` timed runs,
median and std. Weights are freshly initialized and BN recalibrated on the embedded data, so
activations have realistic magnitudes (latency depends on them through denormal floats).
Prints a table per runner with the int8 / float32 ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = ("float32", "float16", "dynamic_int8", "int8")


def measure_interpreter(path: str, num_runs: int, warmup_runs: int, num_threads: int) -> dict:
    """The LiteRT interpreter with its default XNNPACK delegate (what benchmark_model runs on a
    phone's CPU by default), timed around invoke()."""
    import time

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    image = np.random.default_rng(0).standard_normal(detail["shape"]).astype(np.float32)
    interpreter.set_tensor(detail["index"], image if detail["dtype"] == np.float32 else
                           np.clip(image / detail["quantization"][0] + detail["quantization"][1],
                                   -128, 127).astype(detail["dtype"]))
    for _ in range(warmup_runs):
        interpreter.invoke()
    times = []
    for _ in range(num_runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1000 * (time.perf_counter() - start))
    partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return {"median_ms": float(np.median(times)), "std_ms": float(np.std(times)), "min_ms": min(times),
            "delegate_partitions": partitions}


def measure_tool(path: str, num_runs: int, warmup_runs: int, num_threads: int) -> dict:
    """LiteRT's shipped benchmark tool (CompiledModel API) in a fresh process."""
    result_json = f"{path}.bench.json"
    command = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={path}",
               f"--num_runs={num_runs}", f"--warmup_runs={warmup_runs}", f"--num_threads={num_threads}",
               f"--result_json={result_json}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not os.path.exists(result_json):
        raise RuntimeError(f"benchmark_litert_model failed on {path}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    with open(result_json, encoding="utf-8") as f:
        return json.load(f)["latency"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbv3_w1.0")
    parser.add_argument("--n_classes", type=int, default=1000)
    parser.add_argument("--resolutions", default="160,192,224",
                        help="Resolution of the smallest, middle and largest subnet.")
    parser.add_argument("--num_runs", type=int, default=100)
    parser.add_argument("--warmup_runs", type=int, default=10)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--n_representative_images", type=int, default=100)
    args = parser.parse_args()

    import numpy as np

    from ofa_tf.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()
    import keras

    from ofa_tf.arch.complexity import profile_arch
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.artifacts import build_supernet
    from ofa_tf.data import load_dataset
    from ofa_tf.evaluation import SubnetValidator
    from ofa_tf.export import check_graph, to_tflite
    from ofa_tf.networks.extraction import extract_subnet

    keras.utils.set_random_seed(0)
    space = SearchSpace.preset(args.space)
    sizes = [int(r) for r in args.resolutions.split(",")]
    if len(sizes) != 3:
        raise SystemExit("--resolutions needs three values (smallest, middle, largest subnet)")
    middle = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    archs = {"smallest": space.smallest(sizes[0]),
             "middle": space.uniform(middle(space.ks_list), middle(space.expand_ratio_list),
                                     middle(space.depth_list), sizes[1]),
             "largest": space.largest(sizes[2])}
    net = build_supernet(space, args.n_classes)
    data = load_dataset("demo")
    validator = SubnetValidator(net, calibration_data=lambda size: data.train(100, size, seed=0),
                                eval_data=lambda size: None, n_calibration_images=500)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch in archs.items():
            size = arch["r"][0]
            # BN statistics recalibrated on real images, as every export does: with the
            # initial statistics the activations of a deep random network shrink layer by
            # layer into denormal floats, which x86 computes many times slower.
            net.set_active_subnet(**arch)
            validator.recalibrate(size)
            model = extract_subnet(net, arch, size, batch_size=1)

            def representative(size=size):
                for images, _ in data.train(1, size, seed=1).take(args.n_representative_images):
                    yield np.asarray(images, np.float32)

            mmacs = profile_arch(arch, space, args.n_classes, size).mmacs
            latency = {}
            for mode in MODES:
                path = os.path.join(tmp, f"{name}-{mode}.tflite")
                tflite = to_tflite(model, mode, representative)
                check_graph(tflite, *((net.layout, arch, size) if mode == "float32" else ()))
                with open(path, "wb") as f:
                    f.write(tflite)
                latency[mode] = {
                    "interpreter": measure_interpreter(path, args.num_runs, args.warmup_runs, args.num_threads),
                    "tool": measure_tool(path, args.num_runs, args.warmup_runs, args.num_threads),
                    "size_mb": len(tflite) / 2**20}
                print(f"{name} {mode}: {latency[mode]}", file=sys.stderr, flush=True)
            rows.append((name, arch, size, mmacs, latency))

    for runner, title in (("interpreter", "LiteRT Interpreter, default XNNPACK delegate"),
                          ("tool", "python -m ai_edge_litert.tools.benchmark_litert_model (CompiledModel, CPU)")):
        print(f"\n{title}: {args.num_threads} thread(s), median of {args.num_runs} runs (± std), "
              f"space {args.space}, batch 1:\n")
        print("| subnet | r | MMACs | " + " | ".join(f"{m} ms" for m in MODES) + " | int8 / float32 |")
        print("|---|---|---|" + "---|" * len(MODES) + "---|")
        for name, arch, size, mmacs, latency in rows:
            cells = [f"{latency[m][runner]['median_ms']:.2f} ± {latency[m][runner]['std_ms']:.2f}" for m in MODES]
            ratio = latency["int8"][runner]["median_ms"] / latency["float32"][runner]["median_ms"]
            print(f"| {name} | {size} | {mmacs:.1f} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    print("\nXNNPACK partitions per model (1 = the whole graph delegated): " + "; ".join(
        f"{name}: " + ", ".join(f"{m} {latency[m]['interpreter']['delegate_partitions']}" for m in MODES)
        for name, _, _, _, latency in rows))
    print("\nFile sizes (MB): " + "; ".join(
        f"{name}: " + ", ".join(f"{m} {latency[m]['size_mb']:.2f}" for m in MODES)
        for name, _, _, _, latency in rows))


if __name__ == "__main__":
    main()
