"""Build a latency lookup table: time every distinct op of a search space on a phone or the host.

    python -m android_bench.build_lut --backend=host --space=mbv3_w1.0 --resolutions=160 --out=host160.yaml
    python -m android_bench.build_lut --backend=adb --benchmark_binary=benchmark_model \\
        --space=runs/demo --resolutions=32,48,64 --out=phone.yaml

Each op (stem, every MBConv variant by input size, kernel, expand, stride, shortcut, SE and
activation, and the four head ops) is exported alone as a float32 .tflite with a batch of 1
and timed by the backend. The table is the reference's YAML (``key: {count, mean, var}``, ms;
mean = median of the timed runs) and is rewritten atomically after every op: re-running the
same command skips the finished keys, so a crash or a kill loses at most the op in flight.
Settings live next to it (``<out>.meta.json``); resuming with different ones is refused.

Per-invoke overhead: a network is one invoke, but the table times each op in its own invoke.
The builder times a trivial one-op model first and stores every entry net of that overhead
(the figure is in the meta file), so a sum of entries does not count it once per op.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from android_bench import cli_flags  # noqa: E402
from ofa_tf.cli import exit_code_of, run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402

FLAGS = flags.FLAGS

def trivial_model():
    """One RELU on a single number: what an invoke costs when the op itself costs nothing."""
    import keras

    inputs = keras.Input((1, 1, 1), batch_size=1, name="input")
    return keras.Model(inputs, keras.layers.ReLU(name="relu")(inputs), name="invoke_overhead")


def build_table(layout, resolutions, out: str, runner, statistic: str = "median") -> dict:
    """Measure the ops of ``layout`` at ``resolutions`` that ``out`` lacks; returns the entries
    (``statistic`` of each op's timed runs, in ms)."""
    import json
    import tempfile

    import keras

    from android_bench.op_models import table_ops
    from android_bench.progress import Progress
    from android_bench.table_meta import check_meta, measurement_settings, meta_path
    from ofa_tf.atomic_files import atomic_write_text
    from ofa_tf.export import to_tflite
    from ofa_tf.nas.latency_table import LatencyTable, load_latency_table

    ops = table_ops(layout, resolutions)
    wanted = measurement_settings(layout, runner, statistic)
    meta = check_meta(out, wanted, "use another --out, or the same flags to resume")
    entries = dict(load_latency_table(out).entries) if os.path.exists(out) else {}
    todo = [op for op in ops if op.key not in entries]
    print(f"{len(ops)} distinct ops at {','.join(map(str, resolutions))} px; {len(ops) - len(todo)} "
          f"already in {out}, {len(todo)} to measure", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        def measure(model, name):
            path = os.path.join(tmp, f"{name}.tflite")
            with open(path, "wb") as f:
                f.write(to_tflite(model, "float32"))
            try:
                return runner.benchmark(path)
            finally:
                os.remove(path)

        if "invoke_overhead_ms" not in meta:
            meta = {**wanted, "invoke_overhead_ms": measure(trivial_model(), "invoke_overhead").statistic(statistic)}
            atomic_write_text(meta_path(out), json.dumps(meta, indent=2))
        overhead = meta["invoke_overhead_ms"]
        progress = Progress(len(ops), len(ops) - len(todo))
        for i, op in enumerate(todo):
            result = measure(op.build_model(layout), f"op{i}")
            keras.backend.clear_session()
            entry = result.table_entry(statistic)
            if entry["mean"] <= overhead:   # an op cannot take 0 ms: the timer's resolution was too coarse
                print(f"warning: {op.key}: {entry['mean']:.6f} ms measured, not more than the per-invoke "
                      f"overhead {overhead:.6f} ms; stored as 0 ms (time it again with more --num_runs)",
                      file=sys.stderr, flush=True)
            entry["mean"] = round(max(entry["mean"] - overhead, 0.0), 6)
            entries[op.key] = entry
            LatencyTable(entries, out).save(out)
            progress.step(f"{entry['mean']:.4f} ms  {op.key}")
    return entries


def build_lut_from_flags() -> None:
    with user_input():
        if not FLAGS.out:
            raise ValueError("--out is required (the table to write, e.g. --out=table.yaml)")
        resolutions = cli_flags.int_list("resolutions", FLAGS.resolutions)
        if not resolutions:
            raise ValueError("--resolutions is required (e.g. --resolutions=160)")
        out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
        if not os.path.isdir(out_dir):
            raise FileNotFoundError(f"--out directory {out_dir} does not exist")
        runner = cli_flags.runner_from_flags()   # the device is checked before TensorFlow loads
    with runner:
        with user_input():
            layout = cli_flags.layout_from_flags()
        entries = build_table(layout, resolutions, FLAGS.out, runner, FLAGS.statistic)
    print(f"{len(entries)} entries in {FLAGS.out} (settings in {FLAGS.out}.meta.json)")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    return exit_code_of(build_lut_from_flags)


if __name__ == "__main__":
    run_absl_main(main, cli_flags.define_flags)
