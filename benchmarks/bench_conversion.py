"""Keras 3 → .tflite conversion time: one frozen trace (what `to_tflite` does) against a
SavedModel round trip (what `TFLiteConverter.from_keras_model` does for Keras 3 models, and
what `to_tflite` did before), side by side in one run, on the same models.

    python benchmarks/bench_conversion.py                       # tiny space at 48 px, w1.0 at 224 px
    python benchmarks/bench_conversion.py --spaces=tiny --repeats=5

Each route converts each subnet (the largest of the space, pixel-input wrapper with softmax, as
the exporter converts it) `--repeats` times in float32; the table shows the median seconds per
route and their ratio, and checks that both files have the same operators and outputs.
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def saved_model_route(model) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        signature = [tf.TensorSpec(model.inputs[0].shape, tf.float32, name="image")]
        model.export(saved, format="tf_saved_model", verbose=False, input_signature=signature)
        return tf.lite.TFLiteConverter.from_saved_model(saved).convert()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", default="tiny,mbv3_w1.0", help="comma-separated space presets")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.artifacts import build_supernet
    from ofa_tf.export import TFLiteModel, op_counts, to_tflite
    from ofa_tf.export.converter import pixel_model
    from ofa_tf.networks.extraction import extract_subnet

    rows = []
    for name in args.spaces.split(","):
        space = SearchSpace.preset(name)
        size = 48 if name == "tiny" else 224
        arch = space.largest(size)
        net = build_supernet(space, 10 if name == "tiny" else 1000, dropout_rate=0.0)
        model = pixel_model(extract_subnet(net, arch, size, batch_size=1), (0.5,) * 3, (0.25,) * 3)
        times = {"frozen trace": [], "SavedModel": []}
        files = {}
        for _ in range(args.repeats):
            for route, convert in (("frozen trace", lambda m: to_tflite(m, "float32")),
                                   ("SavedModel", saved_model_route)):
                started = time.perf_counter()
                files[route] = convert(model)
                times[route].append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for route, data in files.items():
                paths[route] = os.path.join(tmp, route.replace(" ", "_") + ".tflite")
                with open(paths[route], "wb") as f:
                    f.write(data)
            pixels = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
            outputs = [TFLiteModel(p)(pixels) for p in paths.values()]
            same_ops = len({tuple(sorted(op_counts(p).items())) for p in paths.values()}) == 1
            max_diff = float(np.abs(outputs[0] - outputs[1]).max())
        medians = {route: statistics.median(t) for route, t in times.items()}
        rows.append((f"{name} largest @{size}", medians["frozen trace"], medians["SavedModel"],
                     medians["SavedModel"] / medians["frozen trace"], same_ops, max_diff))

    print(f"\nfloat32 conversion, median of {args.repeats} (seconds)")
    print("| subnet | frozen trace (to_tflite) | SavedModel round trip | ratio | same operators | max abs diff |")
    print("|---|---|---|---|---|---|")
    for subnet, frozen, saved, ratio, same_ops, diff in rows:
        print(f"| {subnet} | {frozen:.2f} | {saved:.2f} | {ratio:.2f}x | {'yes' if same_ops else 'NO'} | {diff:.1e} |")


if __name__ == "__main__":
    main()
